"""HTML pages from Jinja2 templates (``kennel/templates``): the test report, the compliance
report and the demo's story share one layout, which the web dashboard builds on. Everything a
page needs is inlined (styles, charts as SVG, images as data URIs): pages work offline."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("kennel", "templates"),
        autoescape=select_autoescape(("html",)),
        undefined=StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, digits=4: "-" if v is None else f"{float(v):.{digits}f}"
    env.filters["when"] = lambda v: "-" if not v else str(v)[:19].replace("T", " ")
    env.globals["line_chart"] = line_chart
    env.globals["histogram"] = histogram
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def _x(value: float | datetime) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def line_chart(
    series: Mapping[str, Sequence[tuple[float | datetime, float | None]]],
    *,
    title: str,
    width: int = 560,
    height: int = 200,
    y_range: tuple[float, float] | None = None,
    steps: bool = False,
    markers: Sequence[tuple[float | datetime, str]] = (),
    thresholds: Mapping[str, float] | None = None,
) -> Markup:
    """An inline SVG line chart; every point is a ``<circle>`` carrying its data in
    ``data-series``/``data-x``/``data-y`` (tests and tooltips read them), missing values skipped.
    ``steps``: a value holds until the next point (what an alias names over time).
    ``markers``: events on the x axis (alerts), each a dashed vertical line with its label
    (``data-x``/``data-label``); ``thresholds``: named horizontal lines (``data-threshold``),
    always inside the drawn range."""
    points = {
        name: [(_x(x), float(y), x) for x, y in values if y is not None and math.isfinite(y)]
        for name, values in series.items()
    }
    limits = {k: float(v) for k, v in (thresholds or {}).items() if math.isfinite(v)}
    xs = [p[0] for ps in points.values() for p in ps]
    ys = [p[1] for ps in points.values() for p in ps]
    label = escape(title)
    if not xs:
        return Markup('<p class="empty">{}: no data yet</p>').format(title)
    lo, hi = y_range or (min(ys + list(limits.values())), max(ys + list(limits.values())))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    xs += [_x(x) for x, _ in markers]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    pad = 36

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad + (lo - y) / (hi - lo) * (height - 2 * pad)

    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{label}</title>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#888"/>',
        f'<text x="4" y="{sy(hi) + 4:.1f}" font-size="10">{hi:.3g}</text>',
        f'<text x="4" y="{sy(lo) + 4:.1f}" font-size="10">{lo:.3g}</text>',
        *_time_labels(points, x0, x1, sx, height - pad + 14),
        *_thresholds(limits, lo, hi, sy, pad, width),
        *_markers(markers, sx, pad, height),
    ]
    for i, (name, pts) in enumerate(points.items()):
        colour = PALETTE[i % len(PALETTE)]
        drawn = [(x, y) for x, y, _ in pts]
        if steps:  # a value holds flat until the next point's time, then jumps
            held: list[tuple[float, float]] = []
            for (x, y), (next_x, _) in pairwise(drawn):
                held += [(x, y), (next_x, y)]
            drawn = held + drawn[-1:]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in drawn)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>'
            f'<g fill="{colour}">'
        )
        series_name = escape(name)
        tips = len(pts) <= 60  # a tooltip per point while points are far enough apart to hover
        for x, y, raw in pts:
            shown = _shown(raw)
            tip = f"<title>{series_name} {shown}: {y:.4g}</title>" if tips else ""
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" data-series="{series_name}" '
                f'data-x="{shown}" data-y="{y:.6g}">{tip}</circle>'
            )
        parts.append("</g>")
        # the legend's words in the text colour (readable on any background), its swatch in
        # the series' colour
        x = pad + 120 * (i % 4)
        y = 12 + 12 * (i // 4)
        parts.append(
            f'<rect x="{x}" y="{y - 7}" width="10" height="4" fill="{colour}"/>'
            f'<text x="{x + 13}" y="{y}" font-size="11" fill="#1d2330">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def histogram(
    bins: Sequence[tuple[float, float, int]],
    *,
    title: str,
    width: int = 360,
    height: int = 150,
) -> Markup:
    """An inline SVG histogram of ``(low, high, count)`` bins; every bar is a ``<rect>``
    carrying ``data-lo``/``data-hi``/``data-count`` (what a test or a tooltip reads)."""
    label = escape(title)
    if not bins or not any(n for _, _, n in bins):
        return Markup('<p class="empty">{}: no data</p>').format(title)
    pad, top = 30, max(n for _, _, n in bins)
    step = (width - 2 * pad) / len(bins)
    parts = [
        f'<svg class="chart histogram" role="img" aria-label="{label}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}"><title>{label}</title>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#888"/>',
        f'<text x="4" y="{pad:.1f}" font-size="10">{top}</text>',
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">{bins[0][0]:.4g}</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">'
        f"{bins[-1][1]:.4g}</text>",
    ]
    for i, (lo, hi, n) in enumerate(bins):
        tall = (height - 2 * pad) * n / top
        parts.append(
            f'<rect x="{pad + i * step + 0.5:.1f}" y="{height - pad - tall:.1f}" '
            f'width="{max(step - 1, 1):.1f}" height="{tall:.1f}" fill="{PALETTE[0]}" '
            f'data-lo="{lo:.6g}" data-hi="{hi:.6g}" data-count="{n}">'
            f"<title>{lo:.4g} to {hi:.4g}: {n}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers only, and the escaped title


def _shown(x: float | datetime) -> str:
    """An x value as its points carry it: a time to the second (ISO 8601), else a number."""
    return x.isoformat(timespec="seconds") if isinstance(x, datetime) else f"{x:g}"


def _time_labels(
    points: Mapping[str, Sequence[tuple[float, float, Any]]],
    x0: float,
    x1: float,
    sx: Callable[[float], float],
    y: float,
) -> list[str]:
    """The first and last time under the x axis, when x is time."""
    if not any(isinstance(p[2], datetime) for ps in points.values() for p in ps):
        return []
    fmt = "%m-%d %H:%M" if x1 - x0 > 3600 else "%H:%M:%S"
    first, last = (datetime.fromtimestamp(t, UTC).strftime(fmt) for t in (x0, x1))
    return [
        f'<text x="{sx(x0):.1f}" y="{y:.1f}" font-size="10">{first}</text>',
        f'<text x="{sx(x1):.1f}" y="{y:.1f}" font-size="10" text-anchor="end">{last} UTC</text>',
    ]


def _thresholds(
    limits: Mapping[str, float],
    lo: float,
    hi: float,
    sy: Callable[[float], float],
    pad: int,
    width: int,
) -> list[str]:
    out = []
    for name, value in limits.items():
        if not lo <= value <= hi:
            continue
        y = sy(value)
        out.append(
            f'<line class="threshold" x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" '
            f'stroke="#5b6475" stroke-dasharray="4 3" data-threshold="{value:.6g}" '
            f'data-label="{escape(name)}"><title>{escape(name)}: {value:.4g}</title></line>'
            f'<text x="{width - pad + 2}" y="{y + 3:.1f}" font-size="9" fill="#1d2330">'
            f"{value:.3g}</text>"
        )
    return out


def _markers(
    markers: Sequence[tuple[float | datetime, str]],
    sx: Callable[[float], float],
    pad: int,
    height: int,
) -> list[str]:
    out = []
    for at, name in markers:
        x = sx(_x(at))
        shown = _shown(at)
        out.append(
            f'<line class="marker" x1="{x:.1f}" y1="{pad - 8}" x2="{x:.1f}" '
            f'y2="{height - pad}" stroke="#a31515" stroke-dasharray="2 2" '
            f'data-x="{shown}" data-label="{escape(name)}">'
            f"<title>{escape(name)} at {shown}</title></line>"
            f'<path d="M{x - 4:.1f},{pad - 8} h8 l-4,6 z" fill="#a31515" aria-hidden="true"/>'
        )
    return out
