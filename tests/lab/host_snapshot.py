"""What a lab host looks like, for proving ``berth destroy`` leaves it as it was before berth.

A snapshot is taken before the first apply and again after destroy; :func:`differences` names
every line that came or went, per aspect (packages, units and masks, mounts, links, nftables
tables, routes, network namespaces, users and groups, and the file trees berth touches).
"""

from __future__ import annotations

from provisioner.footprint import NftTables
from provisioner.lab import Lab, run
from provisioner.lab.overlay import RUNTIME_CONTAINERS

# the trees berth writes in or next to (its own, the CNI's, runc's, etcd's, systemd's units)
TREES = (
    "/opt", "/etc/berth", "/etc/cni", "/etc/systemd/system", "/var/lib/berth", "/var/lib/cni",
    "/var/lib/etcd", "/run/berth", "/run/netns", "/usr/lib/cni", "/usr/libexec/cni",
)  # fmt: skip
ASPECTS = {
    "packages": "dpkg-query -W -f='${Package}=${Version} ${db:Status-Status}\\n'",
    "units": "systemctl list-unit-files --no-legend --no-pager --full | awk '{print $1, $2}'",
    "mounts": "awk '{print $5, $9}' /proc/self/mountinfo",
    "links": "ip -o link show | awk -F': ' '{print $2}'",
    "nftables": NftTables().command(),  # over netlink: `nft` itself comes and goes with berth
    # IPv6 link-local routes come with the link's address some time after boot: not berth's
    # (``ip route show table all`` lists IPv6 routes too, so both listings are filtered).
    "routes": "{ ip route show table all; ip -6 route show table all; } | grep -v 'fe80:'; true",
    "netns": "ip netns list",
    "users": "sed 's/:.*//; s/^/user /' /etc/passwd; sed 's/:.*//; s/^/group /' /etc/group",
    "files": f"find {' '.join(TREES)} 2>/dev/null; true",
    # each entry with its directory: "berth" in /etc and in /var/lib are different findings
    "top": "for d in /etc /var/lib /run /usr/lib /usr/libexec /usr/bin /usr/sbin; do"
    ' ls -1A "$d" | sed "s|^|$d/|"; done',
}

Snapshot = dict[str, frozenset[str]]

# The lab's own furniture, not berth's: a lab host's runtime containers directory is a symlink
# onto the host's disk (provisioner.lab.overlay.link_runtime_disk), made before berth comes;
# destroy removes it with the rest of /var/lib/berth. Anything else under /var/lib/berth
# still counts.
_PARTS = RUNTIME_CONTAINERS.split("/")
NOT_BERTHS = {
    "files": frozenset("/" + "/".join(_PARTS[:n]) for n in range(3, len(_PARTS) + 1)),
    # and Debian's, not berth's: adduser (run by a package's postinst) leaves its lock file on
    # /run (a tmpfs: gone at the next boot); deleting another tool's lock is not destroy's job
    "top": frozenset({"/" + "/".join(_PARTS[:3]), "/run/adduser"}),
}


def snapshot(lab: Lab, host: str) -> Snapshot:
    """Every aspect of ``host`` as a set of lines."""
    out: Snapshot = {}
    for aspect, command in ASPECTS.items():
        code, stdout, stderr = run(lab, host, command, timeout=60)
        assert code == 0, f"{host}: snapshot of {aspect} failed: {stderr}"
        not_berths = NOT_BERTHS.get(aspect, frozenset())
        out[aspect] = frozenset(
            line for line in stdout.splitlines() if line.strip() and line not in not_berths
        )
    return out


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """``+ aspect: line`` for what is there now and was not, ``- aspect: line`` for the reverse."""
    out = []
    for aspect in ASPECTS:
        out += [f"+ {aspect}: {line}" for line in sorted(after[aspect] - before[aspect])]
        out += [f"- {aspect}: {line}" for line in sorted(before[aspect] - after[aspect])]
    return out
