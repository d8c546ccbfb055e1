"""Sync tab: a dry-run plan, a run with a live progress bar, the report, freshness, the run history.

A plan says what a sync *would* do (rows to insert / to update / to delete); a
run says what it did.  The banner, the progress bar's last line and the report
count rows moved the same way (:func:`moved`), so they agree.
"""
from __future__ import annotations

import html
import time
from datetime import datetime
from typing import TYPE_CHECKING

from .. import engine
from ..ledger import runs_from_history
from ..model import SyncReport
from . import charts
from .html import duration, error_html, heading, html_table, note_html, ok_html, scroll, wide

if TYPE_CHECKING:
    from .app import Dashboard


def moved(report: SyncReport) -> int:
    """Rows inserted + updated + deleted over the report's tables (for a plan: rows it would move)."""
    return sum(t.moved for t in report.tables)


def report_table(report: SyncReport) -> str:
    """One row per table: what moved (or would), how long it took, the watermarks, and the error or notes."""
    counts = list(charts.change_labels(report.dry_run))
    head = ["table", "mode", "status", *counts, *([] if report.dry_run else ["seconds"]), "watermark before", "watermark after",
            "error / notes"]
    rows = [[t.table, t.mode, t.status, t.inserted, t.updated, t.deleted, *([] if report.dry_run else [round(t.seconds, 3)]),
             t.watermark_before.value or "—", t.watermark_after.value or "—", t.error or "; ".join(t.notes) or ""]
            for t in report.tables]
    return html_table(head, rows, "nw-report")


def nothing_moved(report: SyncReport) -> str:
    """The sentence shown instead of an empty chart when a plan or a run has no rows."""
    n = len(report.tables)
    if not report.ok:
        return f"No rows {'would move' if report.dry_run else 'moved'}: see the error above."
    if report.dry_run:
        return (f"Nothing to move: the plan has no row to insert, update or delete in its {n} table(s) — "
                "the destination already matches the lake.")
    return f"Nothing moved: the destination already matched the lake in all {n} table(s)."


