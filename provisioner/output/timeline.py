"""``--timeline FILE.svg``: where the time of a run went, per host and phase.

One row per host (and one for the operator-side ``(cluster)`` steps), time running left to
right; each of a host's turns in a stage or phase is a bar coloured by phase, labelled when it
is wide enough and titled (hover) with host, phase and seconds; a failed turn is outlined in
red. A legend names every phase. Plain SVG 1.1 written here (no plotting library): it opens in
any browser and renders on GitHub.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from provisioner.output.record import RunRecord, Span

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f",
    "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d", "#e15759", "#499894",
)  # fmt: skip
WIDTH = 1000
LABELS = 130
"""Pixels for the host names left of the bars."""
ROW = 24
BAR = 16
TOP = 48
CHAR = 6.2
"""Approximate width of one 11px sans-serif character, to decide whether a label fits."""


def _step(total: float) -> float:
    """A round tick interval giving about eight ticks over ``total`` seconds."""
    raw = max(total, 0.001) / 8
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def render_svg(
    spans: Sequence[Span], *, hosts: Sequence[str], phases: Sequence[str], title: str
) -> str:
    """The SVG text of a timeline of ``spans`` (rows in ``hosts`` order, colours in ``phases``
    order; hosts or phases only found in ``spans`` are appended)."""
    hosts = list(hosts) + sorted({s.host for s in spans} - set(hosts))
    phases = list(phases) + [p for p in dict.fromkeys(s.phase for s in spans) if p not in phases]
    colour = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(phases)}
    total = max((s.end if s.end is not None else s.start for s in spans), default=0.0) or 1.0
    plot = WIDTH - LABELS - 20
    scale = plot / total
    rows_bottom = TOP + ROW * len(hosts)
    legend_rows = math.ceil(len(phases) / 4)
    height = rows_bottom + 40 + legend_rows * 20 + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    step = _step(total)
    ticks = int(total / step) + 1
    for i in range(ticks):
        x = LABELS + i * step * scale
        label = f"{i * step:g}s"
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{rows_bottom}" '
            'stroke="#dddddd" stroke-width="1"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{TOP - 10}" text-anchor="middle">{label}</text>')
    for row, host in enumerate(hosts):
        top = TOP + row * ROW
        if row % 2:
            out.append(f'<rect x="0" y="{top}" width="{WIDTH}" height="{ROW}" fill="#f6f6f6"/>')
        out.append(f'<text x="10" y="{top + ROW / 2 + 4:.1f}">{escape(host)}</text>')
    row_of = {h: i for i, h in enumerate(hosts)}
    for span in spans:
        end = span.end if span.end is not None else total
        x = LABELS + span.start * scale
        width = max((end - span.start) * scale, 1.0)
        y = TOP + row_of[span.host] * ROW + (ROW - BAR) / 2
        outline = ' stroke="#d62728" stroke-width="2"' if not span.ok else ""
        tip = f"{span.host} [{span.phase}] {end - span.start:.2f}s" + ("" if span.ok else " FAILED")
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{BAR}" '
            f'fill="{colour[span.phase]}"{outline}><title>{escape(tip)}</title></rect>'
        )
        short = span.phase.rsplit("/", 1)[-1]
        if len(short) * CHAR + 6 < width:
            out.append(
                f'<text x="{x + 3:.1f}" y="{y + BAR - 4:.1f}" fill="#ffffff">{escape(short)}</text>'
            )
    out.append(
        f'<text x="{LABELS}" y="{rows_bottom + 18}" fill="#555555">'
        f"total {total:.1f}s; hover a bar for its host, phase and seconds</text>"
    )
    for i, phase in enumerate(phases):
        x = 10 + (i % 4) * (WIDTH - 20) / 4
        ly = rows_bottom + 34 + (i // 4) * 20
        out.append(
            f'<rect x="{x:.1f}" y="{ly}" width="12" height="12" fill="{colour[phase]}"/>'
            f'<text x="{x + 18:.1f}" y="{ly + 10}" class="phase" data-phase={quoteattr(phase)}>'
            f"{escape(phase)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_timeline(record: RunRecord, path: Path, *, title: str) -> Path:
    """Write the timeline of ``record`` to ``path`` (atomically) and return it."""
    text = render_svg(
        record.spans(), hosts=record.host_names(), phases=record.phase_names(), title=title
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
