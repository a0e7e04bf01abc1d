"""Charts as inline SVG markup, drawn on the server: values in, markup out.

The report pages chart with no JavaScript and no front-end toolchain: a chart is one `<svg>` element that the page
holds inline, so it shows without scripts, prints as it shows, and is checked like any other string. Each chart
has a fixed viewBox (the page scales it to its width), a `<title>` and a `<desc>` that lists every value as text
for screen readers, a `<title>` on every bar for a pointer, and presentation attributes only (fill=, font-size=):
the pages' Content-Security-Policy refuses `<style>` elements, and no font is fetched (the system's sans-serif).

Every text that goes in (titles, labels, the figures shown) is XML-escaped here, so the markup can go into a page
as is. Bars are `<rect class="bar">` elements whose length is proportional to their value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
"""Every chart's viewBox width; the height follows from how many bars it has."""
ROW_HEIGHT, LABEL_WIDTH, BAR_AREA = 26, 210, 300
COLUMN_PLOT_HEIGHT, COLUMN_TOP, COLUMN_FOOT = 160, 24, 40
LEGEND_HEIGHT = 24
FONT = 'font-family="system-ui, sans-serif" font-size="13"'
TEXT_FILL = "#1d232a"
PALETTE = ("#1f4e8c", "#b3261e", "#2e7d4f", "#8a4b00", "#5b3f8c", "#4a4f55")
"""Bar colours: the first for single-series charts, in order for the series of a stacked chart."""
TRACK_FILL = "#eef1f4"
MAX_LABEL_CHARS = 30
NO_DATA = "Nothing to chart."


@dataclass(frozen=True)
class Bar:
    """One value: `label` names it, `shown` is the figure written beside the bar (the value itself when empty)."""

    label: str
    value: float
    shown: str = ""


@dataclass(frozen=True)
class StackedRow:
    """One row of a stacked chart: its parts, one per series, end to end."""

    label: str
    parts: tuple[float, ...]
    shown: str = ""


def bar_chart(title: str, bars: Sequence[Bar], *, maximum: float | None = None) -> str:
    """Horizontal bars, one row each, labelled on the left, the figure on the right. Lengths are proportional to
    the values, the longest (or `maximum`, e.g. 1 for shares) filling the bar area."""
    if not bars:
        return _empty(title)
    _check([bar.value for bar in bars])
    top = max(bar.value for bar in bars) if maximum is None else maximum
    rows = []
    for i, bar in enumerate(bars):
        y = i * ROW_HEIGHT
        length = _scaled(bar.value, top, BAR_AREA)
        rows.append(
            f'<text x="0" y="{y + 17}" {FONT} fill="{TEXT_FILL}">{_label(bar.label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{BAR_AREA}" height="{ROW_HEIGHT - 8}" fill="{TRACK_FILL}"/>'
            f'<rect class="bar" x="{LABEL_WIDTH}" y="{y + 4}" width="{length:.2f}" height="{ROW_HEIGHT - 8}" '
            f'fill="{PALETTE[0]}"><title>{escape(bar.label)}: {escape(_shown(bar))}</title></rect>'
            f'<text x="{LABEL_WIDTH + BAR_AREA + 8}" y="{y + 17}" {FONT} fill="{TEXT_FILL}">'
            f"{escape(_shown(bar))}</text>"
        )
    return _svg(title, _described(bars), len(bars) * ROW_HEIGHT, rows)


def column_chart(title: str, bars: Sequence[Bar]) -> str:
    """Vertical columns side by side (a histogram), the label under each and its figure above; heights are
    proportional to the values, the highest filling the plot."""
    if not bars:
        return _empty(title)
    _check([bar.value for bar in bars])
    top = max(bar.value for bar in bars)
    pitch = (WIDTH - 20) / len(bars)
    base = COLUMN_TOP + COLUMN_PLOT_HEIGHT
    columns = [f'<line x1="10" x2="{WIDTH - 10}" y1="{base}" y2="{base}" stroke="#5f6b76"/>']
    for i, bar in enumerate(bars):
        height = _scaled(bar.value, top, COLUMN_PLOT_HEIGHT)
        x, middle = 10 + i * pitch + pitch * 0.15, 10 + (i + 0.5) * pitch
        columns.append(
            f'<rect class="bar" x="{x:.2f}" y="{base - height:.2f}" width="{pitch * 0.7:.2f}" height="{height:.2f}" '
            f'fill="{PALETTE[0]}"><title>{escape(bar.label)}: {escape(_shown(bar))}</title></rect>'
            f'<text x="{middle:.2f}" y="{base - height - 6:.2f}" {FONT} text-anchor="middle" fill="{TEXT_FILL}">'
            f"{escape(_shown(bar))}</text>"
            f'<text x="{middle:.2f}" y="{base + 18}" {FONT} text-anchor="middle" fill="{TEXT_FILL}">'
            f"{_label(bar.label)}</text>"
        )
    return _svg(title, _described(bars), base + COLUMN_FOOT, columns)


