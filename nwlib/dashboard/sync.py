"""Sync tab: a dry-run plan, a run with a live progress bar, the report, freshness, the run history."""
from __future__ import annotations

import html
import time
from datetime import datetime
from typing import TYPE_CHECKING

from .. import engine, notebook
from ..ledger import runs_from_history
from ..model import SyncReport
from . import charts
from .html import duration, error_html, heading, html_table, ok_html

if TYPE_CHECKING:
    from .app import Dashboard


class SyncTab:
    name = "sync"

    def __init__(self, app: Dashboard):
        self.app = app
        w = app.w
        self.box = w.VBox()
        self.tables = w.SelectMultiple(description="tables", rows=5, layout=w.Layout(width="300px"))
        self.full = w.Checkbox(description="full refresh", value=False, indent=False)
        self.plan = w.Button(description="Dry-run plan", icon="list")
        self.run = w.Button(description="Run sync", button_style="primary", icon="play")
        self.ping = w.Button(description="Measure latency", icon="refresh")
        self.bar = w.IntProgress(value=0, min=0, max=1, description="progress", bar_style="info", layout=w.Layout(width="480px"))
        self.label = w.HTML()
        self.latency = w.HTML()
        self.msg = w.HTML()
        self.report = w.HTML()
        self.report_chart = w.Output()
        self.fresh = w.HTML()
        self.history = w.HTML()
        self.chart = w.Output()
        self.plan.on_click(lambda b: self.start(dry_run=True))
        self.run.on_click(lambda b: self.start(dry_run=False))
        self.ping.on_click(lambda b: self.measure())

    def render(self) -> None:
        w = self.app.w
        self.box.children = (
            w.HBox([self.latency, self.ping]),
            w.HBox([self.tables, w.VBox([self.full, w.HBox([self.plan, self.run]), w.HBox([self.bar, self.label])])]),
            self.msg, self.report, self.report_chart,
            w.HTML(heading("Freshness (source max of the incremental column vs the destination's watermark)")),
            self.fresh,
            w.HTML(heading("History (controle_cargas)")), self.history, self.chart)
        self.measure(from_status=True)
        self.show_tables()

    def measure(self, from_status: bool = False) -> None:
        app = self.app
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
        st = self.app.status
        if st is None:
            self.fresh.value = error_html(f"destination: {self.app.status_error}")
            self.history.value = ""
            return
        fresh = []
        for t in st.tables:
            if t.lag_seconds is not None:
                lag = "up to date" if t.lag_seconds == 0 else f"{duration(t.lag_seconds)} behind"
            else:
                lag = "never synced" if t.dest_rows is None else ("empty" if t.source_max is None else "—")
            fresh.append([t.table, t.source_max or "—", t.watermark or "—", lag, t.lake_rows, t.dest_rows if t.dest_rows is not None else "—"])
        self.fresh.value = html_table(["table", "source max", "watermark", "lag", "lake rows", "destination rows"], fresh, "nw-fresh")
        runs = runs_from_history(st.history)
        shown = runs[:15]
        self.history.value = (
            f"<div style='color:#546e7a'>{len(runs)} run(s) in the last {len(st.history)} ledger rows</div>"
            + html_table(["run", "finished", "tables", "inserted", "updated", "deleted", "seconds", "status"],
                         [[r["run_id"], r["finished"], r["tables"], r["inserted"], r["updated"], r["deleted"],
                           round(r["seconds"], 3) if r["seconds"] is not None else "—", r["status"]] for r in shown], "nw-history"))
        charts.show(self.chart, charts.runs_chart(shown))

    def start(self, dry_run: bool) -> None:
        app = self.app
        tables = list(self.tables.value) or None
        self.msg.value = ""
        self.run.disabled = self.plan.disabled = True
        try:
            report = app.guard(self.msg, lambda: engine.sync(app.settings, tables, full_refresh=self.full.value,
                                                             dry_run=dry_run, show_progress=False, progress=self.progress))
        finally:
            self.run.disabled = self.plan.disabled = False
        if report is None:
            return
        self.show_report(report)
        if not dry_run:
            app.refresh_status()
            self.measure(from_status=True)
            self.show_tables()
            app.redraw_later()

    def show_report(self, report: SyncReport) -> None:
        redact = self.app.settings.redact
        frame = notebook.report_frame(report)
        title = f"{'Plan (dry run)' if report.dry_run else 'Run'} {report.run_id}"
        if report.ok:
            self.msg.value = ok_html(f"{title}: {sum(t.moved for t in report.tables):,} rows "
                                     f"{'to move' if report.dry_run else 'moved'} across {len(report.tables)} table(s)")
        else:
            self.msg.value = error_html(redact(f"{title}: " + "; ".join(f"{t.table}: {t.error}" for t in report.failed)))
        self.report.value = html_table(list(frame.columns), frame.itertuples(index=False, name=None), "nw-report")
        charts.show(self.report_chart, notebook.rows_moved_chart(report))

    def progress(self, total: int) -> engine.ProgressSink:
        return WidgetProgress(self.bar, self.label, total)


class WidgetProgress(engine.ProgressSink):
    """The engine's progress, shown in an ipywidgets IntProgress while the sync runs."""

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
            self.label.value = f"&nbsp;{html.escape(self.current)} · {self.done:,} / {self.total:,} rows"

    def close(self) -> None:
        self.bar.value = self.total
        self.bar.bar_style = "success"
        self.label.value = f"&nbsp;done · {self.done:,} rows"
