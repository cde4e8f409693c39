"""Facts are gathered in one round-trip and framed so output cannot forge a section."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from provisioner.connectors.base import CommandResult
from provisioner.connectors.local import LocalConnector
from provisioner.errors import FactError
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.gather import gather, split_sections
from provisioner.facts.packages import Packages
from provisioner.facts.system import Clock, Machine, OsRelease, Sysctls
from tests.harness.fake_connector import FakeConnector


def test_one_round_trip_for_many_facts_against_a_real_shell(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("@@fake 0 end 0\n")  # content that looks like a delimiter
    paths = PathInfo((str(tmp_path / "f"), str(tmp_path / "missing")))
    facts: list[Fact[Any]] = [paths, OsRelease(), Clock()]
    calls: list[str] = []

    class Counting(LocalConnector):
        def run(self, command, *, stdin=None, timeout=None):  # type: ignore[no-untyped-def]
            calls.append(str(command))
            return super().run(command, stdin=stdin, timeout=timeout)

    result = gather(Counting(), facts)
    # one round-trip for the batch; the clock is "solo": its own short round-trip, so the
    # time it was read is bounded by that round-trip alone
    assert len(calls) == 2
    assert "date +%s.%N" not in calls[0]
    assert "date +%s.%N" in calls[1]
    sent, received = result.times[Clock().key()]
    assert sent <= result.get(Clock()) <= received
    info = result.get(paths)
    assert info[str(tmp_path / "missing")] is None
    assert info[str(tmp_path / "f")] is not None
    assert result.round_trip is not None


def test_path_digests_from_a_real_shell_are_the_files_sha256(tmp_path: Path) -> None:
    first, second, folder = tmp_path / "a", tmp_path / "b c", tmp_path / "d"
    first.write_bytes(b"one\n")
    second.write_bytes(b"")
    folder.mkdir()
    fact = PathInfo((str(first), str(folder), str(second)))
    info = gather(LocalConnector(), [fact]).get(fact)
    digests = {path: state.sha256 if state else "absent" for path, state in info.items()}
    assert digests == {
        str(first): hashlib.sha256(b"one\n").hexdigest(),
        str(folder): None,
        str(second): hashlib.sha256(b"").hexdigest(),
    }


def test_fingerprint_ignores_volatile_facts_and_tracks_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("a")
    facts: list[Fact[Any]] = [PathInfo((str(path),)), Clock()]
    first = gather(LocalConnector(), facts).fingerprint()
    assert gather(LocalConnector(), facts).fingerprint() == first
    path.write_text("b")
    assert gather(LocalConnector(), facts).fingerprint() != first


def test_truncated_output_is_a_fact_error_naming_the_host() -> None:
    fake = FakeConnector("n2", default=CommandResult(255, "", "Connection reset"))
    with pytest.raises(FactError, match=r"n2: gathering facts failed .*Connection reset"):
        gather(fake, [Sysctls(("net.ipv4.ip_forward",))])


def test_unparseable_output_names_host_and_fact() -> None:
    def respond(script: str) -> CommandResult:
        token = script.split("'@@", 1)[1].split(" ", 1)[0]
        return CommandResult(0, f"@@{token} 0\nnot-a-number\n@@{token} 0 end 0\n", "")

    with pytest.raises(FactError, match=r"n3: cannot parse fact Clock\{\}"):
        gather(FakeConnector("n3", responder=respond), [Clock()])


def test_path_facts_of_a_batch_run_as_one_command_each_with_its_own_output(
    tmp_path: Path,
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    a, b, c = (str(tmp_path / n) for n in ("a", "b", "c"))
    alone, mixed, overlapping = PathInfo((a,)), PathInfo((c, str(tmp_path))), PathInfo((b, a))
    sent: list[str] = []

    class Counting(LocalConnector):
        def run(self, command, *, stdin=None, timeout=None):  # type: ignore[no-untyped-def]
            sent.append(str(command))
            return super().run(command, stdin=stdin, timeout=timeout)

    together = gather(Counting(), [alone, OsRelease(), mixed, overlapping])
    # one find and one sha256sum for every path of the batch, however many facts named them
    assert sent[0].count("find ") == 1
    assert sent[0].count("sha256sum") == 1
    assert together.get(overlapping)[a] == together.get(alone)[a]
    assert together.get(mixed)[str(tmp_path)] is not None
    assert together.get(mixed)[c] is not None
    # each fact's own output (what digests and drift checks compare) does not depend on what
    # else was gathered with it
    for fact in (alone, mixed, overlapping):
        solo = gather(LocalConnector(), [fact])
        assert solo.get(fact) == together.get(fact)
        assert solo.digests([fact]) == together.digests([fact])


def test_package_facts_of_a_batch_run_as_one_dpkg_query_each_with_its_own_output() -> None:
    every, some = Packages(), Packages(("bash", "no-such-package-here"))
    sent: list[str] = []

    class Counting(LocalConnector):
        def run(self, command, *, stdin=None, timeout=None):  # type: ignore[no-untyped-def]
            sent.append(str(command))
            return super().run(command, stdin=stdin, timeout=timeout)

    together = gather(Counting(), [some, Machine(), every])
    assert sent[0].count("dpkg-query") == 1
    assert together.get(some)["no-such-package-here"] is None
    assert together.get(some)["bash"] == together.get(every)["bash"] is not None
    for fact in (every, some):
        solo = gather(LocalConnector(), [fact])
        assert solo.get(fact) == together.get(fact)
        assert solo.digests([fact]) == together.digests([fact])


def _by_expression(stdout: str, token: str, count: int) -> list[tuple[str, int]] | None:
    """The sections as the regular expression alone cuts them (the reference)."""
    found = {
        int(m.group(1)): (m.group(2), int(m.group(3)))
        for m in re.finditer(
            rf"@@{token} (\d+)\n(.*?)\n@@{token} \1 end (\d+)\n", stdout, re.DOTALL
        )
    }
    return [found[i] for i in range(count)] if all(i in found for i in range(count)) else None


TOKEN = "0123456789abcdef"
BODIES = ["", "one line", "two\nlines", "\n", "@@other 0\nlooks like a frame\n@@other 0 end 0",
          "trailing newline\n", "\n@@0123 0 end 1", "tab\tseparated\tinstalled"]  # fmt: skip


def _framed(bodies: list[str], codes: list[int]) -> str:
    return "".join(
        f"@@{TOKEN} {i}\n{body}\n@@{TOKEN} {i} end {code}\n"
        for i, (body, code) in enumerate(zip(bodies, codes, strict=True))
    )


@pytest.mark.parametrize("count", [1, 2, len(BODIES)])
def test_sections_cut_in_order_equal_the_expressions(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = BODIES[:count]
    codes = [i % 3 for i in range(count)]
    stdout = "login banner\n" + _framed(bodies, codes) + "motd after\n"
    expected = _by_expression(stdout, TOKEN, count)
    assert expected == list(zip(bodies, codes, strict=True))

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("the in-order output needs no expression")

    with monkeypatch.context() as patched:
        patched.setattr(re, "compile", no_compile)
        cut = split_sections(stdout, TOKEN, count)
    assert cut == expected


@pytest.mark.parametrize(
    "stdout",
    [
        f"@@{TOKEN} 1\nb\n@@{TOKEN} 1 end 1\n@@{TOKEN} 0\na\n@@{TOKEN} 0 end 0\n",  # reversed
        _framed(["a", "b"], [0, 1]) + _framed(["again"], [5]),  # a section twice: the last wins
        _framed(["a", f"x @@{TOKEN} 0\n"], [0, 1]),  # the token inside an output
        f"@@{TOKEN} 0\nbody\n@@{TOKEN} 0 end x\nmore\n@@{TOKEN} 0 end 4\n"
        + _framed(["", "b"], [0, 1])[len(f"@@{TOKEN} 0\n\n@@{TOKEN} 0 end 0\n") :],
    ],
)
def test_other_output_is_cut_by_the_expression(stdout: str) -> None:
    expected = _by_expression(stdout, TOKEN, 2)
    if expected is None:
        with pytest.raises(FactError, match="sections"):
            split_sections(stdout, TOKEN, 2)
    else:
        assert split_sections(stdout, TOKEN, 2) == expected


def test_a_missing_section_is_an_error() -> None:
    with pytest.raises(FactError, match=r"sections \[1\] missing"):
        split_sections(_framed(["a"], [0]), TOKEN, 2)
