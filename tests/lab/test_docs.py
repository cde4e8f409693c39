"""The documentation's ``sh runnable lab`` blocks, run as written against one lab cluster.

One 3-host lab (n1 control plane and worker, n2 and n3 workers) is booted for the module; its
spec is written as ``cluster.yaml`` (keys made absolute) in one working directory that every
block shares, with ``BERTH_STATE_DIR`` pointing into it. The blocks run in the order a user
meets them: getting started (the first apply), CI (events, the verify report), troubleshooting
(refused keys), then operating, which ends with the teardown. See tests/docs/blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from provisioner.lab import Lab
from tests.docs.blocks import Block, berth_shim, run_block, runnable_blocks
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

PAGE_ORDER = ("getting-started.md", "ci.md", "troubleshooting.md", "operating.md")
BLOCKS = sorted(
    runnable_blocks(lab=True), key=lambda b: (PAGE_ORDER.index(b.page), b.line)
)  # a page not in PAGE_ORDER fails here, at collection: add it where it belongs


@dataclass(frozen=True)
class DocsCluster:
    lab: Lab
    work: Path
    bin_dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def docs_cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> DocsCluster:
    lab = lab_factory(3)
    work = tmp_path_factory.mktemp("docs-lab")
    document = yaml.safe_load(lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    (work / "cluster.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return DocsCluster(
        lab=lab,
        work=work,
        bin_dir=berth_shim(tmp_path_factory.mktemp("docs-bin")),
        env={"BERTH_STATE_DIR": str(work / "state")},
    )


def test_the_lab_blocks_end_with_the_teardown() -> None:
    assert BLOCKS
    assert BLOCKS[0].page == "getting-started.md"
    assert "berth apply" in BLOCKS[0].text
    assert "berth destroy" in BLOCKS[-1].text


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_lab_doc_block_runs_as_documented(block: Block, docs_cluster: DocsCluster) -> None:
    run_block(block, docs_cluster.work, docs_cluster.bin_dir, env=docs_cluster.env, timeout=900)
