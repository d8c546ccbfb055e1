"""The Voila dashboard: the team's window on the lake and its syncs.

``build()`` returns one ipywidgets tree (shown by ``notebooks/dashboard.ipynb``)
with five tabs: Overview, Data, Edit, Schemas, Sync.  Every number comes from
the lake or the destination at the moment it is shown.  The lake is opened
read-only for reads and writable only for the length of one edit
(:mod:`nwlib.editing`), so a sync is never blocked by the page.  Failures
(lake missing, destination down, a rejected edit) are one readable line in the
page, secrets masked; never a traceback.
"""
from __future__ import annotations

import contextlib
import html
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from . import editing, engine, lake, notebook
from .errors import NwError
from .model import Plan, SyncReport, TableSpec
from .settings import Settings
from .sql import ident

log = logging.getLogger("nwlib.dashboard")

ERROR_STYLE = "color:#b00020;background:#fdecea;border:1px solid #f5c2c7;padding:6px 10px;border-radius:4px;margin:4px 0"
OK_STYLE = "color:#1b5e20;background:#e8f5e9;border:1px solid #a5d6a7;padding:6px 10px;border-radius:4px;margin:4px 0"
TABLE_STYLE = ("<style>.nw-t{border-collapse:collapse;font:12px/1.4 system-ui,sans-serif;margin:4px 0}"
               ".nw-t th{background:#eceff1;text-align:left;padding:3px 8px;border-bottom:1px solid #b0bec5}"
               ".nw-t td{padding:2px 8px;border-bottom:1px solid #eceff1;max-width:320px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}"
               ".nw-schemas td{white-space:normal}.nw-t td.n{text-align:right;font-variant-numeric:tabular-nums}.nw-kpi{display:inline-block;margin:4px 18px 4px 0}"
               ".nw-kpi b{display:block;font-size:20px}.nw-tag{font-size:10px;padding:0 4px;border-radius:3px;margin-left:4px;color:#fff}"
               "</style>")
TAGS = {"PK": "#6a1b9a", "FK": "#00838f", "INC": "#ef6c00"}


# --- small HTML helpers -------------------------------------------------------------

def _fmt(v) -> str:
    if v is None:
        return "<i style='color:#90a4ae'>NULL</i>"
    if isinstance(v, float):
        return "—" if v != v else f"{v:,.3f}"  # NaN: pandas' missing value
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, datetime):
        return html.escape(v.isoformat(sep=" ", timespec="seconds"))
    text = str(v)
    return html.escape(text if len(text) <= 80 else text[:77] + "…")


