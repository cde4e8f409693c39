"""A simulated host for operation tests: answers facts from a state model, executes commands.

It understands exactly the commands our operations yield (argv, not shell text), so a golden case
can be applied and re-planned: the second plan must yield nothing. An unknown command fails the
test, which keeps this model and the operations honest with each other.
"""

from __future__ import annotations

import fnmatch
import io
import re
import tarfile
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.commands import Command, Raw, Shell, Upload, sha256_hex
from provisioner.facts.base import Fact, FactSet
from provisioner.facts.files import PathInfo, PathState
from provisioner.facts.packages import UNSYNCED_DIR, Packages
from provisioner.facts.system import KernelModules, Sysctls
from provisioner.facts.systemd import MISSING, UnitState, UnitStates
from provisioner.facts.users import Groups, UserInfo, Users

UNIT_DIR = "/etc/systemd/system/"


@dataclass
class Entry:
    kind: str
    mode: int
    owner: str = "root"
    group: str = "root"
    content: bytes = b""
    target: str | None = None


@dataclass
class SimHost:
    paths: dict[str, Entry] = field(default_factory=dict)
    units: dict[str, dict[str, str]] = field(default_factory=dict)
    loaded: dict[str, bytes | None] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    users: dict[str, UserInfo] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    vendor: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> SimHost:
        host = cls()
        for path, f in (data.get("files") or {}).items():
            host.paths[path] = Entry(
                "file",
                int(str(f.get("mode", "0644")), 8),
                f.get("owner", "root"),
                f.get("group", "root"),
                str(f.get("content", "")).encode(),
            )
        for path, dir_data in (data.get("dirs") or {}).items():
            d = dir_data or {}
            host.paths[path] = Entry(
                "directory",
                int(str(d.get("mode", "0755")), 8),
                d.get("owner", "root"),
                d.get("group", "root"),
            )
        for path, target in (data.get("links") or {}).items():
            host.paths[path] = Entry("symlink", 0o777, target=target)
        for name, u in (data.get("units") or {}).items():
            host.units[name] = {
                "enabled": u.get("enabled", "disabled"),
                "active": u.get("active", "inactive"),
            }
            entry = host.paths.get(UNIT_DIR + name)
            host.loaded[name] = entry.content if entry else b"(vendor)"
            if entry is None:
                host.vendor.add(name)
            if u.get("needs_reload"):
                host.loaded[name] = b"(stale)"
        host.packages = dict(data.get("packages") or {})
        for name, u in (data.get("users") or {}).items():
            host.users[name] = UserInfo(u["uid"], u["gid"], u["home"], u["shell"])
        host.groups = dict(data.get("groups") or {})
        host.sysctls = {k: str(v) for k, v in (data.get("sysctls") or {}).items()}
        host.modules = set(data.get("modules") or [])
        return host

    # -- facts ----------------------------------------------------------------------------------

    def _unit_state(self, name: str) -> UnitState:
        file = self.paths.get(UNIT_DIR + name)
        if name not in self.loaded:
            if file is None:
                return MISSING
            return replace(MISSING, needs_reload=True)
        state = self.units.setdefault(name, {"enabled": "disabled", "active": "inactive"})
        current = file.content if file else b"(vendor)"
        return UnitState(
            "loaded",
            state["active"],
            "running" if state["active"] == "active" else "dead",
            state["enabled"],
            current != self.loaded[name],
        )

    def value(self, fact: Fact[Any]) -> Any:
        if isinstance(fact, PathInfo):
            out: dict[str, PathState | None] = {}
            for path in fact.paths:
                e = self.paths.get(path)
                out[path] = (
                    None
                    if e is None
                    else PathState(
                        kind=e.kind,  # type: ignore[arg-type]
                        mode=e.mode,
                        owner=e.owner,
                        group=e.group,
                        size=len(e.content),
                        sha256=sha256_hex(e.content) if e.kind == "file" else None,
                        target=e.target,
                    )
                )
            return out
        if isinstance(fact, UnitStates):
            return {u: self._unit_state(u) for u in fact.units}
        if isinstance(fact, Packages):
            # a package marked unsynced (its install may not be on disk) counts as not installed
            return {
                n: None
                if fact.unsynced_missing and f"{UNSYNCED_DIR}/{n}" in self.paths
                else self.packages.get(n)
                for n in fact.names
            }
        if isinstance(fact, Users):
            return {n: self.users.get(n) for n in fact.names}
        if isinstance(fact, Groups):
            return {n: self.groups.get(n) for n in fact.names}
        if isinstance(fact, Sysctls):
            return {k: self.sysctls.get(k) for k in fact.keys}
        if isinstance(fact, KernelModules):
            return frozenset(self.modules)
        raise AssertionError(f"simhost cannot answer fact {fact.key()}")

    def facts(self, facts: tuple[Fact[Any], ...], host: str = "sim") -> FactSet:
        result = FactSet(host)
        for fact in facts:
            result.put(fact, self.value(fact))
        return result

    # -- commands -------------------------------------------------------------------------------

    def execute(self, command: Command) -> None:
        if isinstance(command, Upload):
            self.log.append(f"upload {command.path}")
            self.paths[command.path] = Entry(
                "file", command.mode, command.owner, command.group, command.content
            )
            return
        segment: list[str | Raw] = []
        for arg in [*command.argv, Raw("&&")]:
            if arg == Raw("&&"):
                self._segment(segment)
                segment = []
            else:
                segment.append(arg)

    def _reload(self) -> None:
        loaded: dict[str, bytes | None] = dict.fromkeys(self.vendor, b"(vendor)")
        for p, e in self.paths.items():
            if p.startswith(UNIT_DIR):
                loaded[p[len(UNIT_DIR) :]] = e.content
        self.loaded = loaded

    def _systemctl(self, verb: str, name: str) -> None:
        state = self._unit_state(name)
        assert state.exists, f"systemctl {verb} {name}: unit not loaded (daemon-reload?)"
        assert not state.needs_reload, f"systemctl {verb} {name} before daemon-reload"
        unit = self.units[name]
        if verb in ("enable", "disable"):
            unit["enabled"] = verb + "d"
        elif verb in ("start", "restart"):
            unit["active"] = "active"
        elif verb == "stop":
            unit["active"] = "inactive"
        else:
            raise AssertionError(f"simhost: systemctl {verb}")

    def _segment(self, argv: list[str | Raw]) -> None:
        words = [a for a in argv if isinstance(a, str)]
        redirect = next((a.text for a in argv if isinstance(a, Raw)), None)
        self.log.append(" ".join(words))
        match words:
            case ["mkdir", "-p", "-m", mode, path]:
                self.paths[path] = Entry("directory", int(mode, 8))
            case ["chmod", mode, path]:
                self.paths[path].mode = int(mode, 8)
            case ["chown", spec, path]:
                owner, _, group = spec.partition(":")
                self.paths[path].owner, self.paths[path].group = owner, group
            case ["ln", "-sfnT", target, path]:
                self.paths[path] = Entry("symlink", 0o777, target=target)
            case ["rm", "-f", "--", *paths] if paths:
                for path in paths:
                    self.paths.pop(path, None)
            case ["rm", "-f", "--"] if redirect is not None and redirect.endswith("*.tar"):
                for path in [p for p in self.paths if fnmatch.fnmatch(p, redirect)]:
                    del self.paths[path]
            case ["rmdir", "--", path]:
                del self.paths[path]
            case ["touch", "--", *paths]:
                for path in paths:
                    assert path.rpartition("/")[0] in self.paths, f"touch {path}: no directory"
                    self.paths.setdefault(path, Entry("file", 0o644))
            case ["sync", *_]:
                pass
            case ["tar", "-x", "--no-same-owner", "-f", archive, "-C", directory]:
                assert directory in self.paths, f"tar -C {directory}: no directory"
                with tarfile.open(fileobj=io.BytesIO(self.paths[archive].content)) as tar:
                    for member in tar.getmembers():
                        extracted = tar.extractfile(member)
                        assert extracted is not None
                        assert "/" not in member.name
                        self.paths[f"{directory}/{member.name}"] = Entry(
                            "file", member.mode, content=extracted.read()
                        )
            case ["rm", "-rf", "--", path]:
                for p in [p for p in self.paths if p == path or p.startswith(path + "/")]:
                    del self.paths[p]
            case ["systemctl", "daemon-reload"]:
                self._reload()
            case ["systemctl", "enable", "--now", *names]:
                # enable links the units and reloads the manager, then --now starts them
                self._reload()
                for name in names:
                    self._systemctl("enable", name)
                    self._systemctl("start", name)
            case ["systemctl", verb, name]:
                self._systemctl(verb, name)
            case [
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "dpkg",
                "--force-unsafe-io",
                "-i",
                *debs,
            ]:
                for deb in debs:
                    fields = dict(
                        re.findall(r"^(\w+): (.*)$", self.paths[deb].content.decode(), re.M)
                    )
                    self.packages[fields["Package"]] = fields["Version"]
            case ["env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", name]:
                del self.packages[name]
            case ["useradd", *opts, name]:
                home = opts[opts.index("--home-dir") + 1]
                shell = opts[opts.index("--shell") + 1]
                uid = 900 + len(self.users)
                self.users[name] = UserInfo(uid, uid, home, shell)
                self.groups[name] = uid
            case ["usermod", *opts, name]:
                user = self.users[name]
                if "--home" in opts:
                    user = replace(user, home=opts[opts.index("--home") + 1])
                if "--shell" in opts:
                    user = replace(user, shell=opts[opts.index("--shell") + 1])
                self.users[name] = user
            case ["userdel", name]:
                del self.users[name]
            case ["groupadd", *_, name]:
                self.groups[name] = 800 + len(self.groups)
            case ["groupdel", name]:
                del self.groups[name]
            case ["printf", "%s\\n", value, path] if redirect == ">":
                self.sysctls[path.removeprefix("/proc/sys/").replace("/", ".")] = " ".join(
                    value.split()
                )
            case ["modprobe", name]:
                self.modules.add(name)
            case ["modprobe", "-r", name]:
                self.modules.discard(name)
            case _:
                raise AssertionError(f"simhost does not understand {Shell(*argv).render()!r}")
