"""Hand-written SVG: the few shapes the dashboard's charts are made of.

A chart is one ``<svg>`` element with a ``viewBox`` and ``width="100%"``: it
scales to the box it is put in (never wider), needs no JavaScript and fetches
nothing.  Coordinates are in viewBox units; text is real text (selectable,
searchable, crisp at any zoom).  Widths of text are estimated from the font
size, which is all the layout needs.
"""
from __future__ import annotations

import html
import math

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"
INK, MUTED, GRID = "#263238", "#607d8b", "#eceff1"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def text_width(text: str, size: float = 11) -> float:
    """About how wide ``text`` is drawn at ``size`` (a proportional font averages ~0.58 em a character)."""
    return len(text) * size * 0.58


def clip(text: str, width: float, size: float = 11) -> str:
    """``text`` shortened with … to fit ``width``."""
    fits = max(1, int(width / (size * 0.58)))
    return text if len(text) <= fits else text[: max(1, fits - 1)] + "…"


def short(n: float) -> str:
    """A compact axis number: 950, 12k, 3.4M."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``top`` (0, 1, 2, 5 × 10ⁿ steps)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def text(x: float, y: float, s: str, size: float = 11, anchor: str = "start", color: str = INK, weight: str = "normal",
         cls: str = "") -> str:
    c = f" class='{cls}'" if cls else ""
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{color}'"
            f"{' font-weight=' + repr(weight) if weight != 'normal' else ''}{c}>{esc(s)}</text>")


def rect(x: float, y: float, w: float, h: float, color: str, tip: str = "", cls: str = "", rx: float = 0) -> str:
    c = f" class='{cls}'" if cls else ""
    r = f" rx='{rx}'" if rx else ""
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return f"<rect x='{x:.1f}' y='{y:.1f}' width='{max(w, 0):.1f}' height='{max(h, 0):.1f}' fill='{color}'{r}{c}>{title}</rect>"


def line(x1: float, y1: float, x2: float, y2: float, color: str = GRID, width: float = 1, cls: str = "") -> str:
    c = f" class='{cls}'" if cls else ""
    return f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' stroke='{color}' stroke-width='{width}'{c}/>"


def arrow(x1: float, y1: float, x2: float, y2: float, color: str, cls: str = "", head: float = 8) -> str:
    """A line from (x1, y1) to (x2, y2) with its head drawn as a triangle (no <marker>, whose ids clash across charts)."""
    angle = math.atan2(y2 - y1, x2 - x1)
    bx, by = x2 - head * math.cos(angle), y2 - head * math.sin(angle)
    left = (bx + head / 2 * math.sin(angle), by - head / 2 * math.cos(angle))
    right = (bx - head / 2 * math.sin(angle), by + head / 2 * math.cos(angle))
    c = f" class='{cls}'" if cls else ""
    return (f"<g{c}>{line(x1, y1, bx, by, color, 1.5)}"
            f"<polygon points='{x2:.1f},{y2:.1f} {left[0]:.1f},{left[1]:.1f} {right[0]:.1f},{right[1]:.1f}' fill='{color}'/></g>")


def legend(x: float, y: float, items: list[tuple[str, str]], size: float = 11) -> str:
    out = []
    for label, color in items:
        out.append(rect(x, y - size + 2, size - 2, size - 2, color) + text(x + size + 2, y, label, size, color=MUTED))
        x += size + 12 + text_width(label, size)
    return "".join(out)


def svg(width: float, height: float, body: str, title: str, cls: str) -> str:
    """The chart: as wide as its box up to ``width`` px, height following; ``title`` is read by screen readers."""
    return (f"<svg class='nw-chart {cls}' viewBox='0 0 {width:.0f} {height:.0f}' width='100%' role='img' aria-label='{esc(title)}' "
            f"preserveAspectRatio='xMinYMin meet' style='max-width:{width:.0f}px;height:auto;display:block;{FONT}'>"
            f"<title>{esc(title)}</title>{text(0, 14, title, 13, weight='600')}{body}</svg>")
