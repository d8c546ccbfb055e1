"""Overview tab: tables, rows, lake size, last sync, rows per table and the FK graph in load order."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from ..ledger import runs_from_history
from . import charts
from .html import error_html, html_table, note_html, scroll, size, wide

if TYPE_CHECKING:
    from .app import Dashboard


class OverviewTab:
    name = "overview"
    shows_destination = True

    def __init__(self, app: Dashboard):
        self.app = app
        self.box = app.w.VBox()

    def render(self) -> None:
        app, w, plan = self.app, self.app.w, self.app.plan
        path = Path(app.settings.duckdb_path)
        on_disk = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())
        last = {t.table: t for t in app.status.tables} if app.status else {}
        runs = runs_from_history(app.status.history) if app.status else []
        kpis = [("tables", len(plan.order)), ("rows", f"{sum(app.rows.values()):,}"), ("lake size on disk", size(on_disk)),
                ("columns", sum(len(s.columns) for s in plan.specs.values()))]
        if runs:
            r = runs[0]
            kpis.append(("last sync", f"{r['finished'] or r['started']:%Y-%m-%d %H:%M:%S} UTC · {r['status']}"))
        elif app.status:
            kpis.append(("last sync", "never"))
        elif app.status_pending:
            kpis.append(("last sync", "reading …"))
        top = "".join(f"<div class='nw-kpi'>{html.escape(k)}<b>{html.escape(str(v))}</b></div>" for k, v in kpis)
        unknown = "…" if app.status_pending else "—"
        rows = []
        for t in plan.order:
            s = plan.specs[t]
            st = last.get(t)
            rows.append([t, app.rows[t], len(s.columns), ", ".join(s.primary_key) or "—", s.incremental_column or "—", s.mode,
                         ", ".join(fk.ref_table for fk in s.foreign_keys) or "—",
                         (st.last_run if st and st.last_run else "never") if app.status else unknown,
                         (st.last_status or "—") if st else unknown])
        table = html_table(["table", "rows", "columns", "primary key", "incremental", "mode", "references", "last sync", "status"],
                           rows, "nw-overview")
        charts_html = (f"<div class='nw-charts'><div>{charts.rows_per_table(plan.order, app.rows)}</div>"
                       f"<div>{charts.fk_graph(plan, app.rows)}</div></div>")
        if app.status_error:
            notes = [w.HTML(error_html(f"destination: {app.status_error}"))]
        elif app.status_pending:
            notes = [w.HTML(note_html(f"reading the destination ({app.settings.destination_type}) …"))]
        else:
            notes = []
        self.box.children = (*notes, w.HTML(top), w.HTML(scroll(table)), wide(w.HTML(charts_html)))
