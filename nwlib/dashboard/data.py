"""Data tab: a lake table a page at a time (keyset on the key), a column filter, its schema with roles marked."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .. import browse
from ..model import TableSpec
from .html import Raw, heading, html_table, note_html, scroll, tag

if TYPE_CHECKING:
    from .app import Dashboard

NO_FILTER = "(no filter)"


def schema_html(spec: TableSpec) -> str:
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
        rows.append([c.name, c.type, "yes" if c.nullable else "no", Raw("".join(marks))])
    return html_table(["column", "type", "nullable", "role"], rows, "nw-schema")


class DataTab:
    name = "data"
    shows_destination = False

    def __init__(self, app: Dashboard):
        self.app = app
        w = app.w
        self.box = w.VBox()
        self.table = w.Dropdown(description="table")
        self.column = w.Dropdown(description="filter", options=[NO_FILTER])
        self.op = w.Dropdown(options=list(browse.OPERATORS), value="=", layout=w.Layout(width="90px"))
        self.value = w.Text(placeholder="value", layout=w.Layout(width="200px"))
        auto = w.Layout(width="auto")
        self.apply = w.Button(description="Apply", tooltip="show only the rows that match the filter", layout=auto)
        self.clear = w.Button(description="Clear filter", tooltip="show every row again", layout=auto)
        self.prev = w.Button(description="◀ Prev", disabled=True, layout=auto)
        self.next = w.Button(description="Next ▶", disabled=True, layout=auto)
        self.info = w.HTML()
        self.rows = w.HTML()
        self.schema = w.HTML()
        self.msg = w.HTML()
        self._cursors: list = []       # keyset cursor of each page shown before the current one
        self._page_last = None
        self._current = None
        self.table.observe(lambda c: self.reset(), names="value")
        self.apply.on_click(lambda b: self.reset(keep_filter=True))
        self.clear.on_click(lambda b: self.clear_filter())
        self.next.on_click(lambda b: self.page(+1))
        self.prev.on_click(lambda b: self.page(-1))

    def render(self) -> None:
        w = self.app.w
        wrap = w.Layout(flex_flow="row wrap", align_items="center")
        self.box.children = (
            w.HBox([self.table, self.column, self.op, self.value, self.apply, self.clear], layout=wrap),
            self.msg, w.HTML(heading("Schema")), self.schema,
            w.HBox([self.prev, self.next, self.info], layout=wrap), self.rows)
        self.reset(keep_filter=True)

    def clear_filter(self) -> None:
        self.column.value, self.value.value = NO_FILTER, ""
        self.reset(keep_filter=True)

    def reset(self, keep_filter: bool = False) -> None:
        table = self.table.value
        if not table or not self.app.plan or not self.app.is_shown(self.name):
            return
        spec = self.app.plan.specs[table]
        if not keep_filter or tuple(self.column.options[1:]) != spec.column_names:
            self.column.options = [NO_FILTER, *spec.column_names]
            self.column.value = NO_FILTER
        self.schema.value = schema_html(spec)
        self._cursors, self._page_last = [], None
        self._load(None)

    def _filter(self) -> browse.Filter | None:
        col = self.column.value
        return None if not col or col == NO_FILTER else browse.Filter(col, self.op.value, self.value.value)

    def _load(self, cursor) -> None:
        app = self.app
        spec = app.plan.specs[self.table.value]

        def read() -> browse.Page:
            with app.lake() as con:
                return browse.read_page(con, spec, self._filter(), cursor, app.page_size, app.rows.get(spec.name))

        page = app.guard(self.msg, read)
        if page is None:
            self.rows.value = ""
            return
        self.msg.value = ""
        first = len(self._cursors) * app.page_size
        if page.last is not None:
            self._page_last = page.last
        self._current = cursor
        shown = len(page.rows)
        self.prev.disabled = not self._cursors
        self.next.disabled = first + shown >= page.total
        if page.total == 0:
            self.info.value = "&nbsp;no rows"
            self.rows.value = note_html(self.empty_message(spec.name))
            return
        self.rows.value = scroll(html_table(page.columns, page.rows, "nw-rows"))
        self.info.value = (f"&nbsp;rows {first + 1:,}–{first + shown:,} of {page.total:,}"
                           f" · page {len(self._cursors) + 1:,} of {max(1, -(-page.total // app.page_size)):,}")

    def empty_message(self, table: str) -> str:
        """Why there is no row to show, and what to do about it."""
        flt = self._filter()
        if flt is None:
            return f"{table} has no rows yet: add one in the Edit tab, or load the lake (nw bootstrap)."
        cond = f"{flt.column} {flt.op}" + ("" if flt.op == "is null" else f" {flt.value!r}")
        return (f"No row of {table} matches the filter {cond} (0 of {self.app.rows.get(table, 0):,} rows). "
                "Press Clear filter to see every row, or change the value and press Apply.")

    def page(self, direction: int) -> None:
        if direction > 0 and self._page_last is not None:
            self._cursors.append(self._current)
            self._load(self._page_last)
        elif direction < 0 and self._cursors:
            self._load(self._cursors.pop())
