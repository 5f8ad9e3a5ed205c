"""Charts as SVG text, written by code: no plotting library to install.

matplotlib is not a dependency of asyncfc (and cannot be installed on a
machine without network); two chart kinds are all the benchmarks need, and
SVG is text that diffs in review and renders in any browser or on GitHub.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle", weight: str = "normal",
          color: str = "#222", rotate: float | None = None) -> str:
    transform = f' transform="rotate({rotate:g} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{color}"{transform}>{escape(text)}</text>')


def diverging(value: float, low: float, high: float, pivot: float = 1.0) -> str:
    """Red below ``pivot``, white at it, green above; saturated at ``low``/``high``."""
    if value >= pivot:
        t = min(1.0, (value - pivot) / max(high - pivot, 1e-9))
        r, g, b = (255 - int(t * 200), 255 - int(t * 80), 255 - int(t * 200))
    else:
        t = min(1.0, (pivot - value) / max(pivot - low, 1e-9))
        r, g, b = (255 - int(t * 30), 255 - int(t * 190), 255 - int(t * 190))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(x0: float, y0: float, cell_w: float, cell_h: float, rows: list[str], cols: list[str],
            values: list[list[float]], title: str, xlabel: str, ylabel: str, low: float, high: float) -> list[str]:
    """A grid of coloured cells with their values; rows top to bottom."""
    out = [_text(x0 + cell_w * len(cols) / 2, y0 - 28, title, 14, weight="bold")]
    for i, row in enumerate(rows):
        y = y0 + i * cell_h
        out.append(_text(x0 - 8, y + cell_h / 2 + 4, row, 11, anchor="end"))
        for j, _col in enumerate(cols):
            v = values[i][j]
            x = x0 + j * cell_w
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell_w:.1f}" height="{cell_h:.1f}" '
                       f'fill="{diverging(v, low, high)}" stroke="#fff" stroke-width="1"/>')
            out.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, f"{v:.2f}", 11,
                             weight="bold" if v >= 1.0 else "normal"))
    for j, col in enumerate(cols):
        out.append(_text(x0 + j * cell_w + cell_w / 2, y0 - 8, col, 11))
    out.append(_text(x0 + cell_w * len(cols) / 2, y0 + cell_h * len(rows) + 18, xlabel, 12))
    out.append(_text(x0 - 62, y0 + cell_h * len(rows) / 2, ylabel, 12, rotate=-90))
    return out


def line_chart(x0: float, y0: float, width: float, height: float, series: list[tuple[str, str, list[tuple[float, float]]]],
               title: str, xlabel: str, ylabel: str, y_max: float, hline: tuple[float, str] | None = None) -> list[str]:
    """Lines over a log10 x axis. ``series``: (label, colour, [(x, y), ...])."""
    xs = [x for _, _, pts in series for x, _ in pts]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return x0 + (math.log10(x) - lo) / span * width

    def py(y: float) -> float:
        return y0 + height - min(y, y_max) / y_max * height

    out = [_text(x0 + width / 2, y0 - 14, title, 14, weight="bold"),
           f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="#fafafa" stroke="#999"/>']
    for k in range(6):
        y = y_max * k / 5
        out.append(f'<line x1="{x0}" y1="{py(y):.1f}" x2="{x0 + width}" y2="{py(y):.1f}" stroke="#e4e4e4"/>')
        out.append(_text(x0 - 6, py(y) + 4, f"{y:.2g}", 11, anchor="end"))
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        x = 10 ** decade
        if min(xs) <= x <= max(xs):
            out.append(f'<line x1="{px(x):.1f}" y1="{y0}" x2="{px(x):.1f}" y2="{y0 + height}" stroke="#e4e4e4"/>')
            out.append(_text(px(x), y0 + height + 16, f"{x:g}", 11))
    if hline is not None:
        value, label = hline
        out.append(f'<line x1="{x0}" y1="{py(value):.1f}" x2="{x0 + width}" y2="{py(value):.1f}" '
                   'stroke="#c0392b" stroke-dasharray="6 4"/>')
        out.append(_text(x0 + width - 4, py(value) - 6, label, 11, anchor="end", color="#c0392b"))
    for n, (label, colour, pts) in enumerate(series):
        path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(pts))
        out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts]
        ly = y0 + 16 + n * 16
        out.append(f'<line x1="{x0 + 10}" y1="{ly - 4}" x2="{x0 + 30}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(_text(x0 + 36, ly, label, 11, anchor="start"))
    out.append(_text(x0 + width / 2, y0 + height + 34, xlabel, 12))
    out.append(_text(x0 - 44, y0 + height / 2, ylabel, 12, rotate=-90))
    return out


def document(width: int, height: int, parts: list[str], caption: list[str]) -> str:
    """A standalone SVG with a white background and caption lines at the bottom."""
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>', *parts]
    for i, text in enumerate(caption):
        lines.append(_text(16, height - 14 - 16 * (len(caption) - 1 - i), text, 11, anchor="start", color="#555"))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
