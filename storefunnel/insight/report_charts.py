"""Small SVG charts drawn on the server: bars (vertical, grouped, horizontal and diverging), lines, heat colours.

The owner's report must print and convert to PDF exactly as it looks on screen, offline and without script, so
its charts are plain SVG markup with every style inline. Each helper returns ``Markup`` whose every label and
title is escaped here: the data (channel names, campaign names) comes from the store and is never trusted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT = "font-family:Helvetica,Arial,sans-serif"
AXIS = "#94a3b8"
TEXT = "#334155"
PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2")
Number = float | int | None
Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One named row of values (None: no value, drawn as a gap)."""

    name: str
    values: Sequence[Number]
    color: str = PALETTE[0]


def plain(value: float) -> str:
    """``1234.0`` -> ``1,234``; ``0.25`` -> ``0.25``: the default label of a value."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten not below ``value`` (1 for nothing to show)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-12):
            return float(step * power)
    return float(10 * power)


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, label: str, anchor: str = "middle", size: int = 11, color: str = TEXT) -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{size}" fill="{color}" '
        f'style="{FONT}">{escape(label)}</text>'
    )


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" style="max-width:100%;height:auto">'
        f"<title>{escape(title)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def _legend(series: Sequence[Series], width: int) -> list[str]:
    if len(series) < 2:
        return []
    out, x = [], 8.0
    for s in series:
        out.append(f'<rect x="{_num(x)}" y="4" width="10" height="10" fill="{escape(s.color)}"/>')
        out.append(_text(x + 14, 13, s.name, anchor="start"))
        x += 24 + 7 * len(s.name)
        if x > width - 60:
            break
    return out


def _value_top(series: Sequence[Series], labels: Sequence[str]) -> float:
    """The rounded top of a value axis from zero; every series must have one value per label."""
    for s in series:
        if len(s.values) != len(labels):
            raise ValueError(f"series {s.name!r}: {len(s.values)} values for {len(labels)} labels")
    return nice_ceiling(max((float(v) for s in series for v in s.values if v is not None), default=0.0))


def _value_grid(top: float, left: float, right: float, head: float, plot_h: float, fmt: Format) -> list[str]:
    """Grid lines at 0, half and the top of a value axis, each labelled on the left."""
    out = []
    for frac in (0.0, 0.5, 1.0):
        y = head + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" y1="{_num(y)}" x2="{right}" y2="{_num(y)}" stroke="#e2e8f0"/>')
        out.append(_text(left - 6, y + 4, fmt(top * frac), anchor="end", size=10))
    return out


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: max(1, limit - 1)] + "…"


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 640,
    height: int = 220,
    fmt: Format = plain,
    axis_fmt: Format | None = None,
) -> Markup:
    """Vertical bars, one group per label and one bar per series in it, from zero to a rounded maximum.

    Values below zero and None draw no bar. Labels under the axis are shortened when there are many; every bar
    carries its exact label and value (``fmt``) as a tooltip; a single series of up to 16 bars also writes each
    value (``axis_fmt``, default ``fmt``) above its bar, so small steps next to large ones still read.
    """
    axis_fmt = axis_fmt or fmt
    top = _value_top(series, labels)
    left, right, bottom, head = 64, 8, 34, 24 if len(series) > 1 else 16
    plot_w, plot_h = width - left - right, height - head - bottom
    body = [*_legend(series, width), *_value_grid(top, left, width - right, head, plot_h, axis_fmt)]
    value_labels = len(series) == 1 and len(labels) <= 16
    n = max(len(labels), 1)
    slot = plot_w / n
    gap = min(8.0, slot * 0.2)
    bar_w = (slot - gap) / max(len(series), 1)
    every = max(1, math.ceil(n / 16))
    for i, label in enumerate(labels):
        x0 = left + i * slot + gap / 2
        for j, s in enumerate(series):
            v = s.values[i]
            if v is None or v <= 0:
                continue
            h = plot_h * float(v) / top
            body.append(
                f'<rect x="{_num(x0 + j * bar_w)}" y="{_num(head + plot_h - h)}" width="{_num(max(bar_w - 1, 1))}" '
                f'height="{_num(h)}" fill="{escape(s.color)}"><title>{escape(label)} · {escape(s.name)}: '
                f"{escape(fmt(float(v)))}</title></rect>"
            )
            if value_labels:
                cx = x0 + j * bar_w + bar_w / 2
                body.append(_text(cx, head + plot_h - h - 4, axis_fmt(float(v)), size=10))
        if i % every == 0:
            body.append(
                _text(x0 + (slot - gap) / 2, height - bottom + 16, _short(label, max(4, int(slot * every / 7))))
            )
    body.append(f'<line x1="{left}" y1="{head + plot_h}" x2="{width - right}" y2="{head + plot_h}" stroke="{AXIS}"/>')
    return _svg(width, height, title, body)


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[Number],
    *,
    title: str,
    width: int = 640,
    fmt: Format = plain,
    color: str = PALETTE[0],
    negative_color: str = PALETTE[3],
    colors: Sequence[str] | None = None,
    intervals: Sequence[tuple[float, float] | None] | None = None,
    limit: float | None = None,
) -> Markup:
    """Horizontal bars, one row per label, with the value written at the end of each bar.

    With negative values the zero line moves inside the chart and bars go left (in ``negative_color``) or right:
    the chart of changes, where "down 40%" and "up 10%" must read as opposite directions. None and infinite
    values draw "no data". ``colors`` gives each bar its own colour (a status, say); ``intervals`` draws each
    bar's interval as a whisker; ``limit`` caps the axis at ±limit so one wide interval cannot squash the rest
    (what lies beyond is drawn to the edge; the written value stays exact).
    """
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    for name, extra in (("colors", colors), ("intervals", intervals)):
        if extra is not None and len(extra) != len(labels):
            raise ValueError(f"{len(extra)} {name} for {len(labels)} labels")
    values = [None if v is None or not math.isfinite(v) else v for v in values]
    whiskers = list(intervals) if intervals is not None else [None] * len(labels)
    row, label_w, value_w = 22, 230, 64
    height = max(row * len(labels) + 12, 30)
    known = [float(v) for v in values if v is not None]
    known += [float(e) for iv in whiskers if iv is not None for e in iv if math.isfinite(e)]
    low, high = min([*known, 0.0]), max([*known, 0.0])
    if limit is not None:
        low, high = max(low, -limit), min(high, limit)
    span = (high - low) or 1.0
    plot_w = width - label_w - 2 * value_w

    def x_of(v: float) -> float:
        return label_w + value_w + plot_w * (min(max(v, low), high) - low) / span

    zero = x_of(0.0)
    body: list[str] = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = 6 + i * row
        body.append(_text(label_w - 6, y + 14, _short(label, 34), anchor="end"))
        if v is None:
            body.append(_text(zero + 4, y + 14, "no data", anchor="start", size=10, color=AXIS))
            continue
        end_x = x_of(float(v))
        x, w = min(zero, end_x), abs(end_x - zero)
        fill = colors[i] if colors is not None else (color if v >= 0 else negative_color)
        body.append(
            f'<rect x="{_num(x)}" y="{y + 3}" width="{_num(max(w, 0.5))}" height="{row - 8}" fill="{escape(fill)}">'
            f"<title>{escape(label)}: {escape(fmt(float(v)))}</title></rect>"
        )
        left, right = x, x + w
        iv = whiskers[i]
        if iv is not None:
            lo, hi = x_of(iv[0]), x_of(iv[1])
            mid = y + 3 + (row - 8) / 2
            body.append(f'<line x1="{_num(lo)}" y1="{_num(mid)}" x2="{_num(hi)}" y2="{_num(mid)}" stroke="{TEXT}"/>')
            left, right = min(left, lo), max(right, hi)
        end, anchor = (right + 4, "start") if v >= 0 else (left - 4, "end")
        body.append(_text(end, y + 14, fmt(float(v)), anchor=anchor, size=10))
    body.append(f'<line x1="{_num(zero)}" y1="2" x2="{_num(zero)}" y2="{height - 4}" stroke="{AXIS}"/>')
    return _svg(width, height, title, body)


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 640,
    height: int = 220,
    fmt: Format = plain,
    axis_fmt: Format | None = None,
) -> Markup:
    """Lines over evenly spaced labels from zero to a rounded maximum; a None value breaks the line.

    Each point carries its exact value (``fmt``) as a tooltip; the axis is labelled with ``axis_fmt``.
    """
    axis_fmt = axis_fmt or fmt
    top = _value_top(series, labels)
    left, right, bottom, head = 64, 28, 34, 24 if len(series) > 1 else 10
    plot_w, plot_h = width - left - right, height - head - bottom
    body = [*_legend(series, width), *_value_grid(top, left, width - right, head, plot_h, axis_fmt)]
    n = len(labels)
    step = plot_w / (n - 1) if n > 1 else 0.0

    def x_of(i: int) -> float:
        return left + (i * step if n > 1 else plot_w / 2)

    for s in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
                continue
            runs[-1].append((x_of(i), head + plot_h * (1 - float(v) / top)))
            body.append(
                f'<circle cx="{_num(x_of(i))}" cy="{_num(runs[-1][-1][1])}" r="2.5" fill="{escape(s.color)}">'
                f"<title>{escape(labels[i])} · {escape(s.name)}: {escape(fmt(float(v)))}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{_num(x)},{_num(y)}" for x, y in run)
                body.append(f'<polyline points="{points}" fill="none" stroke="{escape(s.color)}" stroke-width="2"/>')
    every = max(1, math.ceil(n / 12))
    for i, label in enumerate(labels):
        if i % every == 0:
            body.append(_text(x_of(i), height - bottom + 16, _short(label, 10)))
    body.append(f'<line x1="{left}" y1="{head + plot_h}" x2="{width - right}" y2="{head + plot_h}" stroke="{AXIS}"/>')
    return _svg(width, height, title, body)


def heat_color(value: float | None, high: float = 1.0) -> str:
    """A background from white (0) to deep blue (``high`` or more) for a heat table cell; grey for no value."""
    if value is None or high <= 0:
        return "#f1f5f9"
    t = max(0.0, min(1.0, value / high))
    r, g, b = (round(255 + (c - 255) * t) for c in (37, 99, 235))
    return f"#{r:02x}{g:02x}{b:02x}"


def heat_text_color(value: float | None, high: float = 1.0) -> str:
    """Dark text on light cells, white on dark ones (readable when printed in black and white too)."""
    return "#ffffff" if value is not None and high > 0 and value / high > 0.55 else "#0f172a"
