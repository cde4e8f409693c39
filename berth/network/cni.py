"""Invoking CNI plugins as the CNI specification (1.0) describes.

A plugin is an executable found in ``CNI_PATH``; the runtime passes the operation in
environment variables (``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_ARGS``, ``CNI_PATH``) and the network configuration as JSON on stdin. For a
configuration *list*, ADD runs the plugins in order, each receiving the previous result as
``prevResult``; DEL runs them in reverse; CHECK re-runs them with the cached ADD result. Like
libcni, the ADD result is cached on disk, because plugins need it for CHECK/DEL and a second
ADD for the same attachment fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.network.command import Runner, host_env

DEFAULT_PLUGIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
DEFAULT_CACHE_DIR = Path("/var/lib/berth/cni/results")


class CniError(Exception):
    """A plugin failed; carries the CNI error code and message when the plugin sent them."""

    def __init__(
        self, *, plugin: str, command: str, code: int, msg: str, details: str = ""
    ) -> None:
        text = f"CNI {command} via plugin {plugin!r} failed (code {code}): {msg}"
        if details:
            text += f" ({details})"
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg


@dataclass(frozen=True)
class Attachment:
    """Which container/interface an operation is about (the CNI "runtime config")."""

    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str] = field(default_factory=dict)
    capability_args: Mapping[str, Any] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args.items())


def plugin_netconf(
    conflist: Mapping[str, Any],
    plugin: Mapping[str, Any],
    attachment: Attachment,
    prev_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The stdin document for one plugin of a list: its own config plus the list's name and
    version, ``prevResult``, and ``runtimeConfig`` for the capabilities it declares."""
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    caps = plugin.get("capabilities") or {}
    runtime = {
        key: value for key, value in attachment.capability_args.items() if caps.get(key) is True
    }
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = dict(prev_result)
    return conf


