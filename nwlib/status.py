"""``nw status``: per table, the watermark, the last run, rows and lag."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import destinations, lake
from .destinations.base import Destination
from .lake import open_lake
from .plan import read_plan
from .settings import Settings
from .sql import ident


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


@dataclass(frozen=True)
class Status:
    destination: str
    latency_ms: float | None
    tables: tuple[TableStatus, ...]
    history: tuple[dict, ...]


def _lag(source_max, watermark) -> float | None:
    try:
        a, b = datetime.fromisoformat(str(source_max)), datetime.fromisoformat(str(watermark))
        return max(0.0, (a - b).total_seconds())
    except (TypeError, ValueError):
        return None


def status(settings: Settings, destination: Destination | None = None, history_limit: int = 50) -> Status:
    with open_lake(settings) as con:
        plan = read_plan(settings, con)
        dest = destination or destinations.create(settings)
        try:
            latency = dest.ping() * 1000
            states = dest.states(plan.order)
            history = dest.history(history_limit)
            last = {}
            for row in reversed(history):
                last[row["tabela_nome"]] = row
            rows = []
            for name in plan.order:
                spec = plan.specs[name]
                src_max = None
                if spec.incremental_column:
                    src_max = con.execute(f"SELECT CAST(max({ident(spec.incremental_column)}) AS VARCHAR) FROM {ident(name)}").fetchone()[0]
                st = states[name]
                wm = st.watermark.value
                rows.append(TableStatus(name, lake.row_count(con, name), st.row_count if st.loaded else None, wm, src_max,
                                        _lag(src_max, wm) if wm else None,
                                        last.get(name, {}).get("status"), last.get(name, {}).get("finalizado_em")))
            return Status(dest.describe(), latency, tuple(rows), tuple(history))
        finally:
            if destination is None:
                dest.close()
