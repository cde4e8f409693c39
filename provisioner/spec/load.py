"""Load a cluster spec and report every problem in it at once, each located in the file.

Order of work: parse the YAML (a syntax error stops here, located), index positions, validate
the fields with pydantic, run the cross-field rules on the same raw document, and only then, if
nothing is wrong, hand back the :class:`ClusterSpec`. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from provisioner.errors import SpecError
from provisioner.spec.checks import semantic_problems
from provisioner.spec.files import local_file_problems, ssh_file_problems
from provisioner.spec.model import API_VERSION, KIND, ClusterSpec
from provisioner.spec.problems import Problem, position_of, render
from provisioner.spec.source import SourceMap, YamlSyntaxError, parse_yaml
from provisioner.spec.translate import problems_from_validation

_HINT = "fix the lines above; `berth schema` prints a JSON Schema for editor completion"


def load_spec(path: str | Path, *, ssh_files: bool = False) -> ClusterSpec:
    """Read, validate and return the spec at ``path``.

    Raises :class:`provisioner.errors.SpecError` carrying every problem, each rendered as
    ``FILE:LINE:COL: path.to.field: message (got VALUE); hint: ...``. With ``ssh_files``
    (`berth validate` and every command that connects to the hosts), the SSH identity and
    known_hosts files the spec names are checked too.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SpecError(
            [f"{path}: cannot read the spec: {reason}"],
            hint="pass the cluster spec with -i FILE",
        ) from None
    return parse_spec(text, filename=str(path), source=file, ssh_files=ssh_files)


def parse_spec(
    text: str, *, filename: str = "<spec>", source: Path | None = None, ssh_files: bool = False
) -> ClusterSpec:
    """Validate spec ``text``; ``filename`` is what messages name, ``source`` anchors the
    relative paths inside the spec (identity files, known_hosts), ``ssh_files`` checks those
    files exist and are usable."""
    try:
        data, source_map, problems = parse_yaml(text, filename)
    except YamlSyntaxError as error:
        where = f"{filename}:{error.position.line}:{error.position.column}"
        line = f"{where}: {error.problem.message}"
        if error.problem.hint:
            line += f"; hint: {error.problem.hint}"
        raise SpecError([line], hint=_HINT) from None
    spec: ClusterSpec | None = None
    if not isinstance(data, dict):
        problems.append(
            Problem(
                (),
                "the document must be a mapping with apiVersion, kind, metadata and spec",
                hint=f"start the file with 'apiVersion: {API_VERSION}' and 'kind: {KIND}'",
            )
        )
    else:
        try:
            # YAML keys are the camelCase aliases only; Python code may still construct models
            # by field name, but a spec file has exactly one spelling for each key.
            spec = ClusterSpec.model_validate(data, by_alias=True, by_name=False)
        except ValidationError as error:
            problems.extend(problems_from_validation(error, ClusterSpec))
        problems.extend(semantic_problems(data))
        if spec is not None:
            problems.extend(local_file_problems(spec.with_source(source)))
            if ssh_files:
                problems.extend(ssh_file_problems(spec))
    if problems or spec is None:
        raise SpecError(_rendered(problems, source_map), hint=_HINT)
    return spec.with_source(source)


def _rendered(problems: list[Problem], source_map: SourceMap) -> list[str]:
    def order(problem: Problem) -> tuple[int, int]:
        return position_of(problem, source_map)

    lines: list[str] = []
    for problem in sorted(problems, key=order):
        line = render(problem, source_map)
        if line not in lines:
            lines.append(line)
    return lines