class SyncTab:
    name = "sync"
    shows_destination = True

    def __init__(self, app: Dashboard):
        self.app = app
        w = app.w
        auto = w.Layout(width="auto")
        self.box = w.VBox()
        self.tables = w.SelectMultiple(description="tables", rows=5, layout=w.Layout(width="280px"))
        self.full = w.Checkbox(description="full refresh", value=False, indent=False, layout=auto)
        self.plan = w.Button(description="Dry-run plan", tooltip="work out what a sync would move, without writing", layout=auto)
        self.run = w.Button(description="Run sync", button_style="primary", layout=auto)
        self.ping = w.Button(description="Measure latency", tooltip="one round trip to the destination", layout=auto)
        self.bar = w.IntProgress(value=0, min=0, max=1, description="progress", bar_style="info",
                                 layout=w.Layout(width="420px", max_width="100%"))
        self.label = w.HTML()
        self.latency = w.HTML()
        self.msg = w.HTML()
        self.report = w.HTML()
        self.report_chart = wide(w.HTML())
        self.fresh = w.HTML()
        self.history = w.HTML()
        self.chart = wide(w.HTML())
        self._sink: WidgetProgress | None = None     # the progress of the run under way (rows sent)
        self.plan.on_click(lambda b: self.start(dry_run=True))
        self.run.on_click(lambda b: self.start(dry_run=False))
        self.ping.on_click(lambda b: self.measure())

    def render(self) -> None:
        w = self.app.w
        wrap = w.Layout(flex_flow="row wrap", align_items="center")
        self.box.children = (
            w.HBox([self.latency, self.ping], layout=wrap),
            w.HBox([self.tables, w.VBox([self.full, w.HBox([self.plan, self.run])])], layout=wrap),
            w.HBox([self.bar, self.label], layout=wrap),
            self.msg, self.report, self.report_chart,
            w.HTML(heading("Freshness (source max of the incremental column vs the destination's watermark)")),
            self.fresh,
            w.HTML(heading("History (controle_cargas)")), self.history, self.chart)
        self.measure(from_status=True)
        self.show_tables()

    def measure(self, from_status: bool = False) -> None:
        app = self.app
        if from_status and app.status_pending:
            self.latency.value = note_html(f"reading the destination ({app.settings.destination_type}) …")
            return
        if from_status and app.status is not None:
            ms = app.status.latency_ms
        else:
            ms = app.guard(self.latency, app.ping_ms)
            if ms is None:
                return
        if ms is None:
            self.latency.value = error_html(f"destination: {app.status_error}")
            return
        running = app.status.running if app.status is not None else None
        self.latency.value = (f"<div class='nw-latency'>Round-trip to {html.escape(app.dest_name())}: "
                              f"<b>{ms:.2f} ms</b> (measured {datetime.now():%H:%M:%S})"
                              + (f"<br>{html.escape(app.settings.redact(running))}" if running else "") + "</div>")

    def show_tables(self) -> None:
        app, st = self.app, self.app.status
        if st is None:
            self.fresh.value = (note_html("reading the destination …") if app.status_pending
                                else error_html(f"destination: {app.status_error}"))
            self.history.value = self.chart.value = ""
            return
        fresh = []
        for t in st.tables:
            if t.lag_seconds is not None:
                lag = "up to date" if t.lag_seconds == 0 else f"{duration(t.lag_seconds)} behind"
            else:
                lag = "never synced" if t.dest_rows is None else ("empty" if t.source_max is None else "—")
            fresh.append([t.table, t.source_max or "—", t.watermark or "—", lag, t.lake_rows, t.dest_rows if t.dest_rows is not None else "—"])
        self.fresh.value = scroll(html_table(["table", "source max", "watermark", "lag", "lake rows", "destination rows"], fresh, "nw-fresh"))
        runs = runs_from_history(st.history)
        shown = runs[:15]
        self.history.value = (
            f"<div style='color:#546e7a'>{len(runs)} run(s) in the last {len(st.history)} ledger rows "
            "(a run may write more than one row for a table; <i>tables</i> counts each table once)</div>"
            + scroll(html_table(["run", "finished", "tables", "inserted", "updated", "deleted", "seconds", "status"],
                                [[r["run_id"], r["finished"], r["tables"], r["inserted"], r["updated"], r["deleted"],
                                  round(r["seconds"], 3) if r["seconds"] is not None else "—", r["status"]] for r in shown], "nw-history")))
        self.chart.value = charts.runs_chart(shown) if shown else ""

    def start(self, dry_run: bool) -> None:
        app = self.app
        tables = list(self.tables.value) or None
        self.msg.value = self.report.value = self.report_chart.value = ""
        self.label.value = "&nbsp;working out the plan …" if dry_run else ""
        self.run.disabled = self.plan.disabled = True
        self._sink = None
        try:
            report = app.guard(self.msg, lambda: engine.sync(app.settings, tables, full_refresh=self.full.value,
                                                             dry_run=dry_run, show_progress=False, progress=self.progress))
        finally:
            self.run.disabled = self.plan.disabled = False
        if report is None:
            self.label.value = ""
            return
        self.show_report(report)
        if not dry_run:
            app.refresh_status()
            self.measure(from_status=True)
            self.show_tables()
            app.redraw_later()

    def show_report(self, report: SyncReport) -> None:
        redact = self.app.settings.redact
        total = moved(report)
        title = f"{'Plan (dry run)' if report.dry_run else 'Run'} {report.run_id}"
        if report.ok:
            self.msg.value = ok_html(f"{title}: {total:,} rows {'to move' if report.dry_run else 'moved'} across {len(report.tables)} table(s)")
        else:
            problems = [f"{t.table}: {t.error}" for t in report.failed] + ([f"ledger: {report.ledger_error}"] if report.ledger_error else [])
            self.msg.value = error_html(redact(f"{title}: " + "; ".join(problems)))
        self.report.value = scroll(report_table(report))
        self.report_chart.value = (charts.report_chart(report.tables, report.dry_run) if total
                                   else note_html(nothing_moved(report)))
        if report.dry_run:
            self.label.value = f"&nbsp;plan · {total:,} rows to move"
        else:
            self.bar.bar_style = "success" if report.ok else "danger"
            sink = self._sink
            sent = f" · {sink.done:,} rows sent" if sink is not None and sink.done != total else ""
            self.label.value = f"&nbsp;{'done' if report.ok else 'failed'} · {total:,} rows moved{sent}"

    def progress(self, total: int) -> engine.ProgressSink:
        self._sink = WidgetProgress(self.bar, self.label, total)
        return self._sink


class WidgetProgress(engine.ProgressSink):
    """The engine's progress (rows sent to the destination), shown in an ipywidgets IntProgress while the sync runs.

    Rows *sent* can differ from rows *moved* (a full refresh sends every row; only changed ones count as moved):
    the final line, written from the report by :meth:`SyncTab.show_report`, says rows moved like the banner."""

    def __init__(self, bar, label, total: int):
        super().__init__(total, enabled=False)
        self.bar, self.label, self.total, self.done = bar, label, max(total, 1), 0
        self.bar.max, self.bar.value, self.bar.bar_style = self.total, 0, "info"
        self.current = ""
        self._shown = 0.0

    def table(self, name: str) -> None:
        self.current = name
        self._update(force=True)

    def advance(self, table: str, rows: int) -> None:
        self.done += rows
        self._update()

    def _update(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._shown > 0.1:
            self._shown = now
            self.bar.value = min(self.done, self.total)
            self.label.value = f"&nbsp;{html.escape(self.current)} · {self.done:,} / {self.total:,} rows sent"

    def close(self) -> None:
        self.bar.value = self.total
        self.label.value = "&nbsp;finishing …"
