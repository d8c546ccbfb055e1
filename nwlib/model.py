"""Small typed values that flow through the pipeline.

settings → lake (TableSpec) → plan (Plan) → destination → ledger (SyncReport).
All frozen: a value is made once and passed along, never patched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str
    type: str          # DuckDB type as DuckDB prints it, e.g. DECIMAL(18,2)
    nullable: bool = True


@dataclass(frozen=True)
class ForeignKey:
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    @property
    def is_self_reference(self) -> bool:
        return self.table == self.ref_table


# How a table is loaded.
MERGE = "merge"            # upsert by primary key + key reconciliation for deletes
APPEND = "append"          # no key: only rows past the watermark are appended
REPLACE = "replace"        # no key: the whole table is replaced each run
MODES = (MERGE, APPEND, REPLACE)

# What happened to a table in a run (TableReport.status, controle_cargas.status).
OK = "ok"                  # its rows (and deletes) are durable
FAILED = "failed"          # nothing of this run's step for it is kept; `erro` says why
SKIPPED = "skipped"        # not attempted: a parent table failed
PLANNED = "planned"        # dry run: what a sync would send
STATUSES = (OK, FAILED, SKIPPED, PLANNED)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    incremental_column: str | None = None
    mode: str = MERGE

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def non_key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.name not in self.primary_key)


@dataclass(frozen=True)
class Watermark:
    """Cursor of the last row loaded: (incremental value, primary key).

    ``value`` is the incremental column's value rendered as ISO text (or a number
    as text); ``key`` the primary key of the last row at that value.
    """

    value: str | None = None
    key: tuple[Any, ...] = ()

    def to_json(self) -> dict:
        return {"value": self.value, "key": list(self.key)}

    @classmethod
    def from_json(cls, data: dict | None) -> Watermark:
        if not data:
            return cls()
        return cls(value=data.get("value"), key=tuple(data.get("key") or ()))


@dataclass(frozen=True)
class TableState:
    """What the destination remembers about one table between runs."""

    watermark: Watermark = Watermark()
    row_count: int = 0
    columns: tuple[Column, ...] = ()
    loaded: bool = False


@dataclass(frozen=True)
class Step:
    """One unit of loading: a table, or a group of tables in an FK cycle."""

    tables: tuple[str, ...]

    @property
    def is_cycle(self) -> bool:
        return len(self.tables) > 1


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    specs: dict[str, TableSpec]
    full_refresh: frozenset[str] = frozenset()

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(t for s in self.steps for t in s.tables)


@dataclass(frozen=True)
class TableReport:
    table: str
    mode: str
    status: str                       # one of STATUSES
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    watermark_before: Watermark = Watermark()
    watermark_after: Watermark = Watermark()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    schema_changes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0

    @property
    def moved(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class SyncReport:
    run_id: str
    destination: str
    tables: tuple[TableReport, ...] = field(default_factory=tuple)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(t.status != FAILED for t in self.tables)

    @property
    def failed(self) -> tuple[TableReport, ...]:
        return tuple(t for t in self.tables if t.status == FAILED)
