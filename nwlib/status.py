"""``nw status``: per table, rows on both sides, whether they differ, the watermark and lag, the last run.

Whether a table differs is answered from the lake and the destination's
recorded state alone (no read of the destination's rows): the lake's row count
and fingerprint sum against those the destination recorded with its rows
(:mod:`nwlib.cdc`).  ``nw verify`` compares every value.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import cdc, destinations, fingerprint
from .destinations.base import Destination
from .lake import open_lake
from .model import APPEND, OK, TableSpec, TableState
from .plan import read_plan
from .settings import Settings
from .sql import ident

IN_SYNC, DIFFERS, UNKNOWN, NEVER = "in sync", "differs", "unknown", "never synced"


@dataclass(frozen=True)
class TableStatus:
    table: str
    lake_rows: int
    dest_rows: int | None
    watermark: str | None
    source_max: str | None
    lag_seconds: float | None
    last_status: str | None
    last_run: datetime | None
    sync: str = UNKNOWN                 # IN_SYNC | DIFFERS | UNKNOWN | NEVER
    problem: str | None = None          # why the table cannot be synced (no key …)

    @property
    def healthy(self) -> bool:
        return self.sync == IN_SYNC and self.last_status in (None, OK) and not self.problem


@dataclass(frozen=True)
class Status:
    destination: str
    latency_ms: float | None
    tables: tuple[TableStatus, ...]
    history: tuple[dict, ...]
    running: str | None = None          # the sync holding the destination's lock now (host, pid, since)

    @property
    def healthy(self) -> bool:
        return all(t.healthy for t in self.tables)


def _lag(source_max, watermark) -> float | None:
    try:
        a, b = datetime.fromisoformat(str(source_max)), datetime.fromisoformat(str(watermark))
        return max(0.0, (a - b).total_seconds())
    except (TypeError, ValueError):
        return None


def compare_state(con, spec: TableSpec, state: TableState) -> tuple[int, str]:
    """(lake rows, IN_SYNC | DIFFERS | UNKNOWN | NEVER) from the lake and the destination's recorded state."""
    if spec.problem:
        n = con.execute(f"SELECT count(*) FROM {spec.source}").fetchone()[0]
        return n, NEVER if not state.loaded else UNKNOWN
    n, total = cdc.lake_totals(con, spec)
    if not state.loaded:
        return n, NEVER
    if spec.mode == APPEND:
        return n, IN_SYNC if n == state.row_count else DIFFERS
    if state.fingerprint_sum is None or state.fingerprint_version != fingerprint.version():
        return n, DIFFERS if n != state.row_count else UNKNOWN
    return n, IN_SYNC if (n, total) == (state.row_count, state.fingerprint_sum) else DIFFERS


def status(settings: Settings, destination: Destination | None = None, history_limit: int = 50) -> Status:
    with open_lake(settings) as con:
        plan = read_plan(settings, con)
        dest = destination or destinations.create(settings)
        try:
            latency = dest.ping() * 1000
            running = dest.running()
            states = dest.states(plan.order)
            history = dest.history(history_limit)
            last = {}
            for row in reversed(history):
                last[row["tabela_nome"]] = row
            rows = []
            for name in plan.order:
                spec = plan.specs[name]
                st = states[name]
                lake_rows, sync = compare_state(con, spec, st)
                src_max = None
                if spec.incremental_column:
                    src_max = con.execute(f"SELECT CAST(max({ident(spec.incremental_column)}) AS VARCHAR) FROM {spec.source}").fetchone()[0]
                wm = st.watermark.value
                rows.append(TableStatus(name, lake_rows, st.row_count if st.loaded else None, wm, src_max,
                                        _lag(src_max, wm) if wm else None,
                                        last.get(name, {}).get("status"), last.get(name, {}).get("finalizado_em"), sync, spec.problem))
            return Status(dest.describe(), latency, tuple(rows), tuple(history), running)
        finally:
            if destination is None:
                dest.close()

