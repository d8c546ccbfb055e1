"""The dashboard's charts, drawn as inline SVG (:mod:`.svg`): rows per table, the FK graph in load order,
rows per table of a sync or plan, runs over time.

Why not plotly or matplotlib: plotly's first figure cost ~7 s of imports on a cold kernel and needs its
JavaScript bundle in the page; matplotlib (Agg → SVG) costs ~0.45 s to import and ~0.05 s and ~20 KB a
chart.  These are plain strings: well under a millisecond and ~2–5 KB each, no JavaScript, nothing fetched,
and they shrink with their box (``width=100%``), so they fit a 1024-px window.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..model import Plan
from . import svg

GREEN, BLUE, RED, ORANGE, TEAL = "#2e7d32", "#1565c0", "#c62828", "#ef6c00", "#00838f"
WIDTH = 560


def load_levels(plan: Plan) -> dict[str, int]:
    """Each table's level in load order: 0 for tables with no parents, else 1 + its deepest parent."""
    level: dict[str, int] = {}
    for step in plan.steps:
        inside = set(step.tables)
        parents = {fk.ref_table for t in step.tables for fk in plan.specs[t].foreign_keys if fk.ref_table not in inside}
        lv = 1 + max((level[p] for p in parents if p in level), default=-1)
        for t in step.tables:
            level[t] = lv
    return level


Series = tuple[str, str, Sequence[float]]   # (label, colour, one value per category)


def hbars(title: str, labels: Sequence[str], series: Sequence[Series], cls: str) -> str:
    """Horizontal bars, one row per label, the series stacked left to right; the total at the end of each row."""
    size, row, top = 11, 22, 24
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    label_w = min(160, max((svg.text_width(lb, size) for lb in labels), default=40) + 10)
    value_w = max(svg.text_width(f"{t:,.0f}", size) for t in totals or [0]) + 10
    plot_x, plot_w = label_w, WIDTH - label_w - value_w
    if len(series) > 1:
        top += 18
    axis = svg.ticks(max(totals, default=0))
    scale = plot_w / axis[-1]
    height = top + row * len(labels) + 18
    body = [svg.legend(0, top - 6, [(s[0], s[1]) for s in series])] if len(series) > 1 else []
    for v in axis:
        x = plot_x + v * scale
        body.append(svg.line(x, top - 2, x, top + row * len(labels)))
        body.append(svg.text(x, height - 4, svg.short(v), 10, "middle", svg.MUTED))
    for i, lb in enumerate(labels):
        y = top + i * row
        body.append(svg.text(label_w - 6, y + 15, svg.clip(lb, label_w - 8, size), size, "end"))
        x = plot_x
        for name, color, values in series:
            w = values[i] * scale
            if values[i]:
                body.append(svg.rect(x, y + 4, w, row - 8, color, f"{lb}: {values[i]:,.0f} {name}", "nw-bar"))
            x += w
        body.append(svg.text(x + 4, y + 15, f"{totals[i]:,.0f}", size, color=svg.MUTED))
    return svg.svg(WIDTH, height, "".join(body), title, cls)


