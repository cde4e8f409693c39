"""Links of HTML pages passed on by pods/services proxy (berth.apiserver.proxyhtml)."""

from __future__ import annotations

from yarl import URL

from berth.apiserver import proxyhtml

BACKEND = URL("http://10.244.1.5:8080/index.html")
PREFIX = "/api/v1/namespaces/web/pods/site/proxy"


def test_links_to_the_backend_go_through_the_proxy() -> None:
    page = (
        b'<html><head><link rel="stylesheet" href="/static/app.css">'
        b"<script src='/app.js'></script></head>"
        b"<body><a class=x HREF=/plain?a=1&amp;b=2>p</a>"
        b'<form action="http://10.244.1.5:8080/login" method=post></form>'
        b'<img src="http://10.244.1.5:8080">'
        b'<a href="http://10.244.1.6:8080/other-pod">o</a>'
        b'<a href="https://10.244.1.5:8080/other-scheme">s</a>'
        b'<a href="//cdn.example/lib.js">cdn</a>'
        b'<a href="relative/link">r</a>'
        b'<a href="/api/v1/namespaces/web/pods/site/proxy/already">a</a>'
        b"<p>text with href=/not-a-tag-attribute</p></body></html>"
    )
    out = proxyhtml.rewrite(page, BACKEND, PREFIX)
    p = PREFIX.encode()
    assert b'href="' + p + b'/static/app.css"' in out
    assert b"src='" + p + b"/app.js'" in out
    assert b"HREF=" + p + b"/plain?a=1&amp;b=2>" in out
    assert b'action="' + p + b'/login"' in out
    assert b'<img src="' + p + b'/">' in out
    for untouched in (
        b'href="http://10.244.1.6:8080/other-pod"',
        b'href="https://10.244.1.5:8080/other-scheme"',
        b'href="//cdn.example/lib.js"',
        b'href="relative/link"',
        b'href="' + p + b'/already"',
        b"text with href=/not-a-tag-attribute",
    ):
        assert untouched in out, untouched


def test_only_whole_uncompressed_html_is_rewritten() -> None:
    assert proxyhtml.is_rewritable({"Content-Type": "text/html; charset=utf-8"})
    assert not proxyhtml.is_rewritable({"Content-Type": "text/html", "Content-Encoding": "gzip"})
    assert not proxyhtml.is_rewritable({"Content-Type": "application/json"})
    assert not proxyhtml.is_rewritable({})