def stacked_bar_chart(title: str, rows: Sequence[StackedRow], series: Sequence[str]) -> str:
    """Horizontal bars made of parts, one per series (named in a legend above), on a scale where the longest row
    fills the bar area: e.g. each reviewer's final outcomes and second reviews."""
    if len(series) > len(PALETTE):
        raise ValueError(f"a stacked chart has at most {len(PALETTE)} series; got {len(series)}")
    if any(len(row.parts) != len(series) for row in rows):
        raise ValueError(f"every row needs one part per series ({len(series)}: {', '.join(series)})")
    if not rows:
        return _empty(title)
    _check([part for row in rows for part in row.parts])
    top = max(sum(row.parts) for row in rows)
    legend = [
        f'<rect x="{LABEL_WIDTH + i * 150}" y="4" width="12" height="12" fill="{PALETTE[i]}"/>'
        f'<text x="{LABEL_WIDTH + i * 150 + 18}" y="15" {FONT} fill="{TEXT_FILL}">{_label(name)}</text>'
        for i, name in enumerate(series)
    ]
    drawn = []
    for i, row in enumerate(rows):
        y = LEGEND_HEIGHT + i * ROW_HEIGHT
        x = float(LABEL_WIDTH)
        parts = []
        for name, value, fill in zip(series, row.parts, PALETTE, strict=False):
            length = _scaled(value, top, BAR_AREA)
            parts.append(
                f'<rect class="bar" x="{x:.2f}" y="{y + 4}" width="{length:.2f}" height="{ROW_HEIGHT - 8}" '
                f'fill="{fill}"><title>{escape(row.label)}, {escape(name)}: {_number(value)}</title></rect>'
            )
            x += length
        shown = row.shown or _number(sum(row.parts))
        drawn.append(
            f'<text x="0" y="{y + 17}" {FONT} fill="{TEXT_FILL}">{_label(row.label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{BAR_AREA}" height="{ROW_HEIGHT - 8}" fill="{TRACK_FILL}"/>'
            + "".join(parts)
            + f'<text x="{LABEL_WIDTH + BAR_AREA + 8}" y="{y + 17}" {FONT} fill="{TEXT_FILL}">{escape(shown)}</text>'
        )
    described = "; ".join(
        f"{row.label}: " + ", ".join(f"{name} {_number(v)}" for name, v in zip(series, row.parts, strict=True))
        for row in rows
    )
    return _svg(title, described, LEGEND_HEIGHT + len(rows) * ROW_HEIGHT, legend + drawn)


def _svg(title: str, described: str, height: float, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height:g}" width="100%" '
        f'role="img"><title>{escape(title)}</title><desc>{escape(described)}</desc>' + "".join(body) + "</svg>"
    )


def _empty(title: str) -> str:
    """A chart with nothing to draw says so, at the size of one row."""
    nothing = f'<text x="0" y="17" {FONT} fill="{TEXT_FILL}">{NO_DATA}</text>'
    return _svg(title, NO_DATA, ROW_HEIGHT, [nothing])


def _described(bars: Sequence[Bar]) -> str:
    return "; ".join(f"{bar.label}: {_shown(bar)}" for bar in bars)


def _check(values: Sequence[float]) -> None:
    if any(value < 0 for value in values):
        raise ValueError(f"a chart draws values of 0 or more; got {min(values)}")


def _scaled(value: float, top: float, extent: float) -> float:
    return 0.0 if top <= 0 else min(value, top) / top * extent


def _shown(bar: Bar) -> str:
    return bar.shown or _number(bar.value)


def _number(value: float) -> str:
    return f"{value:g}"


def _label(text: str) -> str:
    """A label cut to what fits beside the bars (the bar's own <title> keeps it whole), escaped."""
    return escape(text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…")
