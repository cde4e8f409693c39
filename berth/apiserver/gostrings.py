"""Go's ``%q`` (``strconv.Quote``): how kube-apiserver quotes values and keys in the messages
clients match on (field validation, duplicate keys, Pod Security)."""

from __future__ import annotations

_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """``text`` double-quoted as Go's ``strconv.Quote`` writes it: printable characters kept,
    ``"`` and ``\\`` escaped, control characters as ``\\n``-style or ``\\xNN`` escapes, other
    unprintable ones as ``\\uNNNN`` / ``\\UNNNNNNNN`` (a lone surrogate, not valid UTF-8, as
    U+FFFD)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