def columns(title: str, categories: Sequence[str], series: Sequence[Series], cls: str, line: Series | None = None) -> str:
    """Vertical stacked columns, one per category (oldest left), and an optional line on a right-hand axis."""
    height, top, bottom, left, right = 250, 42, 22, 44, 44 if line else 8
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    n = max(len(categories), 1)
    totals = [sum(s[2][i] for s in series) for i in range(len(categories))]
    axis = svg.ticks(max(totals, default=0))
    scale = plot_h / axis[-1]
    slot = plot_w / n
    body = [svg.legend(0, top - 14, [(s[0], s[1]) for s in series] + ([(line[0], line[1])] if line else []))]
    for v in axis:
        y = top + plot_h - v * scale
        body.append(svg.line(left, y, left + plot_w, y))
        body.append(svg.text(left - 4, y + 4, svg.short(v), 10, "end", svg.MUTED))
    every = max(1, int(n / max(1, plot_w // 80)))
    for i, cat in enumerate(categories):
        x, y = left + i * slot + slot * 0.15, top + plot_h
        for name, color, values in series:
            h = values[i] * scale
            if values[i]:
                body.append(svg.rect(x, y - h, slot * 0.7, h, color, f"{cat}: {values[i]:,.0f} {name}", "nw-bar"))
            y -= h
        if i % every == 0:
            body.append(svg.text(left + (i + 0.5) * slot, height - 6, cat, 10, "middle", svg.MUTED))
    if line:
        name, color, values = line
        laxis = svg.ticks(max(values, default=0))
        lscale = plot_h / laxis[-1]
        for v in laxis:
            body.append(svg.text(left + plot_w + 4, top + plot_h - v * lscale + 4, svg.short(v), 10, color=color))
        pts = [(left + (i + 0.5) * slot, top + plot_h - v * lscale) for i, v in enumerate(values)]
        body.append(f"<polyline class='nw-line' fill='none' stroke='{color}' stroke-width='2' "
                    f"points='{' '.join(f'{x:.1f},{y:.1f}' for x, y in pts)}'/>")
        body += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'><title>{svg.esc(f'{c}: {v:,.3f} {name}')}</title></circle>"
                 for (x, y), c, v in zip(pts, categories, values)]
    return svg.svg(WIDTH, height, "".join(body), title, cls)


def fk_graph(plan: Plan, rows: dict[str, int] | None = None) -> str:
    """The FK graph as a picture: one column per load-order level (left loads first), an arrow child → parent."""
    level = load_levels(plan)
    by_level: dict[int, list[str]] = {}
    for t in plan.order:
        by_level.setdefault(level[t], []).append(t)
    levels = max(by_level, default=0) + 1
    tallest = max((len(v) for v in by_level.values()), default=1)
    box_w, box_h, gap_y, top = 128, 40, 22, 44
    width = max(WIDTH, levels * (box_w + 40))
    gap_x = (width - levels * box_w) / levels
    height = top + tallest * (box_h + gap_y) + 10
    pos = {}
    for lv, names in by_level.items():
        x = gap_x / 2 + lv * (box_w + gap_x)
        y0 = top + (tallest - len(names)) * (box_h + gap_y) / 2
        for i, t in enumerate(names):
            pos[t] = (x, y0 + i * (box_h + gap_y))
    body = [svg.text(pos[names[0]][0] + box_w / 2, top - 8, f"level {lv}", 10, "middle", svg.MUTED)
            for lv, names in sorted(by_level.items())]
    for t, spec in plan.specs.items():
        for fk in spec.foreign_keys:
            if t not in pos or fk.ref_table not in pos:
                continue
            (cx, cy), (px, py) = pos[t], pos[fk.ref_table]
            if t == fk.ref_table:
                body.append(svg.text(cx + box_w - 4, cy - 3, "↻ " + ",".join(fk.columns), 10, "end", TEAL, cls="nw-self-fk"))
                continue
            if px < cx:      # the parent loads earlier: from the child's left edge to the parent's right edge
                x1, y1, x2, y2 = cx, cy + box_h / 2, px + box_w, py + box_h / 2
            else:            # same level (a cycle loaded in one step): edge to edge vertically
                down = py > cy
                dx = box_w / 2 + (-12 if down else 12)      # a two-way cycle's arrows side by side
                x1, y1 = cx + dx, cy + (box_h if down else 0)
                x2, y2 = px + dx, py + (0 if down else box_h)
            body.append(svg.arrow(x1, y1, x2, y2, TEAL, "nw-fk"))
            body.append(svg.text((x1 + x2) / 2, (y1 + y2) / 2 - 4, ",".join(fk.columns), 9, "middle", svg.MUTED))
    for t, (x, y) in pos.items():
        body.append(svg.rect(x, y, box_w, box_h, "#e0f2f1", f"{t}: load level {level[t]}", "nw-node", rx=5))
        body.append(svg.text(x + box_w / 2, y + 16, svg.clip(t, box_w - 8, 11), 11, "middle", weight="600"))
        if rows and t in rows:
            body.append(svg.text(x + box_w / 2, y + 31, f"{rows[t]:,} rows", 10, "middle", svg.MUTED))
    return svg.svg(width, height, "".join(body), "Foreign keys in load order (left loads first; arrow = child → parent)", "nw-fk-graph")


def rows_per_table(order: Sequence[str], rows: dict[str, int]) -> str:
    return hbars("Rows per table in the lake", list(order), [("rows", TEAL, [rows[t] for t in order])], "nw-rows-chart")


def runs_chart(runs: Sequence[dict]) -> str:
    """Rows moved (stacked) and seconds per run, oldest first."""
    seq = list(reversed(runs))
    cats = [f"{r['finished'] or r['started']:%m-%d %H:%M}" for r in seq]
    series = [(label, color, [r[label] for r in seq]) for label, color in (("inserted", GREEN), ("updated", BLUE), ("deleted", RED))]
    seconds = ("seconds", ORANGE, [r["seconds"] or 0.0 for r in seq])
    return columns("Runs: rows moved and duration", cats, series, "nw-runs-chart", line=seconds)


def change_labels(dry_run: bool) -> tuple[str, str, str]:
    """What a report's three counts are called: rows a plan would move, or rows a run moved."""
    return ("to insert", "to update", "to delete") if dry_run else ("inserted", "updated", "deleted")


def report_chart(tables: Sequence, dry_run: bool) -> str:
    """Rows per table of a sync report (``TableReport``s), stacked by kind of change."""
    labels = change_labels(dry_run)
    series = [(label, color, [getattr(t, attr) for t in tables])
              for label, color, attr in zip(labels, (GREEN, BLUE, RED), ("inserted", "updated", "deleted"))]
    title = "Rows per table the plan would move" if dry_run else "Rows per table this run moved"
    return hbars(title, [t.table for t in tables], series, "nw-report-chart")
