"""The dashboard's charts (plotly): the FK graph in load order, rows per table, runs over time."""
from __future__ import annotations

from collections.abc import Sequence

from ..model import Plan

GREEN, BLUE, RED, ORANGE, TEAL = "#2e7d32", "#1565c0", "#c62828", "#ef6c00", "#00838f"


def show(out, fig) -> None:
    """Draw ``fig`` in the ipywidgets Output ``out``, replacing what was there."""
    out.clear_output(wait=True)
    with out:
        fig.show(renderer="plotly_mimetype", config={"displaylogo": False, "responsive": True})


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


def fk_graph(plan: Plan, rows: dict[str, int] | None = None):
    """The FK graph as a picture: one column per load-order level, arrows child → parent."""
    import plotly.graph_objects as go

    level = load_levels(plan)
    by_level: dict[int, list[str]] = {}
    for t in plan.order:
        by_level.setdefault(level[t], []).append(t)
    pos = {}
    for lv, names in by_level.items():
        for i, t in enumerate(names):
            pos[t] = (lv, -(i - (len(names) - 1) / 2))
    fig = go.Figure()
    for t, spec in plan.specs.items():
        for fk in spec.foreign_keys:
            if fk.ref_table not in pos:
                continue
            (x0, y0), (x1, y1) = pos[t], pos[fk.ref_table]
            if t == fk.ref_table:
                fig.add_annotation(x=x0, y=y0 + 0.12, text="↻ " + ",".join(fk.columns), showarrow=False, font=dict(size=10, color=TEAL))
                continue
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                               arrowhead=3, arrowsize=1.2, arrowwidth=1.5, arrowcolor=TEAL, standoff=28, startstandoff=28)
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2 + 0.08, text=",".join(fk.columns), showarrow=False,
                               font=dict(size=10, color="#455a64"))
    names = list(pos)
    labels = [f"<b>{t}</b><br>{rows[t]:,} rows" if rows and t in rows else f"<b>{t}</b>" for t in names]
    fig.add_scatter(x=[pos[t][0] for t in names], y=[pos[t][1] for t in names], mode="markers+text", text=labels,
                    textposition="bottom center", marker=dict(size=34, color=[pos[t][0] for t in names], colorscale="Teal",
                                                              line=dict(width=1, color="#263238")),
                    hovertext=[f"{t}: load level {level[t]}" for t in names], hoverinfo="text", showlegend=False)
    top = max(by_level) if by_level else 0
    widest = max((len(v) for v in by_level.values()), default=1)
    fig.update_layout(title="Foreign keys in load order (left loads first; arrow = child → parent)", height=340,
                      margin=dict(l=20, r=20, t=50, b=30), plot_bgcolor="white",
                      xaxis=dict(tickmode="array", tickvals=list(range(top + 1)), ticktext=[f"level {i}" for i in range(top + 1)],
                                 range=[-0.5, top + 0.5], showgrid=False, zeroline=False),
                      yaxis=dict(visible=False, range=[-widest / 2 - 0.6, widest / 2 + 0.4]))
    return fig


def rows_per_table(order: Sequence[str], rows: dict[str, int]):
    import plotly.graph_objects as go

    bar = go.Figure(go.Bar(x=list(order), y=[rows[t] for t in order], marker_color=TEAL,
                           text=[f"{rows[t]:,}" for t in order], textposition="auto"))
    bar.update_layout(title="Rows per table (lake)", height=300, margin=dict(l=50, r=20, t=50, b=40), yaxis_title="rows")
    return bar


def runs_chart(runs: Sequence[dict]):
    """Rows moved (stacked) and seconds per run, oldest first."""
    import plotly.graph_objects as go

    seq = list(reversed(runs))
    x = [f"{r['finished'] or r['started']:%m-%d %H:%M:%S}" for r in seq]
    fig = go.Figure()
    for label, color in (("inserted", GREEN), ("updated", BLUE), ("deleted", RED)):
        fig.add_bar(name=label, x=x, y=[r[label] for r in seq], marker_color=color)
    fig.add_scatter(name="seconds", x=x, y=[r["seconds"] for r in seq], yaxis="y2", mode="lines+markers", line_color=ORANGE)
    fig.update_layout(barmode="stack", title="Runs: rows moved and duration", height=300, margin=dict(l=50, r=50, t=50, b=40),
                      yaxis=dict(title="rows"), yaxis2=dict(title="seconds", overlaying="y", side="right", rangemode="tozero", showgrid=False),
                      legend_orientation="h")
    return fig
