"""Small typed values that flow through the pipeline.

settings → lake (TableSpec) → plan (Plan) → destination → ledger (SyncReport).
All frozen: a value is made once and passed along, never patched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .sql import ident


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
TRANSFORM = "transform"    # a ledger row's mode for a dbt model built by `nw run` (not a published table)
HELD = "held"              # not published: a quality check failed on it (or on a parent); the destination keeps its last state
STATUSES = (OK, FAILED, SKIPPED, PLANNED, HELD)


LAKE_DEFAULT_SCHEMA = "main"


def published_name(schema: str, table: str) -> str:
    """The name a lake table goes by in the destination, the ledger and ``--tables``:
    the table's own name in DuckDB's ``main`` schema, ``<schema>__<table>`` in any other."""
    return table if schema == LAKE_DEFAULT_SCHEMA else f"{schema}__{table}"


@dataclass(frozen=True)
class TableSpec:
    name: str                                  # published name (see published_name)
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    incremental_column: str | None = None
    mode: str = MERGE
    lake_schema: str = LAKE_DEFAULT_SCHEMA
    lake_table: str | None = None              # its name in the lake when it differs from ``name``
    problem: str | None = None                 # why this table cannot be synced (one line); None when it can
    primary_key_enforced: bool = False         # DuckDB enforces the key (a declared PRIMARY KEY), so no duplicates exist

    @property
    def source(self) -> str:
        """The table in the lake, quoted for DuckDB SQL (in a session whose current database is the lake)."""
        return f"{ident(self.lake_schema)}.{ident(self.lake_table or self.name)}"

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
    """What the destination remembers about one table between runs, written with its rows.

    ``row_count`` and ``fingerprint_sum`` describe the rows it holds (the sum of
    their fingerprints; None when unknown), under ``fingerprint_version``;
    ``revision`` changes with every commit that touches the table, so a local
    copy of what it holds can tell whether it is still current."""

    watermark: Watermark = Watermark()
    row_count: int = 0
    columns: tuple[Column, ...] = ()
    loaded: bool = False
    fingerprint_sum: int | None = None
    fingerprint_version: str | None = None
    revision: str | None = None

    def fingerprints_json(self) -> dict:
        return {"soma": None if self.fingerprint_sum is None else str(self.fingerprint_sum),
                "versao": self.fingerprint_version, "revisao": self.revision}


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
    specs: dict[str, TableSpec]                 # the tables of this run
    full_refresh: frozenset[str] = frozenset()
    model: dict[str, TableSpec] = field(default_factory=dict)   # every table of the lake (foreign keys of tables left out)

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
    notes: tuple[str, ...] = ()          # what else the run did or held back (deferred deletes, a full compare …)

    @property
    def seconds(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0

    @property
    def moved(self) -> int:
        return self.inserted + self.updated + self.deleted

    def to_json(self) -> dict:
        """Plain JSON values under stable keys (``nw sync --json``); in a dry run the counts are what a sync would send."""
        return {"table": self.table, "mode": self.mode, "status": self.status, "inserted": self.inserted, "updated": self.updated,
                "deleted": self.deleted, "seconds": round(self.seconds, 3), "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at), "watermark_before": self.watermark_before.to_json(),
                "watermark_after": self.watermark_after.to_json(), "error": self.error, "schema_changes": list(self.schema_changes),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class SyncReport:
    run_id: str
    destination: str
    tables: tuple[TableReport, ...] = field(default_factory=tuple)
    dry_run: bool = False
    ledger_error: str | None = None     # the final statuses could not be written to controle_cargas
    checks: tuple = ()                  # the quality checks run before publishing (nwlib.quality.CheckResult)
    steps: tuple[TableReport, ...] = ()  # earlier steps of the same run (nw run: dbt's models), recorded with it

    @property
    def ok(self) -> bool:
        """Every table made it: none failed, none was held back by a quality check, no earlier step (dbt) failed,
        and the ledger took the run."""
        return (all(t.status not in (FAILED, HELD) for t in self.tables) and all(t.status != FAILED for t in self.steps)
                and self.ledger_error is None)

    @property
    def held(self) -> tuple[TableReport, ...]:
        return tuple(t for t in self.tables if t.status == HELD)

    @property
    def failed(self) -> tuple[TableReport, ...]:
        return tuple(t for t in self.tables if t.status == FAILED)

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "destination": self.destination, "dry_run": self.dry_run, "ok": self.ok,
                "ledger_error": self.ledger_error, "tables": [t.to_json() for t in self.tables],
                "checks": [c.to_json() for c in self.checks], "steps": [t.to_json() for t in self.steps]}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()
