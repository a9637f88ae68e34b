"""``zdfuzz report CORPUS``: one self-contained HTML page about campaigns.

Everything the page shows comes from the corpus directory (and its
subdirectories): the campaigns' stats files (``stats/*.jsonl``: executions
per second and coverage over time, one line per campaign), the findings'
metadata (invariant x device type x rules, new/shared/fixed against the
baseline) and the reproducers themselves (each with its ``explain``
narrative and the ``.zdf`` to download, embedded as a data URL). The page
is rendered with Jinja2; the charts are inline SVG drawn here; nothing is
loaded from the network.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import zdfuzz
from zdfuzz.corpus import CorpusError, StoredFinding, corpora_under, load_program

#: one colour per series (colour-blind safe, Okabe-Ito)
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")
LABEL_ORDER = ("new", "fixed", "shared", None)


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]] = field(default_factory=list)


def read_stats(root: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every stats file under ``root``: (campaign name, its lines); a line
    cut short by a kill is skipped."""
    out = []
    for p in sorted(root.rglob("stats/*.jsonl")):
        lines = []
        for raw in p.read_text().splitlines():
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            if isinstance(d, dict) and "elapsed" in d:
                lines.append(d)
        if lines:
            first = lines[0]
            out.append((f"{first.get('rules', '?')} {first.get('engine', '?')} ({p.stem})", lines))
    return out


def svg_chart(series: list[Series], title: str, y_label: str, width: int = 640, height: int = 260) -> str:
    """A line chart as an inline ``<svg>``: axes, ticks, one polyline per series, a legend."""
    left, right, top, bottom = 64, 16, 28, 40
    pw, ph = width - left - right, height - top - bottom
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points] or [0.0, 1.0]
    x_max = max(max(xs), 1e-9)
    y_max = max(max(ys), 1e-9) * 1.05

    def sx(x: float) -> float:
        return left + pw * x / x_max

    def sy(y: float) -> float:
        return top + ph - ph * y / y_max

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" class="chart-title">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for i in range(5):
        y = y_max * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" class="tick">{y:,.0f}</text>')
    for i in range(5):
        x = x_max * i / 4
        parts.append(f'<text x="{sx(x):.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{x:.0f}s</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" class="tick">seconds</text>')
    parts.append(
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" class="tick" '
        f'transform="rotate(-90 14 {top + ph / 2})">{html.escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
        if len(s.points) == 1:
            x, y = s.points[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>')
        elif s.points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="3" points="{pts}"/>')
        ly = top + 14 + 16 * i
        parts.append(f'<rect x="{left + 8}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 24}" y="{ly}" class="legend">{html.escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class Entry:
    finding: StoredFinding
    narrative: list[str]
    text: str
    download: str


def _entry(f: StoredFinding) -> Entry:
    from zdfuzz.report import explain

    text = f.zdf.read_text()
    try:
        program = load_program(f.zdf)
        narrative = explain(program, zdfuzz.Rules.resolve(program.rules)).lines()
    except (CorpusError, zdfuzz.ZdfuzzError) as e:
        narrative = [f"cannot explain: {e}"]
    data = base64.b64encode(text.encode()).decode()
    return Entry(f, narrative, text, f"data:text/plain;base64,{data}")


def build(root: Path) -> str:
    """The page for the corpus directory ``root``."""
    findings = [f for c in corpora_under(root) for f in c.findings()]
    stats = read_stats(root)
    execs = [Series(name, [(d["elapsed"], d.get("execs_per_s", 0.0)) for d in lines]) for name, lines in stats]
    cover = [Series(name, [(d["elapsed"], d.get("coverage", 0.0)) for d in lines]) for name, lines in stats]
    charts = []
    if stats:
        charts = [
            svg_chart(execs, "executions per second (average since the start)", "execs/s"),
            svg_chart(cover, "coverage", "coverage"),
        ]
    # invariant x device type: the rules each was found under
    devices = sorted({f.signature.device for f in findings})
    grid: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in findings:
        grid[f.signature.invariant][f.signature.device].append(f.signature.rules)
    entries = sorted(
        (_entry(f) for f in findings),
        key=lambda e: (LABEL_ORDER.index(e.finding.meta.get("label")), str(e.finding.signature)),
    )
    labels = {k: sum(1 for f in findings if f.meta.get("label") == k) for k in ("new", "shared", "fixed")}
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("zdfuzz", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(
        root=str(root),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        version=zdfuzz.__version__,
        charts=charts,
        campaigns=[(name, lines[-1]) for name, lines in stats],
        devices=devices,
        grid={k: dict(v) for k, v in sorted(grid.items())},
        entries=entries,
        labels=labels,
    )
