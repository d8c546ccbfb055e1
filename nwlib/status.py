"""``nw status``: per table, rows on both sides, whether they differ, the watermark and lag, the last run.

Whether a table differs is answered from the lake and the destination's
recorded state alone (no read of the destination's rows): the lake's row count
and fingerprint sum against those the destination recorded with its rows
(:mod:`nwlib.cdc`).  ``nw verify`` compares every value.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import cdc, destinations, evolution, fingerprint
from .destinations.base import Destination
from .errors import LastRunFailed, TablesBehind, split_hint
from .lake import open_lake
from .model import APPEND, FAILED, OK, TableSpec, TableState
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
    last_error: str | None = None       # controle_cargas.erro of its last run

    @property
    def healthy(self) -> bool:
        return self.sync == IN_SYNC and self.last_status in (None, OK) and not self.problem

    @property
    def behind(self) -> bool:
        """The destination is not known to hold the lake's rows: ``sync`` is DIFFERS (the lake's row count or
        fingerprint sum is not the one the destination recorded with its rows: rows were inserted, updated or
        deleted in the lake since), NEVER (no sync has loaded it) or UNKNOWN (nothing recorded to compare with,
        e.g. after a change of fingerprint function).  A ``nw sync`` brings each of them up to date."""
        return self.sync != IN_SYNC

    @property
    def failed(self) -> bool:
        """Its last run (the newest controle_cargas row for it) has status ``failed``."""
        return self.last_status == FAILED

    def to_json(self) -> dict:
        return {"table": self.table, "lake_rows": self.lake_rows, "dest_rows": self.dest_rows, "sync": self.sync,
                "behind": self.behind, "watermark": self.watermark, "source_max": self.source_max, "lag_seconds": self.lag_seconds,
                "last_status": self.last_status, "last_run": self.last_run.isoformat() if isinstance(self.last_run, datetime) else self.last_run,
                "last_error": self.last_error, "problem": self.problem}


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

    @property
    def behind(self) -> tuple[TableStatus, ...]:
        return tuple(t for t in self.tables if t.behind)

    @property
    def failed(self) -> tuple[TableStatus, ...]:
        return tuple(t for t in self.tables if t.failed)

    def to_json(self) -> dict:
        return {"destination": self.destination, "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
                "running": self.running, "in_sync": not self.behind and not self.failed,
                "behind": [t.table for t in self.behind], "failed": [t.table for t in self.failed],
                "tables": [t.to_json() for t in self.tables]}


def raise_for_status(st: Status) -> Status:
    """``nw status``'s verdict: :class:`LastRunFailed` when a table failed in its last run, else
    :class:`TablesBehind` when a table is behind the lake (:attr:`TableStatus.behind`), else ``st``."""
    behind = [t for t in st.behind if not t.failed]
    if st.failed:
        first = st.failed[0]
        more = f" (and {len(st.failed) - 1} more)" if len(st.failed) > 1 else ""
        cause = f": {split_hint(first.last_error)[0]}" if first.last_error else ""
        also = f"; {len(behind)} other table(s) behind the lake" if behind else ""
        raise LastRunFailed(f"table {first.table!r} failed in its last run{more}{cause}{also}",
                            "see `nw runs` and controle_cargas; fix the cause and rerun `nw sync`")
    if behind:
        shown = ", ".join(f"{t.table} ({t.sync})" for t in behind[:5]) + (f" and {len(behind) - 5} more" if len(behind) > 5 else "")
        raise TablesBehind(f"{len(behind)} table(s) behind the lake: {shown}", "run `nw sync`")
    return st


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
            # Enough rows to find every table's last run after a few runs of some tables only (--tables).
            history = dest.history(max(history_limit, 4 * len(plan.order)))
            last = {}
            for row in reversed(history):
                last[row["tabela_nome"]] = row
            rows = []
            for name in plan.order:
                st = states[name]
                spec = evolution.as_sent(plan.specs[name], settings.schema_policy(name), st.columns)
                lake_rows, sync = compare_state(con, spec, st)
                src_max = None
                if spec.incremental_column:
                    src_max = con.execute(f"SELECT CAST(max({ident(spec.incremental_column)}) AS VARCHAR) FROM {spec.source}").fetchone()[0]
                wm = st.watermark.value
                rows.append(TableStatus(name, lake_rows, st.row_count if st.loaded else None, wm, src_max,
                                        _lag(src_max, wm) if wm else None,
                                        last.get(name, {}).get("status"), last.get(name, {}).get("finalizado_em"), sync, spec.problem,
                                        last.get(name, {}).get("erro")))
            return Status(dest.describe(), latency, tuple(rows), tuple(history), running)
        finally:
            if destination is None:
                dest.close()

