"""Charts for notebooks that survive being saved: static images drawn with matplotlib.

A :class:`Chart` displays as a PNG (``image/png``), which a saved notebook
keeps and every viewer shows: JupyterLab, nbconvert's HTML, GitHub.  The
figures are built without pyplot (no global state, no backend to choose) and
hold no interactive parts that would vanish once the kernel is gone.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

from .histogram import Histogram
from .model import FAILED, SyncReport

GREEN, BLUE, RED, TEAL, GREY = "#2e7d32", "#1565c0", "#c62828", "#00838f", "#546e7a"


class Chart:
    """A matplotlib figure that shows itself as a PNG in a notebook, and can be saved."""

    def __init__(self, figure):
        self.figure = figure

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()

    def save(self, path) -> None:
        self.figure.savefig(path, dpi=110, bbox_inches="tight")

    @property
    def title(self) -> str:
        return self.figure.axes[0].get_title(loc="left") if self.figure.axes else ""

    def _repr_png_(self):
        return self.png(), {"alt": self.title}     # the alternative text nbconvert and screen readers show

    def __repr__(self) -> str:
        return f"<chart: {self.title}>"


def _figure(width: float = 7.5, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _nothing(ax, title: str, sentence: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)
    ax.text(0.5, 0.5, sentence, ha="center", va="center", fontsize=11, color=GREY, transform=ax.transAxes)
    ax.set_axis_off()


def rows_moved(report: SyncReport, title: str | None = None) -> Chart:
    """A stacked bar per table: rows inserted / updated / deleted (planned ones for a dry run)."""
    fig, ax = _figure()
    planned = report.dry_run
    failed = [t.table for t in report.tables if t.status == FAILED]
    title = title or (f"rows {'planned' if planned else 'moved'} per table (run {report.run_id})"
                      + (f" — FAILED: {', '.join(failed)}" if failed else ""))
    if not report.tables or not any(t.inserted or t.updated or t.deleted for t in report.tables):
        _nothing(ax, title, "nothing to send: the destination already holds the lake's rows" if report.tables else "no table in this run")
        return Chart(fig)
    names = [t.table for t in report.tables]
    bottom = [0] * len(names)
    for attr, plan_label, color in (("inserted", "to insert", GREEN), ("updated", "to update", BLUE), ("deleted", "to delete", RED)):
        values = [getattr(t, attr) for t in report.tables]
        ax.bar(names, values, bottom=bottom, color=color, label=plan_label if planned else attr)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:,}", (x, total), ha="center", va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel("rows")
    ax.margins(y=0.12)
    ax.legend(frameon=False, ncols=3, loc="upper right", fontsize=9)
    ax.tick_params(axis="x", labelrotation=20 if len(names) > 5 else 0)
    return Chart(fig)


def bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str = "") -> Chart:
    """One bar per label."""
    fig, ax = _figure()
    labels = [str(x) for x in labels]
    if not labels:
        _nothing(ax, title, "no rows")
        return Chart(fig)
    ax.bar(labels, [float(v) for v in values], color=TEAL)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=45 if len(labels) > 8 else 0, labelsize=9)
    return Chart(fig)


def histogram(h: Histogram, title: str | None = None) -> Chart:
    """The bins of a :class:`~nwlib.histogram.Histogram`, with the count of NULLs in the title."""
    fig, ax = _figure()
    title = title or f"{h.table}.{h.column}: {sum(h.counts):,} values in {len(h.counts)} bins" + (f", {h.nulls:,} NULL" if h.nulls else "")
    if not h.counts:
        _nothing(ax, title, "every value is NULL" if h.nulls else "the table is empty")
        return Chart(fig)
    edges = h.edges if h.edges[0] != h.edges[-1] else (h.edges[0] - 0.5, h.edges[0] + 0.5)   # every value the same
    ax.stairs(h.counts, edges, fill=True, color=TEAL, alpha=0.85)
    ax.stairs(h.counts, edges, color="#004d40", linewidth=0.8)
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(h.column)
    ax.set_ylabel("rows")
    return Chart(fig)