def html_table(columns: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    head = "".join(f"<th>{h if h.startswith('<') else html.escape(h)}</th>" for h in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='n'>{_fmt(v)}</td>" if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else f"<td>{v if isinstance(v, _Raw) else _fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table class='nw-t {cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def tag(kind: str, text: str | None = None) -> _Raw:
    return _Raw(f"<span class='nw-tag' style='background:{TAGS[kind]}'>{html.escape(text or kind)}</span>")


def error_html(message: str) -> str:
    return f"<div class='nw-error' style='{ERROR_STYLE}'>⚠ {html.escape(message)}</div>"


def ok_html(message: str) -> str:
    return f"<div class='nw-ok' style='{OK_STYLE}'>✓ {html.escape(message)}</div>"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} s"


def _show(out, fig) -> None:
    out.clear_output(wait=True)
    with out:
        fig.show(renderer="plotly_mimetype", config={"displaylogo": False, "responsive": True})


# --- reads (each opens the lake read-only and closes it) ------------------------------------

@contextlib.contextmanager
def _lake(settings: Settings):
    con = lake.connect(settings.duckdb_path, read_only=True)
    try:
        yield con
    finally:
        con.close()


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
                fig.add_annotation(x=x0, y=y0 + 0.12, text="↻ " + ",".join(fk.columns), showarrow=False, font=dict(size=10, color="#00838f"))
                continue
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                               arrowhead=3, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#00838f", standoff=28, startstandoff=28)
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2 + 0.08, text=",".join(fk.columns), showarrow=False,
                               font=dict(size=10, color="#455a64"))
    names = list(pos)
    labels = [f"<b>{t}</b><br>{rows[t]:,} rows" if rows and t in rows else f"<b>{t}</b>" for t in names]
    fig.add_scatter(x=[pos[t][0] for t in names], y=[pos[t][1] for t in names], mode="markers+text", text=labels,
                    textposition="bottom center", marker=dict(size=34, color=[pos[t][0] for t in names], colorscale="Teal",
                                                              line=dict(width=1, color="#263238")),
                    hovertext=[f"{t}: load level {level[t]}" for t in names], hoverinfo="text", showlegend=False)
    top = max(by_level) if by_level else 0
    fig.update_layout(title="Foreign keys in load order (left loads first; arrow = child → parent)", height=340,
                      margin=dict(l=20, r=20, t=50, b=30), plot_bgcolor="white",
                      xaxis=dict(tickmode="array", tickvals=list(range(top + 1)), ticktext=[f"level {i}" for i in range(top + 1)],
                                 range=[-0.5, top + 0.5], showgrid=False, zeroline=False),
                      yaxis=dict(visible=False, range=[-max(len(v) for v in by_level.values()) / 2 - 0.6 if by_level else -1,
                                                       max(len(v) for v in by_level.values()) / 2 + 0.4 if by_level else 1]))
    return fig


def runs_from_history(history: Sequence[dict]) -> list[dict]:
    """controle_cargas rows (one per table per run) grouped into runs, newest first."""
    runs: dict[str, dict] = {}
    for h in history:
        r = runs.setdefault(h.get("run_id"), {"run_id": h.get("run_id"), "started": None, "finished": None, "tables": 0,
                                              "inserted": 0, "updated": 0, "deleted": 0, "failed": 0})
        r["tables"] += 1
        for k, col in (("inserted", "linhas_inseridas"), ("updated", "linhas_atualizadas"), ("deleted", "linhas_excluidas")):
            r[k] += int(h.get(col) or 0)
        r["failed"] += h.get("status") == "failed"
        s, f = h.get("iniciado_em"), h.get("finalizado_em")
        if s and (r["started"] is None or s < r["started"]):
            r["started"] = s
        if f and (r["finished"] is None or f > r["finished"]):
            r["finished"] = f
    out = []
    for r in runs.values():
        r["seconds"] = (r["finished"] - r["started"]).total_seconds() if r["started"] and r["finished"] else None
        r["status"] = "failed" if r["failed"] else "ok"
        out.append(r)
    out.sort(key=lambda r: r["finished"] or r["started"] or datetime.min, reverse=True)
    return out


# --- the dashboard ---------------------------------------------------------------------

class Dashboard:
    def __init__(self, settings: Settings, page_size: int = 50):
        import ipywidgets as w

        self.w = w
        self.settings = settings
        self.page_size = page_size
        self.status = None           # last nwlib.status.Status (None when the destination is down)
        self.status_error: str | None = None
        self.plan: Plan | None = None
        self.rows: dict[str, int] = {}
        self._rendered: set[int] = set()
        self.header = w.HTML()
        self.overview, self.data, self.edit, self.schemas, self.sync = (w.VBox() for _ in range(5))
        self.tab = w.Tab(children=[self.overview, self.data, self.edit, self.schemas, self.sync],
                         titles=["Overview", "Data", "Edit", "Schemas", "Sync"])
        for box, name in zip(self.tab.children, ("overview", "data", "edit", "schemas", "sync")):
            box.add_class(f"nw-tab-{name}")
        self.tab.observe(self._on_tab, names="selected_index")
        self.reload = w.Button(description="Refresh", icon="refresh", tooltip="re-read the lake and the destination")
        self.reload_msg = w.HTML()
        self.reload.on_click(lambda b: self.guard(self.reload_msg, self.refresh, ok=lambda _: "re-read the lake and the destination"))
        self.root = w.VBox([w.HTML(TABLE_STYLE), w.HBox([self.header, self.reload], layout=w.Layout(justify_content="space-between")),
                            self.reload_msg, self.tab])
        self._build_data()
        self._build_edit()
        self._build_schemas()
        self._build_sync()

    # --- error handling -------------------------------------------------------------
    def message(self, exc: BaseException) -> str:
        if isinstance(exc, NwError):
            return self.settings.redact(str(exc))
        log.exception("dashboard: unexpected error")
        return self.settings.redact(f"unexpected error ({type(exc).__name__}): {str(exc).splitlines()[0] if str(exc) else ''}")

    def guard(self, target, fn: Callable[[], object], ok: Callable[[object], str] | None = None):
        """Run ``fn``; show its failure (or ``ok(result)``) in the HTML widget ``target``."""
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the page shows one line, the log keeps the rest
            target.value = error_html(self.message(exc))
            return None
        if ok is not None:
            target.value = ok_html(self.settings.redact(ok(result)))
        return result

    # --- refresh --------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the lake and the destination; redraw what is on screen."""
        with _lake(self.settings) as con:
            self.plan = engine.read_plan(self.settings, con)
            self.rows = {t: lake.row_count(con, t) for t in self.plan.order}
        self.refresh_status()
        self.header.value = (
            f"<h2 style='margin:4px 0'>NW-Data Workbench</h2><div style='color:#546e7a;font-size:12px'>lake "
            f"<code>{html.escape(str(self.settings.duckdb_path))}</code> → {html.escape(self._dest_name())}</div>")
        self._rendered = set()
        self._render(self.tab.selected_index or 0)
        self._fill_choices()

    def refresh_status(self) -> None:
        from .status import status

        try:
            self.status, self.status_error = status(self.settings, history_limit=400), None
        except NwError as exc:
            self.status, self.status_error = None, self.message(exc)

    def _dest_name(self) -> str:
        if self.status is not None:
            return self.settings.redact(self.status.destination)
        return f"{self.settings.destination_type} (not reachable)"

    def _on_tab(self, change) -> None:
        self._render(change["new"])

    def _render(self, index: int) -> None:
        if index in self._rendered or index is None:
            return
        self._rendered.add(index)
        render = [self.render_overview, self.render_data, self.render_edit, self.render_schemas, self.render_sync][index]
        box = [self.overview, self.data, self.edit, self.schemas, self.sync][index]
        try:
            render()
        except Exception as exc:  # noqa: BLE001
            box.children = (self.w.HTML(error_html(self.message(exc))),)

    def _fill_choices(self) -> None:
        tables = list(self.plan.order) if self.plan else []
        for dd in (self.data_table, self.edit_table, self.add_table, self.drop_table):
            if list(dd.options) != tables:
                keep = dd.value if dd.value in tables else (tables[0] if tables else None)
                dd.options = tables
                dd.value = keep
        if list(self.sync_tables.options) != tables:
            self.sync_tables.options = tables

    # --- Overview ---------------------------------------------------------------------
    def render_overview(self) -> None:
        w, plan = self.w, self.plan
        path = Path(self.settings.duckdb_path)
        size = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())
        last = {t.table: t for t in self.status.tables} if self.status else {}
        runs = runs_from_history(self.status.history) if self.status else []
        kpis = [("tables", len(plan.order)), ("rows", f"{sum(self.rows.values()):,}"), ("lake size on disk", _size(size)),
                ("columns", sum(len(s.columns) for s in plan.specs.values()))]
        if runs:
            r = runs[0]
            kpis.append(("last sync", f"{r['finished'] or r['started']:%Y-%m-%d %H:%M:%S} UTC · {r['status']}"))
        elif self.status:
            kpis.append(("last sync", "never"))
        top = "".join(f"<div class='nw-kpi'>{html.escape(k)}<b>{html.escape(str(v))}</b></div>" for k, v in kpis)
        rows = []
        for t in plan.order:
            s = plan.specs[t]
            st = last.get(t)
            rows.append([t, self.rows[t], len(s.columns), ", ".join(s.primary_key) or "—", s.incremental_column or "—", s.mode,
                         ", ".join(fk.ref_table for fk in s.foreign_keys) or "—",
                         (st.last_run if st and st.last_run else "never") if self.status else "—",
                         (st.last_status or "—") if st else "—"])
        table = html_table(["table", "rows", "columns", "primary key", "incremental", "mode", "references", "last sync", "status"],
                           rows, "nw-overview")
        import plotly.graph_objects as go

        bar = go.Figure(go.Bar(x=list(plan.order), y=[self.rows[t] for t in plan.order], marker_color="#00838f",
                               text=[f"{self.rows[t]:,}" for t in plan.order], textposition="auto"))
        bar.update_layout(title="Rows per table (lake)", height=300, margin=dict(l=50, r=20, t=50, b=40), yaxis_title="rows")
        bar_out, graph_out = w.Output(), w.Output()
        _show(bar_out, bar)
        _show(graph_out, fk_graph(plan, self.rows))
        notes = [w.HTML(error_html(f"destination: {self.status_error}"))] if self.status_error else []
        self.overview.children = (*notes, w.HTML(top), w.HTML(table),
                                  w.HBox([bar_out, graph_out], layout=w.Layout(width="100%")))
        bar_out.layout.width = graph_out.layout.width = "50%"

    # --- Data -------------------------------------------------------------------------
    def _build_data(self) -> None:
        w = self.w
        self.data_table = w.Dropdown(description="table")
        self.data_column = w.Dropdown(description="filter", options=["(no filter)"])
        self.data_op = w.Dropdown(options=["=", "!=", ">=", "<=", "contains", "is null"], value="=", layout=w.Layout(width="90px"))
        self.data_value = w.Text(placeholder="value", layout=w.Layout(width="200px"))
        self.data_apply = w.Button(description="Apply", icon="filter")
        self.data_prev = w.Button(description="◀ Prev", disabled=True)
        self.data_next = w.Button(description="Next ▶", disabled=True)
        self.data_info = w.HTML()
        self.data_rows = w.HTML()
        self.data_schema = w.HTML()
        self.data_msg = w.HTML()
        self._cursors: list = []       # keyset cursor of each page shown before the current one
        self._page_last = None
        self._current = None
        self.data_table.observe(lambda c: self._reset_data(), names="value")
        self.data_apply.on_click(lambda b: self._reset_data(keep_filter=True))
        self.data_next.on_click(lambda b: self._page(+1))
        self.data_prev.on_click(lambda b: self._page(-1))

    def render_data(self) -> None:
        w = self.w
        self.data.children = (
            w.HBox([self.data_table, self.data_column, self.data_op, self.data_value, self.data_apply]),
            self.data_msg, w.HTML("<h4 style='margin:8px 0 2px'>Schema</h4>"), self.data_schema,
            w.HBox([self.data_prev, self.data_next, self.data_info]), self.data_rows)
        self._reset_data(keep_filter=True)

    def _spec(self, table: str) -> TableSpec:
        return self.plan.specs[table]

    def schema_html(self, spec: TableSpec) -> str:
        fk_of = {c: fk for fk in spec.foreign_keys for c in fk.columns}
        rows = []
        for c in spec.columns:
            marks = []
            if c.name in spec.primary_key:
                marks.append(tag("PK"))
            if c.name in fk_of:
                fk = fk_of[c.name]
                marks.append(tag("FK", f"FK → {fk.ref_table}.{fk.ref_columns[fk.columns.index(c.name)]}"))
            if c.name == spec.incremental_column:
                marks.append(tag("INC", "incremental"))
            rows.append([c.name, c.type, "yes" if c.nullable else "no", _Raw("".join(marks))])
        return html_table(["column", "type", "nullable", "role"], rows, "nw-schema")

    def _reset_data(self, keep_filter: bool = False) -> None:
        table = self.data_table.value
        if not table or not self.plan or "data" not in self._visible():
            return
        spec = self._spec(table)
        if not keep_filter or self.data_column.options[1:] != spec.column_names:
            self.data_column.options = ["(no filter)", *spec.column_names]
            self.data_column.value = "(no filter)"
        self.data_schema.value = self.schema_html(spec)
        self._cursors, self._page_last = [], None
        self._load_page(None)

    def _visible(self) -> set[str]:
        return {["overview", "data", "edit", "schemas", "sync"][i] for i in self._rendered}

    def _filter(self, spec: TableSpec) -> tuple[str, list]:
        col = self.data_column.value
        if not col or col == "(no filter)":
            return "", []
        c, op, value = ident(col), self.data_op.value, self.data_value.value
        if op == "is null":
            return f"{c} IS NULL", []
        if value == "":
            raise editing.InputRejected(f"the filter on {spec.name}.{col} has no value", "type a value or choose 'is null'")
        if op == "contains":
            return f"contains(lower(CAST({c} AS VARCHAR)), lower(?))", [value]
        return f"{c} {op} ?", [value]

    def page_query(self, spec: TableSpec, where: str, params: list, cursor) -> tuple[str, list]:
        """One page: keyset on the primary key (no OFFSET scan), or rowid order for keyless tables."""
        conds, args = ([where], list(params)) if where else ([], [])
        if spec.primary_key:
            keys = ", ".join(ident(k) for k in spec.primary_key)
            if cursor is not None:
                conds.append(f"({keys}) > ({', '.join('?' for _ in spec.primary_key)})")
                args += list(cursor)
            order = keys
        else:
            if cursor is not None:
                conds.append("rowid > ?")
                args.append(cursor[0])
            order = "rowid"
        sql = f"SELECT {'' if spec.primary_key else 'rowid AS nw_rowid, '}* FROM {ident(spec.name)}"
        sql += (" WHERE " + " AND ".join(conds) if conds else "") + f" ORDER BY {order} LIMIT {int(self.page_size)}"
        return sql, args

    def _load_page(self, cursor) -> None:
        spec = self._spec(self.data_table.value)

        def go():
            import duckdb

            where, params = self._filter(spec)
            sql, args = self.page_query(spec, where, params, cursor)
            with _lake(self.settings) as con:
                try:
                    cur = con.execute(sql, args)
                    rows = cur.fetchall()
                    names = [d[0] for d in cur.description]
                    total = (self.rows.get(spec.name) if not where else
                             con.execute(f"SELECT count(*) FROM {ident(spec.name)} WHERE {where}", params).fetchone()[0])
                except duckdb.ConversionException:
                    col = self.data_column.value
                    raise editing.InputRejected(f"{self.data_value.value!r} cannot be compared with {spec.name}.{col} "
                                                f"({spec.column(col).type})", "type a value of that column's type") from None
            return names, rows, total

        got = self.guard(self.data_msg, go)
        if got is None:
            self.data_rows.value = ""
            return
        self.data_msg.value = ""
        names, rows, total = got
        first = len(self._cursors) * self.page_size
        keyless = not spec.primary_key
        shown = [r[1:] if keyless else r for r in rows]
        self.data_rows.value = html_table(names[1:] if keyless else names, shown, "nw-rows")
        if rows:
            last = rows[-1]
            self._page_last = (last[0],) if keyless else tuple(last[names.index(k)] for k in spec.primary_key)
        self._current = cursor
        self.data_info.value = (f"&nbsp;rows {first + 1 if rows else 0:,}–{first + len(rows):,} of {total:,}"
                                f" · page {len(self._cursors) + 1:,} of {max(1, -(-total // self.page_size)):,}")
        self.data_prev.disabled = not self._cursors
        self.data_next.disabled = first + len(rows) >= total

    def _page(self, direction: int) -> None:
        if direction > 0 and self._page_last is not None:
            self._cursors.append(self._current)
            self._load_page(self._page_last)
        elif direction < 0 and self._cursors:
            self._load_page(self._cursors.pop())

    # --- Edit -------------------------------------------------------------------------
    def _build_edit(self) -> None:
        w = self.w
        self.edit_table = w.Dropdown(description="table")
        self.edit_fields: dict[str, object] = {}
        self.edit_form = w.VBox()
        self.edit_msg = w.HTML()
        self.edit_load = w.Button(description="Load by key", icon="search")
        self.edit_insert = w.Button(description="Insert", button_style="success", icon="plus")
        self.edit_update = w.Button(description="Update", button_style="info", icon="pencil")
        self.edit_delete = w.Button(description="Delete", button_style="danger", icon="trash")
        self.edit_confirm = w.Checkbox(description="confirm delete", value=False, indent=False)
        self.edit_table.observe(lambda c: self._edit_form(), names="value")
        self.edit_load.on_click(lambda b: self._edit_action("load"))
        self.edit_insert.on_click(lambda b: self._edit_action("insert"))
        self.edit_update.on_click(lambda b: self._edit_action("update"))
        self.edit_delete.on_click(lambda b: self._edit_action("delete"))

    def render_edit(self) -> None:
        w = self.w
        self.edit.children = (
            w.HTML("<div style='color:#546e7a'>Change a row in the lake, then run a sync to watch it travel. "
                   "Update bumps the incremental column; delete is refused while child rows point to the row.</div>"),
            self.edit_table, self.edit_form,
            w.HBox([self.edit_load, self.edit_insert, self.edit_update, self.edit_delete, self.edit_confirm]), self.edit_msg)
        self._edit_form()

    def _edit_form(self) -> None:
        table = self.edit_table.value
        if not table or "edit" not in self._visible():
            return
        w, spec = self.w, self._spec(table)
        self.edit_fields = {}
        rows = []
        for c in spec.columns:
            role = " (PK)" if c.name in spec.primary_key else (" (auto: incremental)" if c.name == spec.incremental_column else "")
            field = w.Text(placeholder=c.type, description=c.name, style={"description_width": "160px"},
                           layout=w.Layout(width="520px"), tooltip=c.type + role)
            self.edit_fields[c.name] = field
            rows.append(w.HBox([field, w.HTML(f"<span style='color:#78909c;font-size:11px'>&nbsp;{html.escape(c.type + role)}</span>")]))
        self.edit_form.children = rows
        self.edit_msg.value = ""
        # Start from a real row (the first by key), so the form shows what a row looks like.
        if spec.primary_key:
            with _lake(self.settings) as con:
                keys = ", ".join(ident(k) for k in spec.primary_key)
                cur = con.execute(f"SELECT * FROM {ident(table)} ORDER BY {keys} LIMIT 1")
                row = cur.fetchone()
                names = [d[0] for d in cur.description]
            if row:
                self._fill_form(dict(zip(names, row)))

    def _fill_form(self, row: dict) -> None:
        for name, field in self.edit_fields.items():
            v = row.get(name)
            field.value = "" if v is None else (v.isoformat(sep=" ") if isinstance(v, datetime) else str(v))

    def _edit_action(self, action: str) -> None:
        table = self.edit_table.value
        spec = self._spec(table)
        values = {k: f.value for k, f in self.edit_fields.items()}
        key = {k: values.get(k, "") for k in spec.primary_key}
        path = self.settings.duckdb_path

        def go():
            if action == "load":
                row = editing.get_row(path, table, key)
                if row is None:
                    raise editing.InputRejected(f"{table} has no row with " + ", ".join(f"{k}={v}" for k, v in key.items()),
                                                "check the key")
                self._fill_form(row)
                return f"loaded {table} " + ", ".join(f"{k}={v}" for k, v in key.items())
            if action == "insert":
                return editing.insert_row(path, table, values)
            if action == "update":
                msg = editing.update_row(path, table, key, values)
                row = editing.get_row(path, table, key)
                if row:
                    self._fill_form(row)
                return msg
            if not self.edit_confirm.value:
                raise editing.InputRejected(f"delete from {table} not confirmed", "tick 'confirm delete' and press Delete again")
            self.edit_confirm.value = False
            return editing.delete_row(path, table, key)

        if self.guard(self.edit_msg, go, ok=lambda m: m) is not None and action != "load":
            self._lake_changed()

    def _lake_changed(self) -> None:
        """After an edit: re-read counts and the model; redraw the tabs when next shown."""
        with _lake(self.settings) as con:
            self.plan = engine.read_plan(self.settings, con)
            self.rows = {t: lake.row_count(con, t) for t in self.plan.order}
        current = self.tab.selected_index or 0
        self._rendered = {current}
        self._fill_choices()

    # --- Schemas ----------------------------------------------------------------------
    def _build_schemas(self) -> None:
        w = self.w
        wide = w.Layout(width="420px")
        self.new_name = w.Text(description="name", placeholder="e.g. produtos", layout=wide)
        self.new_columns = w.Textarea(description="columns", placeholder="one per line: id BIGINT\nnome VARCHAR", layout=w.Layout(width="420px", height="90px"))
        self.new_pk = w.Text(description="primary key", placeholder="id", layout=wide)
        self.new_fks = w.Textarea(description="foreign keys", placeholder="column -> table.column", layout=w.Layout(width="420px", height="50px"))
        self.new_updated_at = w.Checkbox(description="add updated_at (incremental)", value=True, indent=False)
        self.create_btn = w.Button(description="Create table", button_style="success", icon="plus")
        self.add_table = w.Dropdown(description="table")
        self.add_name = w.Text(description="column", placeholder="new column")
        self.add_type = w.Dropdown(description="type", options=list(editing.TYPES), value="VARCHAR")
        self.add_btn = w.Button(description="Add column", button_style="info", icon="columns")
        self.drop_table = w.Dropdown(description="table")
        self.drop_confirm = w.Text(description="confirm", placeholder="type the table name")
        self.drop_btn = w.Button(description="Drop table", button_style="danger", icon="trash")
        self.schema_msg = w.HTML()
        self.schema_list = w.HTML()
        self.create_btn.on_click(lambda b: self._schema_action("create"))
        self.add_btn.on_click(lambda b: self._schema_action("add"))
        self.drop_btn.on_click(lambda b: self._schema_action("drop"))

    def render_schemas(self) -> None:
        w = self.w
        card = lambda title, *kids: w.VBox([w.HTML(f"<h4 style='margin:4px 0'>{title}</h4>"), *kids],
                                           layout=w.Layout(border="1px solid #cfd8dc", padding="6px", margin="4px"))
        self.schemas.children = (
            self.schema_msg,
            w.HBox([card("Create table", self.new_name, self.new_columns, self.new_pk, self.new_fks, self.new_updated_at, self.create_btn),
                    w.VBox([card("Add column", self.add_table, self.add_name, self.add_type, self.add_btn),
                            card("Drop table", self.drop_table, self.drop_confirm, self.drop_btn)])]),
            w.HTML("<h4 style='margin:8px 0 2px'>Lake model (table_metadata / fk_metadata)</h4>"), self.schema_list)
        self._schema_list()

    def _schema_list(self) -> None:
        rows = []
        for t in self.plan.order:
            s = self.plan.specs[t]
            rows.append([t, _Raw(", ".join(f"{html.escape(c.name)} <span style='color:#90a4ae'>{html.escape(c.type)}</span>" for c in s.columns)),
                         ", ".join(s.primary_key) or "—", s.incremental_column or "—",
                         "; ".join(f"{','.join(fk.columns)} → {fk.ref_table}.{','.join(fk.ref_columns)}" for fk in s.foreign_keys) or "—"])
        self.schema_list.value = html_table(["table", "columns", "primary key", "incremental", "foreign keys"], rows, "nw-schemas")

    def _schema_action(self, action: str) -> None:
        path = self.settings.duckdb_path

        def go():
            if action == "create":
                return editing.create_table(path, self.new_name.value, editing.parse_columns(self.new_columns.value),
                                            [p for p in self.new_pk.value.split(",")], editing.parse_foreign_keys(self.new_fks.value),
                                            self.new_updated_at.value)
            if action == "add":
                return editing.add_column(path, self.add_table.value or "", self.add_name.value, self.add_type.value)
            return editing.drop_table(path, self.drop_table.value or "", self.drop_confirm.value)

        if self.guard(self.schema_msg, go, ok=lambda m: m) is not None:
            self.drop_confirm.value = ""
            self._lake_changed()
            self._schema_list()

    # --- Sync -------------------------------------------------------------------------
    def _build_sync(self) -> None:
        w = self.w
        self.sync_tables = w.SelectMultiple(description="tables", rows=5, layout=w.Layout(width="300px"))
        self.sync_full = w.Checkbox(description="full refresh", value=False, indent=False)
        self.sync_plan = w.Button(description="Dry-run plan", icon="list")
        self.sync_run = w.Button(description="Run sync", button_style="primary", icon="play")
        self.sync_ping = w.Button(description="Measure latency", icon="refresh")
        self.sync_bar = w.IntProgress(value=0, min=0, max=1, description="progress", bar_style="info", layout=w.Layout(width="480px"))
        self.sync_label = w.HTML()
        self.sync_latency = w.HTML()
        self.sync_msg = w.HTML()
        self.sync_report = w.HTML()
        self.sync_report_chart = w.Output()
        self.sync_fresh = w.HTML()
        self.sync_history = w.HTML()
        self.sync_chart = w.Output()
        self.sync_plan.on_click(lambda b: self._sync_action(dry_run=True))
        self.sync_run.on_click(lambda b: self._sync_action(dry_run=False))
        self.sync_ping.on_click(lambda b: self._latency())

    def render_sync(self) -> None:
        w = self.w
        self.sync.children = (
            w.HBox([self.sync_latency, self.sync_ping]),
            w.HBox([self.sync_tables, w.VBox([self.sync_full, w.HBox([self.sync_plan, self.sync_run]),
                                              w.HBox([self.sync_bar, self.sync_label])])]),
            self.sync_msg, self.sync_report, self.sync_report_chart,
            w.HTML("<h4 style='margin:8px 0 2px'>Freshness (source max of the incremental column vs the destination's watermark)</h4>"),
            self.sync_fresh,
            w.HTML("<h4 style='margin:8px 0 2px'>History (controle_cargas)</h4>"), self.sync_history, self.sync_chart)
        self._latency(from_status=True)
        self._sync_tables_view()

    def _latency(self, from_status: bool = False) -> None:
        if from_status and self.status is not None:
            ms = self.status.latency_ms
        else:
            from . import destinations

            def go():
                dest = destinations.create(self.settings)
                try:
                    return dest.ping() * 1000
                finally:
                    dest.close()
            ms = self.guard(self.sync_latency, go)
            if ms is None:
                return
        if ms is None:
            self.sync_latency.value = error_html(f"destination: {self.status_error}")
            return
        self.sync_latency.value = (f"<div class='nw-latency'>Round-trip to {html.escape(self._dest_name())}: "
                                   f"<b>{ms:.2f} ms</b> (measured {datetime.now():%H:%M:%S})</div>")

    def _sync_tables_view(self) -> None:
        st = self.status
        if st is None:
            self.sync_fresh.value = error_html(f"destination: {self.status_error}")
            self.sync_history.value = ""
            return
        fresh = []
        for t in st.tables:
            if t.lag_seconds is not None:
                lag = "up to date" if t.lag_seconds == 0 else f"{_duration(t.lag_seconds)} behind"
            else:
                lag = "never synced" if t.dest_rows is None else ("empty" if t.source_max is None else "—")
            fresh.append([t.table, t.source_max or "—", t.watermark or "—", lag, t.lake_rows, t.dest_rows if t.dest_rows is not None else "—"])
        self.sync_fresh.value = html_table(["table", "source max", "watermark", "lag", "lake rows", "destination rows"], fresh, "nw-fresh")
        runs = runs_from_history(st.history)
        shown = runs[:15]
        self.sync_history.value = (
            f"<div style='color:#546e7a'>{len(runs)} run(s) in the last {len(st.history)} ledger rows</div>"
            + html_table(["run", "finished", "tables", "inserted", "updated", "deleted", "seconds", "status"],
                         [[r["run_id"], r["finished"], r["tables"], r["inserted"], r["updated"], r["deleted"],
                           round(r["seconds"], 3) if r["seconds"] is not None else "—", r["status"]] for r in shown], "nw-history"))
        import plotly.graph_objects as go

        seq = list(reversed(shown))
        x = [f"{r['finished'] or r['started']:%m-%d %H:%M:%S}" for r in seq]
        fig = go.Figure()
        for label, color in (("inserted", "#2e7d32"), ("updated", "#1565c0"), ("deleted", "#c62828")):
            fig.add_bar(name=label, x=x, y=[r[label] for r in seq], marker_color=color)
        fig.add_scatter(name="seconds", x=x, y=[r["seconds"] for r in seq], yaxis="y2", mode="lines+markers", line_color="#ef6c00")
        fig.update_layout(barmode="stack", title="Runs: rows moved and duration", height=300, margin=dict(l=50, r=50, t=50, b=40),
                          yaxis=dict(title="rows"), yaxis2=dict(title="seconds", overlaying="y", side="right", rangemode="tozero", showgrid=False), legend_orientation="h")
        _show(self.sync_chart, fig)

    def _sync_action(self, dry_run: bool) -> None:
        tables = list(self.sync_tables.value) or None
        self.sync_msg.value = ""
        self.sync_run.disabled = self.sync_plan.disabled = True
        try:
            report = self.guard(self.sync_msg, lambda: engine.sync(self.settings, tables, full_refresh=self.sync_full.value,
                                                                  dry_run=dry_run, show_progress=False, progress=self._progress))
        finally:
            self.sync_run.disabled = self.sync_plan.disabled = False
        if report is None:
            return
        self.show_report(report)
        if not dry_run:
            self.refresh_status()
            self._latency(from_status=True)
            self._sync_tables_view()
            self._rendered = {self.tab.selected_index or 0}

    def show_report(self, report: SyncReport) -> None:
        frame = notebook.report_frame(report)
        title = f"{'Plan (dry run)' if report.dry_run else 'Run'} {report.run_id}"
        if report.ok:
            self.sync_msg.value = ok_html(f"{title}: {sum(t.moved for t in report.tables):,} rows "
                                          f"{'to move' if report.dry_run else 'moved'} across {len(report.tables)} table(s)")
        else:
            self.sync_msg.value = error_html(self.settings.redact(f"{title}: " + "; ".join(f"{t.table}: {t.error}" for t in report.failed)))
        self.sync_report.value = html_table(list(frame.columns), frame.itertuples(index=False, name=None), "nw-report")
        _show(self.sync_report_chart, notebook.rows_moved_chart(report))

    def _progress(self, total: int) -> engine.ProgressSink:
        return WidgetProgress(self.sync_bar, self.sync_label, total)


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


def build(duckdb_path: str | None = None, destination_type: str | None = None, page_size: int = 50, settings: Settings | None = None):
    """The dashboard widget (what ``notebooks/dashboard.ipynb`` shows)."""
    import ipywidgets as w

    try:
        settings = settings or notebook.load(duckdb_path=duckdb_path, destination_type=destination_type)
    except NwError as exc:
        return w.VBox([w.HTML("<h2>NW-Data Workbench</h2>"), w.HTML(error_html(str(exc)))])
    board = Dashboard(settings, page_size)
    try:
        board.refresh()
    except Exception as exc:  # noqa: BLE001 - shown as one line, see Dashboard.message
        return w.VBox([w.HTML("<h2>NW-Data Workbench</h2>"), w.HTML(error_html(board.message(exc)))])
    return board.root
