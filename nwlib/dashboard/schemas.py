"""Schemas tab: create a table, add a column, drop a table (confirmed); table_metadata/fk_metadata kept in step."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

from .. import editing
from .html import Raw, heading, html_table, scroll

if TYPE_CHECKING:
    from .app import Dashboard


class SchemasTab:
    name = "schemas"
    shows_destination = False

    def __init__(self, app: Dashboard):
        self.app = app
        w = app.w
        self.box = w.VBox()
        wide = w.Layout(width="420px")
        self.new_name = w.Text(description="name", placeholder="e.g. produtos", layout=wide)
        self.new_columns = w.Textarea(description="columns", placeholder="one per line: id BIGINT\nnome VARCHAR", layout=w.Layout(width="420px", height="90px"))
        self.new_pk = w.Text(description="primary key", placeholder="id", layout=wide)
        self.new_fks = w.Textarea(description="foreign keys", placeholder="column -> table.column", layout=w.Layout(width="420px", height="50px"))
        self.new_updated_at = w.Checkbox(description="add updated_at (incremental)", value=True, indent=False)
        self.create = w.Button(description="Create table", button_style="success", layout=w.Layout(width="auto"))
        self.add_table = w.Dropdown(description="table")
        self.add_name = w.Text(description="column", placeholder="new column")
        self.add_type = w.Dropdown(description="type", options=list(editing.TYPES), value="VARCHAR")
        self.add = w.Button(description="Add column", button_style="info", layout=w.Layout(width="auto"))
        self.drop_table = w.Dropdown(description="table")
        self.drop_confirm = w.Text(description="confirm", placeholder="type the table name")
        self.drop = w.Button(description="Drop table", button_style="danger", layout=w.Layout(width="auto"))
        self.msg = w.HTML()
        self.listing = w.HTML()
        self.create.on_click(lambda b: self.act(self._create))
        self.add.on_click(lambda b: self.act(self._add))
        self.drop.on_click(lambda b: self.act(self._drop))

    def render(self) -> None:
        w = self.app.w
        card = lambda title, *kids: w.VBox([w.HTML(f"<h4 style='margin:4px 0'>{title}</h4>"), *kids],
                                           layout=w.Layout(border="1px solid #cfd8dc", padding="6px", margin="4px"))
        self.box.children = (
            self.msg,
            w.HBox([card("Create table", self.new_name, self.new_columns, self.new_pk, self.new_fks, self.new_updated_at, self.create),
                    w.VBox([card("Add column", self.add_table, self.add_name, self.add_type, self.add),
                            card("Drop table", self.drop_table, self.drop_confirm, self.drop)])], layout=w.Layout(flex_flow="row wrap")),
            w.HTML(heading("Lake model (table_metadata / fk_metadata)")), self.listing)
        self.list_tables()

    def list_tables(self) -> None:
        plan = self.app.plan
        rows = []
        for t in plan.order:
            s = plan.specs[t]
            rows.append([t, Raw(", ".join(f"{html.escape(c.name)} <span style='color:#90a4ae'>{html.escape(c.type)}</span>" for c in s.columns)),
                         ", ".join(s.primary_key) or "—", s.incremental_column or "—",
                         "; ".join(f"{','.join(fk.columns)} → {fk.ref_table}.{','.join(fk.ref_columns)}" for fk in s.foreign_keys) or "—"])
        self.listing.value = scroll(html_table(["table", "columns", "primary key", "incremental", "foreign keys"], rows, "nw-schemas"))

    def _create(self) -> str:
        return editing.create_table(self.app.settings.duckdb_path, self.new_name.value, editing.parse_columns(self.new_columns.value),
                                    list(self.new_pk.value.split(",")), editing.parse_foreign_keys(self.new_fks.value),
                                    self.new_updated_at.value)

    def _add(self) -> str:
        return editing.add_column(self.app.settings.duckdb_path, self.add_table.value or "", self.add_name.value, self.add_type.value)

    def _drop(self) -> str:
        return editing.drop_table(self.app.settings.duckdb_path, self.drop_table.value or "", self.drop_confirm.value)

    def act(self, change) -> None:
        if self.app.guard(self.msg, change, ok=lambda m: m) is not None:
            self.drop_confirm.value = ""
            self.app.lake_changed()
            self.list_tables()
