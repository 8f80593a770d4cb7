"""Server-rendered SVG line charts for the Metrics page: no chart library, no script, and
nothing the strict Content-Security-Policy blocks (presentation attributes, no styles)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Chart:
    """One chart: its title, unit, SVG markup and the latest value as text."""

    key: str
    title: str
    unit: str
    svg: str
    latest: str


def line_chart(values: list[float | None], *, label: str, width: int = 560,
               height: int = 120, color: str = "#2563eb") -> str:
    """An SVG polyline of `values` (None leaves a gap), scaled from zero to the largest value,
    with the maximum written on the axis."""
    pad_left, pad = 44, 6
    inner_w, inner_h = width - pad_left - pad, height - 2 * pad
    # NaN or an infinity (a source's odd sample) is a gap: one would make every point and
    # the axis's maximum "nan", and the browser draw no line at all
    values = [v if v is not None and math.isfinite(v) else None for v in values]
    finite = [v for v in values if v is not None]
    top = max(finite) if finite else 0.0
    scale_top = top if top > 0 else 1.0
    step = inner_w / max(len(values) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        x = pad_left + i * step
        y = pad + inner_h - (value / scale_top) * inner_h
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = []
    for segment in segments:
        if len(segment) == 1:
            x, y = segment[0].split(",")
            lines.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>')
        elif segment:
            lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                         f'points="{" ".join(segment)}"/>')
    axis = pad + inner_h
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width} {height}" width="100%" height="{height}">'
        f'<line x1="{pad_left}" y1="{axis}" x2="{width - pad}" y2="{axis}" stroke="#cbd5e1"/>'
        f'<line x1="{pad_left}" y1="{pad}" x2="{width - pad}" y2="{pad}" stroke="#eef2f7"/>'
        f'<text x="{pad_left - 4}" y="{pad + 8}" font-size="10" text-anchor="end" '
        f'fill="#64748b">{_short(top)}</text>'
        f'<text x="{pad_left - 4}" y="{axis}" font-size="10" text-anchor="end" '
        f'fill="#64748b">0</text>'
        + "".join(lines) + "</svg>"
    )


def _short(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_value(value: float | None, unit: str) -> str:
    """The latest value as the page shows it (`12.3 req/s`, `45 ms`, `–`)."""
    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{_short(value)} {unit}"


CHARTS = (
    ("requests_per_s", "Requests", "req/s", "#2563eb"),
    ("errors_per_s", "Errors (5xx)", "err/s", "#dc2626"),
    ("ttft_p50_s", "Time to first token p50", "s", "#059669"),
    ("ttft_p95_s", "Time to first token p95", "s", "#d97706"),
    ("tokens_per_s", "Generated tokens", "tok/s", "#7c3aed"),
)


def charts(points: list[dict]) -> list[Chart]:
    """The Metrics page's charts from `MetricsHistory.series()["points"]`."""
    result = []
    for key, title, unit, color in CHARTS:
        values = [p.get(key) for p in points]
        latest = next((v for v in reversed(values) if v is not None and math.isfinite(v)),
                      None)
        result.append(Chart(key, title, unit, line_chart(values, label=title, color=color),
                            format_value(latest, unit)))
    return result
