"""The DNS wire codec against dnspython as an independent implementation, and hostile input."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.dns import wire


def query(name: str, rdtype: str = "A", *, edns: bool = False, size: int = 1232) -> bytes:
    q = (
        dns.message.make_query(name, rdtype, use_edns=0, payload=size)
        if edns
        else dns.message.make_query(name, rdtype, use_edns=False)
    )
    q.id = 0x1234
    return q.to_wire()


def test_parse_reads_the_question_and_edns() -> None:
    q = wire.parse_query(query("Web.Default.svc.cluster.local.", "SRV", edns=True, size=4096))
    assert q.id == 0x1234
    assert q.name == "web.default.svc.cluster.local"
    assert q.qtype == wire.SRV
    assert q.edns
    assert q.udp_size == wire.OUR_UDP_SIZE  # capped at what we send
    plain = wire.parse_query(query("a.b."))
    assert (plain.edns, plain.udp_size) == (False, 512)


def test_response_is_read_by_dnspython_and_keeps_the_question_case() -> None:
    q = wire.parse_query(query("WeB.default.svc.cluster.local.", edns=True))
    rr = wire.Record("web.default.svc.cluster.local", wire.A, 5, wire.a_rdata("10.96.0.20"))
    srv = wire.Record(
        "_http._tcp.web.default.svc.cluster.local",
        wire.SRV,
        5,
        wire.srv_rdata(0, 100, 80, "web.default.svc.cluster.local"),
    )
    out = wire.response(q, wire.NOERROR, [rr], additional=[srv])
    msg = dns.message.from_wire(out)
    assert msg.id == 0x1234
    assert msg.flags & dns.flags.QR
    assert msg.flags & dns.flags.AA
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.answer[0].name.to_text() == "WeB.default.svc.cluster.local."
    assert [r.address for r in msg.answer[0]] == ["10.96.0.20"]
    assert msg.answer[0].ttl == 5
    (srv_set,) = msg.additional
    assert [(r.port, r.target.to_text()) for r in srv_set] == [
        (80, "web.default.svc.cluster.local.")
    ]
    assert msg.edns == 0


def test_a_response_too_big_for_udp_is_truncated() -> None:
    q = wire.parse_query(query("hl.default.svc.cluster.local."))
    rrs = [
        wire.Record("hl.default.svc.cluster.local", wire.A, 5, wire.a_rdata(f"10.244.0.{i}"))
        for i in range(1, 60)
    ]
    out = wire.response(q, wire.NOERROR, rrs)
    assert len(out) <= 512
    msg = dns.message.from_wire(out)
    assert msg.flags & dns.flags.TC
    assert msg.answer == []
    full = dns.message.from_wire(wire.response(q, wire.NOERROR, rrs, limit=65535))
    assert len(full.answer[0]) == 59


def _header(qd: int = 1, flags: int = 0x0100, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 7, flags, qd, an, 0, 0)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "shorter than a header"),
        (b"\x00" * 11, "shorter than a header"),
        (_header(qd=0), "exactly one question"),
        (_header(qd=2) + b"\x01a\x00\x00\x01\x00\x01" * 2, "exactly one question"),
        (_header() + b"\xc0\x0c\x00\x01\x00\x01", "compression"),
        (_header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", "compression"),
        (_header() + b"\x3f" + b"a" * 63, "past the message"),
        (_header() + b"\x05ab", "past the message"),
        (_header() + b"\x01a\x00\x00", "question runs past"),
        (_header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "longer than 255"),
        (_header(flags=0x8000) + b"\x01a\x00\x00\x01\x00\x01", "a response"),
        (_header() + b"\x01a\x00\x00\x01\x00\x01" + b"x" * 5000, "too long"),
    ],
)
def test_hostile_queries_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(wire.FormError, match=why):
        wire.parse_query(data)


def test_errors_answer_readable_headers_and_never_responses() -> None:
    out = wire.error_response(_header(qd=0), wire.FORMERR)
    assert out is not None
    msg = dns.message.from_wire(out)
    assert msg.rcode() == dns.rcode.FORMERR
    assert wire.error_response(b"\x00" * 5, wire.FORMERR) is None
    assert wire.error_response(_header(flags=0x8000), wire.FORMERR) is None


def test_a_bogus_opt_record_is_ignored_not_trusted() -> None:
    base = _header()[:10] + b"\x00\x01" + b"\x01a\x00\x00\x01\x00\x01"
    # OPT claiming 60,000 bytes of rdata that are not there
    q = wire.parse_query(base + b"\x00" + struct.pack("!HHIH", wire.OPT, 65000, 0, 60000))
    assert (q.edns, q.udp_size) == (False, 512)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_form_error(data: bytes) -> None:
    try:
        q = wire.parse_query(data)
    except wire.FormError:
        return
    assert len(q.name) <= 255
    assert 512 <= q.udp_size <= wire.OUR_UDP_SIZE


def test_upstream_names_follow_pointers_only_backwards() -> None:
    msg = dns.message.make_response(dns.message.make_query("a.example.org.", "A"))
    msg.answer.append(dns.rrset.from_text("a.example.org.", 60, "IN", "CNAME", "b.example.org."))
    msg.answer.append(dns.rrset.from_text("b.example.org.", 60, "IN", "A", "192.0.2.7"))
    records = wire.answer_records(msg.to_wire())  # dnspython compresses every name
    assert [(r.name, r.rtype) for r in records] == [
        ("a.example.org", wire.CNAME),
        ("b.example.org", wire.A),
    ]
    assert records[0].rdata == wire.encode_name("b.example.org")
    loop = b"\x00" * 12 + b"\xc0\x0c"  # a pointer to itself
    with pytest.raises(wire.FormError, match="backwards"):
        wire.read_name(loop, 12)
    assert wire.answer_records(_header(qd=1, an=5) + loop) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_upstream_bytes_give_records_or_nothing(data: bytes) -> None:
    for r in wire.answer_records(data):
        assert r.rtype in (wire.A, wire.AAAA, wire.CNAME)


def test_skip_name_steps_over_labels_and_stops_at_a_pointer() -> None:
    msg = b"\x03www\x07example\x00" + b"\x03api\xc0\x00"
    assert wire.skip_name(msg, 0) == 13
    assert wire.skip_name(msg, 13) == 19  # a pointer ends the name, not followed
    with pytest.raises(IndexError):
        wire.skip_name(b"\x05ab", 0)  # runs past the message
    with pytest.raises(IndexError):
        wire.skip_name(b"\x00" * 4 + b"\x01a" * 200, 4)  # more than 128 labels
