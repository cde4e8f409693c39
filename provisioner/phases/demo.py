"""A demo phase set: preflight, artifacts (a real .deb) and a small service.

It exercises every kind of operation the cluster phases use — a user, directories, a templated
config file, a symlink, a systemd unit restarted when its config changes, and a package shipped as
a ``.deb`` — so the engine can be demonstrated and benchmarked before the cluster phases exist.
``berth apply -i SPEC --phases demo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from provisioner.artifacts.debs import DEB_ARCH, DebCache
from provisioner.connectors.base import HostTarget
from provisioner.facts.base import Fact
from provisioner.facts.packages import Packages
from provisioner.facts.system import Machine
from provisioner.operations.base import Operation
from provisioner.operations.files import Directory, File, Symlink, template
from provisioner.operations.packages import DebPackages
from provisioner.operations.systemd import Service, UnitFile
from provisioner.operations.users import User
from provisioner.phases.preflight import preflight_phase
from provisioner.templating import render
from provisioner.workflow import Phase, PhaseData

TEMPLATES = files("provisioner.phases") / "demo_templates"
DEMO_PACKAGES = ("tree",)
DEMO_PORT = 8099


def _artifact_facts(data: PhaseData, host: HostTarget) -> Sequence[Fact[Any]]:
    return (Packages(), Machine())


def _artifact_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    facts = data.host_facts(host.name, _artifact_facts(data, host))
    installed = facts.get(Packages())
    arch = DEB_ARCH.get(facts.get(Machine()).arch, facts.get(Machine()).arch)
    cache = DebCache(data.cache_dir / "debs")
    wanted = cache.resolve(DEMO_PACKAGES, installed)
    return (DebPackages(cache.fetch(wanted, arch=arch)),)


def _demo_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    context = {"cluster": data.inventory.cluster, "host": host.name, "address": host.address,
               "port": DEMO_PORT}  # fmt: skip
    unit = render("berth-demo.service.j2", context, root=TEMPLATES).encode()
    return (
        User("berth-demo", home="/var/lib/berth-demo"),
        Directory("/etc/berth-demo"),
        Directory("/var/lib/berth-demo", mode=0o750, owner="berth-demo", group="berth-demo"),
        template("/etc/berth-demo/demo.conf", "demo.conf.j2", context, root=TEMPLATES),
        File(
            "/var/lib/berth-demo/index.html",
            f"<h1>{host.name}</h1>\n".encode(),
            owner="berth-demo",
            group="berth-demo",
        ),
        Symlink("/usr/local/bin/berth-demo-tree", "/usr/bin/tree"),
        UnitFile("berth-demo.service", unit),
        Service("berth-demo.service", restart_on=("file:/etc/berth-demo/demo.conf",)),
    )


def demo_phases() -> list[Phase]:
    """preflight → artifacts → demo."""
    return [
        preflight_phase(peer_ports=lambda data, host: (DEMO_PORT,)),
        Phase(
            "artifacts",
            "Ship .deb packages the hosts lack",
            operations=_artifact_ops,
            facts=_artifact_facts,
        ),
        Phase("demo", "Install the demo service", operations=_demo_ops),
    ]
