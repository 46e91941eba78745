"""Charts as inline SVG strings, drawn on the server: pure functions, no network, no script.

Every chart carries `role="img"` and an `aria-label` that says in words what it shows, and
each bar a `<title>` the browser shows on hover. Colours are presentation attributes rather
than inline styles, so the page's Content-Security-Policy needs no `unsafe-inline`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

BAR_COLOUR = "#1d4ed8"
LINE_COLOUR = "#1d4ed8"
AXIS_COLOUR = "#4b5563"
MARKER_COLOUR = "#b45309"
TEXT_COLOUR = "#1f2937"


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its value, a short axis label and the words shown on hover."""

    value: int
    label: str
    title: str


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical mark at bar `index` (e.g. a permission change), with words shown on hover."""

    index: int
    title: str


def _number(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def scale(values: Sequence[int], height: float) -> list[float]:
    """Heights of `values` scaled so the largest fills `height`; all zeros stay at 0."""
    top = max(values, default=0)
    if top <= 0:
        return [0.0 for _ in values]
    return [height * max(value, 0) / top for value in values]


def sparkline(values: Sequence[int], label: str, width: int = 120, height: int = 28) -> str:
    """A small line of `values`, oldest first, for a table cell."""
    pad = 2.0
    inner_h = height - 2 * pad
    heights = scale(values, inner_h)
    count = len(values)
    step = (width - 2 * pad) / (count - 1) if count > 1 else 0.0
    # One decimal is finer than a pixel; plain formatting keeps a 1,000-row list cheap.
    points = " ".join(f"{pad + i * step:.1f},{height - pad - h:.1f}" for i, h in enumerate(heights))
    line = (
        f'<polyline fill="none" stroke="{LINE_COLOUR}" stroke-width="1.5" '
        f'stroke-linejoin="round" points="{points}"/>'
        if count > 1
        else ""
    )
    return (
        f'<svg class="sparkline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">{line}</svg>'
    )


def bar_chart(
    bars: Sequence[Bar],
    label: str,
    *,
    markers: Sequence[Marker] = (),
    width: int = 720,
    height: int = 180,
) -> str:
    """Vertical bars with the largest value on the axis, first and last labels under it."""
    left, bottom, top_pad = 48.0, 22.0, 8.0
    plot_w, plot_h = width - left - 4.0, height - bottom - top_pad
    heights = scale([bar.value for bar in bars], plot_h)
    slot = plot_w / len(bars) if bars else plot_w
    gap = min(2.0, slot * 0.2)
    base_y = top_pad + plot_h
    parts = [_axes(left, top_pad, plot_w, plot_h, max((b.value for b in bars), default=0))]
    for index, (bar, bar_h) in enumerate(zip(bars, heights, strict=True)):
        x = left + index * slot + gap / 2
        # A zero still gets a hairline, so a day without calls is visibly a day.
        shown_h = max(bar_h, 1.0)
        parts.append(
            f'<rect x="{_number(x)}" y="{_number(base_y - shown_h)}" '
            f'width="{_number(max(slot - gap, 0.5))}" height="{_number(shown_h)}" '
            f'fill="{BAR_COLOUR}"><title>{escape(bar.title)}</title></rect>'
        )
    for marker in markers:
        if not 0 <= marker.index < len(bars):
            continue
        x = left + (marker.index + 0.5) * slot
        parts.append(
            f'<g class="marker"><line x1="{_number(x)}" y1="{_number(top_pad)}" '
            f'x2="{_number(x)}" y2="{_number(base_y)}" stroke="{MARKER_COLOUR}" '
            f'stroke-width="2" stroke-dasharray="4 3"/>'
            f'<circle cx="{_number(x)}" cy="{_number(top_pad + 3)}" r="4" '
            f'fill="{MARKER_COLOUR}"><title>{escape(marker.title)}</title></circle></g>'
        )
    if bars:
        parts.append(_text(left, height - 6, bars[0].label, "start"))
        parts.append(_text(left + plot_w, height - 6, bars[-1].label, "end"))
    return _svg(width, height, label, "".join(parts))


def line_chart(
    values: Sequence[int],
    label: str,
    *,
    first_label: str,
    last_label: str,
    width: int = 720,
    height: int = 160,
) -> str:
    """A filled line for dense series (a day of minutes), drawn as one path."""
    left, bottom, top_pad = 48.0, 22.0, 8.0
    plot_w, plot_h = width - left - 4.0, height - bottom - top_pad
    heights = scale(values, plot_h)
    base_y = top_pad + plot_h
    step = plot_w / (len(values) - 1) if len(values) > 1 else 0.0
    parts = [_axes(left, top_pad, plot_w, plot_h, max(values, default=0))]
    if values:
        coords = [
            f"{_number(left + i * step)},{_number(base_y - h)}" for i, h in enumerate(heights)
        ]
        area = f"M{_number(left)},{_number(base_y)} L" + " L".join(coords)
        area += f" L{_number(left + step * (len(values) - 1))},{_number(base_y)} Z"
        parts.append(f'<path d="{area}" fill="#bfdbfe" stroke="none"/>')
        parts.append(
            f'<polyline fill="none" stroke="{LINE_COLOUR}" stroke-width="1" '
            f'points="{" ".join(coords)}"/>'
        )
    parts.append(_text(left, height - 6, first_label, "start"))
    parts.append(_text(left + plot_w, height - 6, last_label, "end"))
    return _svg(width, height, label, "".join(parts))


def _axes(left: float, top: float, plot_w: float, plot_h: float, top_value: int) -> str:
    base_y = top + plot_h
    return (
        f'<line x1="{_number(left)}" y1="{_number(base_y)}" x2="{_number(left + plot_w)}" '
        f'y2="{_number(base_y)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>'
        + _text(left - 6, top + 10, f"{top_value:,}", "end")
        + _text(left - 6, base_y, "0", "end")
    )


def _text(x: float, y: float, words: str, anchor: str) -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" font-size="11" fill="{TEXT_COLOUR}" '
        f'text-anchor="{anchor}">{escape(words)}</text>'
    )


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{escape(label)}">{body}</svg>'
    )
