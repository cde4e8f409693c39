"""Mount points from ``/proc/<pid>/mountinfo``: one parser for every reader, host and operator
side (the operator reads a host's table over SSH).

Field 5 of a line is the mount point, with space, tab, newline and backslash written by the
kernel as ``\\ooo`` octal escapes; a point mounted several times (stacked) appears once per
mount.
"""

from __future__ import annotations

from pathlib import Path

SELF = Path("/proc/self/mountinfo")


def unescape(field: str) -> str:
    """A mountinfo path field as the path it names (``\\040`` -> a space)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1 : i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mount_points(text: str) -> list[str]:
    """Every mount point of a mountinfo table, in its order (stacked mounts repeated)."""
    return [unescape(f[4]) for f in (line.split() for line in text.splitlines()) if len(f) > 4]


def mount_points(mountinfo: Path = SELF) -> list[str]:
    """Every mount point of this process' mount namespace (none when it cannot be read)."""
    try:
        return parse_mount_points(mountinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