class CniInvoker:
    """Executes plugins and network-config lists, caching ADD results."""

    def __init__(
        self,
        runner: Runner,
        *,
        plugin_dirs: Sequence[Path] = DEFAULT_PLUGIN_DIRS,
        cache_dir: Path = DEFAULT_CACHE_DIR,
    ) -> None:
        self.runner = runner
        self.plugin_dirs = tuple(plugin_dirs)
        self.cache_dir = cache_dir

    def find_plugin(self, plugin_type: str) -> Path:
        if "/" in plugin_type or plugin_type in ("", ".", ".."):
            raise CniError(plugin=plugin_type, command="-", code=1, msg="invalid plugin type")
        for directory in self.plugin_dirs:
            candidate = directory / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        searched = ":".join(str(d) for d in self.plugin_dirs)
        raise CniError(
            plugin=plugin_type,
            command="-",
            code=1,
            msg=f"plugin not found in CNI_PATH {searched} (install containernetworking-plugins)",
        )

    async def exec_plugin(
        self, command: str, netconf: Mapping[str, Any], attachment: Attachment
    ) -> dict[str, Any] | None:
        """Run one plugin; returns its JSON result (ADD/VERSION) or ``None``."""
        plugin_type = str(netconf["type"])
        path = self.find_plugin(plugin_type)
        env = host_env(
            CNI_COMMAND=command,
            CNI_CONTAINERID=attachment.container_id,
            CNI_NETNS=attachment.netns,
            CNI_IFNAME=attachment.ifname,
            CNI_ARGS=attachment.cni_args(),
            CNI_PATH=":".join(str(d) for d in self.plugin_dirs),
        )
        result = await self.runner.run([str(path)], stdin=json.dumps(netconf).encode(), env=env)
        if not result.ok:
            raise _plugin_error(plugin_type, command, result.stdout, result.stderr)
        if not result.stdout.strip():
            return None
        try:
            doc = json.loads(result.stdout)
        except ValueError as exc:
            raise CniError(
                plugin=plugin_type, command=command, code=999, msg=f"invalid JSON result: {exc}"
            ) from exc
        return doc if isinstance(doc, dict) else None

    def _cache_path(self, network: str, attachment: Attachment) -> Path:
        return self.cache_dir / f"{network}-{attachment.container_id}-{attachment.ifname}"

    def cached_result(self, network: str, attachment: Attachment) -> dict[str, Any] | None:
        try:
            doc = json.loads(self._cache_path(network, attachment).read_text())
        except (FileNotFoundError, ValueError):
            return None
        result = doc.get("result")
        return result if isinstance(result, dict) else None

    def remember(self, network: str, attachment: Attachment, result: Mapping[str, Any]) -> None:
        """Cache ``result`` as the ADD result of ``attachment`` (an ADD done without the
        plugins, which CHECK and DEL may still be asked to undo)."""
        self._write_cache(network, attachment, result)

    def forget(self, network: str, attachment: Attachment) -> None:
        """Drop the cached ADD result (the attachment was deleted without the plugins)."""
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(network, attachment).unlink()

    def _write_cache(self, network: str, attachment: Attachment, result: Mapping[str, Any]) -> None:
        path = self._cache_path(network, attachment)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "kind": "berthCniCacheV1",
            "containerId": attachment.container_id,
            "ifName": attachment.ifname,
            "netns": attachment.netns,
            "result": result,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(doc))  # dumps: json.dump is the pure-Python encoder
        os.replace(tmp, path)

    async def add(self, conflist: Mapping[str, Any], attachment: Attachment) -> dict[str, Any]:
        """ADD through every plugin of the list; the last result is cached and returned."""
        prev: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            conf = plugin_netconf(conflist, plugin, attachment, prev)
            prev = await self.exec_plugin("ADD", conf, attachment) or prev
        final = prev or {"cniVersion": conflist["cniVersion"]}
        self._write_cache(str(conflist["name"]), attachment, final)
        return final

    async def check(self, conflist: Mapping[str, Any], attachment: Attachment) -> None:
        """CHECK every plugin against the cached ADD result."""
        prev = self.cached_result(str(conflist["name"]), attachment)
        if prev is None:
            raise CniError(
                plugin=str(conflist["name"]),
                command="CHECK",
                code=999,
                msg="no cached ADD result for this attachment (was it added by this node?)",
            )
        for plugin in conflist["plugins"]:
            await self.exec_plugin(
                "CHECK", plugin_netconf(conflist, plugin, attachment, prev), attachment
            )

    async def delete(self, conflist: Mapping[str, Any], attachment: Attachment) -> None:
        """DEL through the list in reverse order; idempotent (plugins must tolerate repeats)."""
        name = str(conflist["name"])
        prev = self.cached_result(name, attachment)
        for plugin in reversed(conflist["plugins"]):
            await self.exec_plugin(
                "DEL", plugin_netconf(conflist, plugin, attachment, prev), attachment
            )
        with contextlib.suppress(FileNotFoundError):
            self._cache_path(name, attachment).unlink()


def _plugin_error(plugin: str, command: str, stdout: bytes, stderr: bytes) -> CniError:
    """Plugins report errors as ``{"code", "msg", "details"}`` on stdout; fall back to stderr."""
    try:
        err = json.loads(stdout)
        return CniError(
            plugin=plugin,
            command=command,
            code=int(err.get("code", 999)),
            msg=str(err.get("msg", "")),
            details=str(err.get("details", "")),
        )
    except (ValueError, AttributeError, TypeError):
        msg = stderr.decode(errors="replace").strip() or "no output"
        return CniError(plugin=plugin, command=command, code=999, msg=msg)


def first_ipv4(result: Mapping[str, Any]) -> tuple[str, str | None]:
    """The first IPv4 address (``a.b.c.d``) and its gateway from an ADD result."""
    for ip in result.get("ips") or []:
        address = str(ip.get("address", ""))
        if "." in address:
            return address.split("/", 1)[0], ip.get("gateway")
    raise CniError(plugin="-", command="ADD", code=999, msg=f"result has no IPv4 address: {result}")
