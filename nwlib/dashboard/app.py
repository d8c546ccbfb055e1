"""The dashboard's frame: header, tabs, refresh, and errors shown as one line.

:class:`Dashboard` holds what every tab reads (settings, the lake's plan and
row counts, the destination's status) and renders a tab the first time it is
shown: the first render draws the Overview alone.  The destination is read in
the background on that first render (:mod:`.background`), so the page shows
the lake at once whatever the destination's latency; the tabs that show the
destination are redrawn when its answer comes.  The lake is opened read-only
for reads and writable only for the length of one edit
(:mod:`nwlib.editing`), so a sync is never blocked by the page.  Failures
(lake missing, destination down, a rejected edit) are one readable line in the
page, secrets masked; never a traceback.
"""
from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Callable, Iterator

import duckdb

from .. import destinations, lake, notebook
from ..errors import NwError, first_line
from ..model import Plan
from ..plan import read_plan
from ..settings import Settings
from .background import run_later
from .data import DataTab
from .edit import EditTab
from .html import TABLE_STYLE, error_html, ok_html
from .overview import OverviewTab
from .schemas import SchemasTab
from .sync import SyncTab
from .transform import TransformTab

log = logging.getLogger("nwlib.dashboard")


class Dashboard:
    def __init__(self, settings: Settings, page_size: int = 50):
        import ipywidgets as w

        self.w = w
        self.settings = settings
        self.page_size = page_size
        self.status = None           # last nwlib.status.Status (None when the destination is down)
        self.status_error: str | None = None
        self.status_pending = False  # the destination is being read (first render)
        self._reads = 0              # which read of the destination is the latest
        self.plan: Plan | None = None
        self.rows: dict[str, int] = {}
        self._rendered: set[int] = set()
        self.header = w.HTML()
        self.overview, self.data, self.edit = OverviewTab(self), DataTab(self), EditTab(self)
        self.schemas, self.sync, self.transform = SchemasTab(self), SyncTab(self), TransformTab(self)
        self.tabs = (self.overview, self.data, self.edit, self.schemas, self.sync, self.transform)
        self.tab = w.Tab(children=[t.box for t in self.tabs], titles=[t.name.capitalize() for t in self.tabs])
        for t in self.tabs:
            t.box.add_class(f"nw-tab-{t.name}")
        self.tab.observe(lambda change: self._render(change["new"]), names="selected_index")
        self.reload = w.Button(description="Refresh", tooltip="re-read the lake and the destination", layout=w.Layout(width="auto", flex="0 0 auto"))
        self.reload_msg = w.HTML()
        self.reload.on_click(lambda b: self.guard(self.reload_msg, self.refresh, ok=lambda _: "re-read the lake and the destination"))
        self.root = w.VBox([w.HTML(TABLE_STYLE), w.HBox([self.header, self.reload], layout=w.Layout(justify_content="space-between")),
                            self.reload_msg, self.tab], layout=w.Layout(width="100%"))
        self.root.add_class("nw-board")

    # --- shared by the tabs -------------------------------------------------------------
    @contextlib.contextmanager
    def lake(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The lake, read-only, for one read."""
        con = lake.connect(self.settings.duckdb_path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    def message(self, exc: BaseException) -> str:
        if isinstance(exc, NwError):
            return self.settings.redact(str(exc))
        log.exception("dashboard: unexpected error")
        return self.settings.redact(f"unexpected error ({type(exc).__name__}): {first_line(exc)}")

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

    def is_shown(self, name: str) -> bool:
        """Has the tab ``name`` been drawn (a hidden tab's widgets are filled when it is first shown)?"""
        return any(self.tabs[i].name == name for i in self._rendered)

    def dest_name(self) -> str:
        if self.status is not None:
            return self.settings.redact(self.status.destination)
        return f"{self.settings.destination_type} ({'reading …' if self.status_pending else 'not reachable'})"

    def ping_ms(self) -> float:
        dest = destinations.create(self.settings)
        try:
            return dest.ping() * 1000
        finally:
            dest.close()

    # --- refresh ------------------------------------------------------------------------
    def refresh(self, wait: bool = True) -> None:
        """Re-read the lake and the destination; redraw what is on screen.

        ``wait=False`` (the first render) reads the destination in the background and redraws the
        tabs that show it when the answer comes."""
        self._read_lake()
        if wait:
            self.refresh_status()
        else:
            self._reads += 1
            self.status_pending = True
        self._show_header()
        self._rendered = set()
        self._render(self.tab.selected_index or 0)
        self._fill_choices()
        if not wait:
            read = self._reads
            run_later(self._read_status, lambda result, error: self._status_read(read, result, error))

    def _show_header(self) -> None:
        self.header.value = (
            f"<h2 style='margin:4px 0'>NW-Data Workbench</h2><div style='color:#546e7a;font-size:12px'>lake "
            f"<code>{html.escape(str(self.settings.duckdb_path))}</code> → {html.escape(self.dest_name())}</div>")

    def _read_lake(self) -> None:
        with self.lake() as con:
            self.plan = read_plan(self.settings, con)
            self.rows = {t: lake.row_count(con, self.plan.specs[t]) for t in self.plan.order}

    def _read_status(self):
        from ..status import status

        return status(self.settings, history_limit=400)

    def _status_read(self, read: int, result, error: BaseException | None) -> None:
        """The background read of the destination is back: show it, unless a later read replaced it."""
        if read != self._reads:
            return
        self.status_pending = False
        self.status, self.status_error = (result, None) if error is None else (None, self.message(error))
        self._show_header()
        current = self.tab.selected_index or 0
        self._rendered = {i for i in self._rendered if not self.tabs[i].shows_destination}
        self._render(current)

    def refresh_status(self) -> None:
        """Read the destination now (a read still under way in the background is then ignored)."""
        self._reads += 1
        self.status_pending = False
        try:
            self.status, self.status_error = self._read_status(), None
        except NwError as exc:
            self.status, self.status_error = None, self.message(exc)

    def lake_changed(self) -> None:
        """After an edit: re-read counts and the model; redraw the tabs when next shown."""
        self._read_lake()
        self.redraw_later()
        self._fill_choices()

    def redraw_later(self) -> None:
        """Tabs other than the one on screen are drawn again when next shown."""
        self._rendered = {self.tab.selected_index or 0}

    def _render(self, index: int | None) -> None:
        if index is None or index in self._rendered:
            return
        self._rendered.add(index)
        tab = self.tabs[index]
        try:
            tab.render()
        except Exception as exc:  # noqa: BLE001
            tab.box.children = (self.w.HTML(error_html(self.message(exc))),)

    def _fill_choices(self) -> None:
        tables = list(self.plan.order) if self.plan else []
        for dd in (self.data.table, self.edit.table, self.schemas.add_table, self.schemas.drop_table):
            if list(dd.options) != tables:
                keep = dd.value if dd.value in tables else (tables[0] if tables else None)
                dd.options = tables
                dd.value = keep
        if list(self.sync.tables.options) != tables:
            self.sync.tables.options = tables


def build(duckdb_path: str | None = None, destination_type: str | None = None, page_size: int = 50, settings: Settings | None = None):
    """The dashboard widget (what ``notebooks/dashboard.ipynb`` shows)."""
    import ipywidgets as w

    try:
        settings = settings or notebook.load(duckdb_path=duckdb_path, destination_type=destination_type)
    except NwError as exc:
        return w.VBox([w.HTML("<h2>NW-Data Workbench</h2>"), w.HTML(error_html(str(exc)))])
    board = Dashboard(settings, page_size)
    try:
        board.refresh(wait=False)
    except Exception as exc:  # noqa: BLE001 - shown as one line, see Dashboard.message
        return w.VBox([w.HTML("<h2>NW-Data Workbench</h2>"), w.HTML(error_html(board.message(exc)))])
    return board.root
