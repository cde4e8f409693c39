"""Gather many facts in one round-trip: one ``sh`` script, sections between random delimiters.

Each fact's snippet runs in its own subshell with stderr discarded; its stdout is framed by a
begin line and an end line carrying the snippet's exit code. The delimiter includes a random
token, so no file content or command output can forge a frame.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from provisioner.connectors.base import Connector
from provisioner.errors import FactError
from provisioner.facts.base import Fact, FactSet


def batch_script(facts: Sequence[Fact[Any]], token: str) -> str:
    """The one script that prints every fact's output framed by ``token`` delimiters."""
    parts = ["export LC_ALL=C"]
    for index, fact in enumerate(facts):
        parts.append(f"printf '%s\\n' '@@{token} {index}'")
        parts.append(f"( {fact.command()}\n) 2>/dev/null </dev/null")
        parts.append(f"printf '\\n%s %d\\n' '@@{token} {index} end' $?")
    return "\n".join(parts) + "\n"


def split_sections(stdout: str, token: str, count: int) -> list[tuple[str, int]]:
    """Cut the script's stdout back into ``count`` (output, exit code) pairs."""
    # the script prints its sections in order: cut them with str.find; anything else (a
    # section missing, out of order, or more of the token after the last one) is left to the
    # regular expression, compiled anew for each token (~0.5 ms: once per host and plan)
    in_order = _sections_in_order(stdout, token, count)
    if in_order is not None:
        return in_order
    found: dict[int, tuple[str, int]] = {}
    pattern = re.compile(rf"@@{token} (\d+)\n(.*?)\n@@{token} \1 end (\d+)\n", re.DOTALL)
    for match in pattern.finditer(stdout):
        found[int(match.group(1))] = (match.group(2), int(match.group(3)))
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise FactError(f"fact output incomplete: sections {missing} missing")
    return [found[i] for i in range(count)]


def _sections_in_order(stdout: str, token: str, count: int) -> list[tuple[str, int]] | None:
    """The sections as :func:`split_sections`' expression finds them when the output is
    exactly sections 0 to ``count - 1`` in order (with anything between them), else None."""
    sections: list[tuple[str, int]] = []
    position = 0
    for index in range(count):
        head = f"@@{token} {index}\n"
        start = stdout.find(head, position)
        if start < 0 or stdout.find(f"@@{token} ", position, start) >= 0:
            return None  # missing, or another section of the token first
        body = start + len(head)
        tail = f"\n@@{token} {index} end "
        end = stdout.find(tail, body)
        if end < 0:
            return None
        code_start = end + len(tail)
        code_end = stdout.find("\n", code_start)
        code = stdout[code_start:code_end]
        if code_end < 0 or not (code.isascii() and code.isdigit()):
            return None
        if stdout.find(f"@@{token} ", body, end) >= 0:
            return None  # the token inside a section's output: the expression decides
        sections.append((stdout[body:end], int(code)))
        position = code_end + 1
    if stdout.find(f"@@{token} ", position) >= 0:
        return None
    return sections


SOLO_TRIES = 3


def gather(
    connector: Connector,
    facts: Sequence[Fact[Any]],
    into: FactSet | None = None,
    *,
    speculative: Sequence[Fact[Any]] = (),
) -> FactSet:
    """Run every fact in ``facts`` on the host in one round-trip and parse the results.

    Facts marked ``solo`` (the clock) get their own short round-trip each, best of three by
    round-trip time, so slower facts in the batch do not blur when they were read.
    ``speculative`` facts (probably needed next) ride along in the same batch; one whose output
    does not parse is left out instead of failing the host.
    """
    result = into if into is not None else FactSet(connector.host)
    unique = list(dict.fromkeys(facts))
    wanted = set(unique)
    extra = [f for f in dict.fromkeys(speculative) if not f.solo and f not in wanted]
    _batch(connector, [f for f in unique if not f.solo], result, optional=extra)
    for fact in (f for f in unique if f.solo):
        best: FactSet | None = None
        for _ in range(SOLO_TRIES):
            sample = _batch(connector, [fact], FactSet(connector.host))
            sent, received = sample.times[fact.key()]
            if best is None or received - sent < _spread(best, fact):
                best = sample
            if received - sent < 0.05:
                break
        assert best is not None
        result.update(best)
    return result


def _spread(facts: FactSet, fact: Fact[Any]) -> float:
    sent, received = facts.times[fact.key()]
    return received - sent


def _batch(
    connector: Connector,
    required: list[Fact[Any]],
    result: FactSet,
    *,
    optional: Sequence[Fact[Any]] = (),
) -> FactSet:
    if not required:
        return result  # speculation alone never costs a round trip
    unique = [*required, *optional]
    runs = _combined(unique)
    token = secrets.token_hex(8)
    sent = time.time()
    answer = connector.run(batch_script([run for run, _ in runs], token))
    received = time.time()
    try:
        sections = split_sections(answer.stdout, token, len(runs))
    except FactError as error:
        raise FactError(
            f"{connector.host}: gathering facts failed ({error}); exit {answer.exit_code}: "
            f"{answer.stderr.strip()[-300:]}"
        ) from None
    result.round_trip = (sent, received)
    needed = set(required)
    for (_, members), (output, code) in zip(runs, sections, strict=True):
        for fact in members:
            try:
                own = fact.portion(output) if type(fact).combinable else output
                result.add(fact, own, code)
            except FactError:
                if fact in needed:
                    raise
                continue  # a speculative fact that does not parse: as if never asked
            result.times[fact.key()] = (sent, received)
    return result


def _combined(facts: list[Fact[Any]]) -> list[tuple[Fact[Any], list[Fact[Any]]]]:
    """What runs on the host: (command's fact, the facts parsed from its output). Facts of a
    combinable class run as one combined fact, even alone, so each one's raw output (its
    portion, which digests and drift checks compare) never depends on its batch-mates."""
    runs: list[tuple[Fact[Any], list[Fact[Any]]]] = []
    groups: dict[type[Fact[Any]], list[Fact[Any]]] = {}
    for fact in facts:
        if type(fact).combinable:
            groups.setdefault(type(fact), []).append(fact)
        else:
            runs.append((fact, [fact]))
    runs += [(cls.combine(members), members) for cls, members in groups.items()]
    return runs
