"""Edit tab: insert, update (bumping the incremental column) or delete one lake row, validated by :mod:`nwlib.editing`."""
from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING

from .. import browse, editing
from ..errors import InputRejected

if TYPE_CHECKING:
    from .app import Dashboard


class EditTab:
    name = "edit"
    shows_destination = False

    def __init__(self, app: Dashboard):
        self.app = app
        w = app.w
        self.box = w.VBox()
        self.table = w.Dropdown(description="table")
        self.fields: dict[str, object] = {}
        self.form = w.VBox()
        self.msg = w.HTML()
        auto = w.Layout(width="auto")
        self.load = w.Button(description="Load by key", layout=auto)
        self.insert = w.Button(description="Insert", button_style="success", layout=auto)
        self.update = w.Button(description="Update", button_style="info", layout=auto)
        self.delete = w.Button(description="Delete", button_style="danger", layout=auto)
        self.confirm = w.Checkbox(description="confirm delete", value=False, indent=False, layout=auto)
        self.table.observe(lambda c: self.build_form(), names="value")
        for button, action in ((self.load, "load"), (self.insert, "insert"), (self.update, "update"), (self.delete, "delete")):
            button.on_click(lambda b, action=action: self.act(action))

    def render(self) -> None:
        w = self.app.w
        self.box.children = (
            w.HTML("<div style='color:#546e7a'>Change a row in the lake, then run a sync to watch it travel. "
                   "Update bumps the incremental column; delete is refused while child rows point to the row.</div>"),
            self.table, self.form,
            w.HBox([self.load, self.insert, self.update, self.delete, self.confirm], layout=w.Layout(flex_flow="row wrap")), self.msg)
        self.build_form()

    def build_form(self) -> None:
        table = self.table.value
        if not table or not self.app.is_shown(self.name):
            return
        w, spec = self.app.w, self.app.plan.specs[table]
        self.fields = {}
        rows = []
        for c in spec.columns:
            role = " (PK)" if c.name in spec.primary_key else (" (auto: incremental)" if c.name == spec.incremental_column else "")
            field = w.Text(placeholder=c.type, description=c.name, style={"description_width": "160px"},
                           layout=w.Layout(width="520px", max_width="100%"), tooltip=c.type + role)
            self.fields[c.name] = field
            rows.append(w.HBox([field, w.HTML(f"<span style='color:#78909c;font-size:11px'>&nbsp;{html.escape(c.type + role)}</span>")]))
        self.form.children = rows
        self.msg.value = ""
        # Start from a real row (the first by key), so the form shows what a row looks like.
        if spec.primary_key:
            with self.app.lake() as con:
                first = browse.read_page(con, spec, None, None, 1, total=self.app.rows.get(spec.name, 0))
            if first.rows:
                self.fill(dict(zip(first.columns, first.rows[0])))

    def fill(self, row: dict) -> None:
        for name, field in self.fields.items():
            v = row.get(name)
            field.value = "" if v is None else (v.isoformat(sep=" ") if isinstance(v, datetime) else str(v))

    def act(self, action: str) -> None:
        table = self.table.value
        spec = self.app.plan.specs[table]
        values = {k: f.value for k, f in self.fields.items()}
        key = {k: values.get(k, "") for k in spec.primary_key}
        path = self.app.settings.duckdb_path
        shown_key = ", ".join(f"{k}={v}" for k, v in key.items())

        def load() -> str:
            row = editing.get_row(path, table, key)
            if row is None:
                raise InputRejected(f"{table} has no row with {shown_key}", "check the key")
            self.fill(row)
            return f"loaded {table} {shown_key}"

        def update() -> str:
            msg = editing.update_row(path, table, key, values)
            row = editing.get_row(path, table, key)
            if row:
                self.fill(row)
            return msg

        def delete() -> str:
            if not self.confirm.value:
                raise InputRejected(f"delete from {table} not confirmed", "tick 'confirm delete' and press Delete again")
            self.confirm.value = False
            return editing.delete_row(path, table, key)

        actions = {"load": load, "insert": lambda: editing.insert_row(path, table, values), "update": update, "delete": delete}
        if self.app.guard(self.msg, actions[action], ok=lambda m: m) is not None and action != "load":
            self.app.lake_changed()
