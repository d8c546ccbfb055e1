"""The one interface every destination implements.

The engine owns the order, the change sets, retries and reporting; a
destination owns how rows, watermarks and the ledger are made durable
*together*.  :class:`Destination` declares every method the engine, ``nw
verify``, ``nw status`` and the dashboard call; :class:`BaseDestination` gives
the ones a destination may lack a harmless default.  What a destination can do
is data (:class:`Capabilities`), read by the engine: never ``hasattr``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ContextManager, Protocol, runtime_checkable

import pyarrow as pa

from ..cdc import ChangeSet
from ..model import FAILED, SKIPPED, TableSpec, TableState

Progress = Callable[[str, int], None]        # (table, rows just sent)
ReaderFactory = Callable[[ChangeSet], pa.RecordBatchReader]


@dataclass(frozen=True)
class Capabilities:
    """What the engine may ask of a destination."""

    name: str                            # DESTINATION_TYPE, shown in reports
    foreign_keys: bool = False           # it enforces the lake's FKs: the engine calls ensure_foreign_keys()
    joint_transactions: bool = False     # transaction() makes several calls one (the deletes of an FK cycle)
    append_replaces_tail: bool = False   # it can delete an append-only table's rows from a value on (see cdc)


@dataclass(frozen=True)
class LoadResult:
    inserted: int = 0
    updated: int = 0
    schema_changes: tuple[str, ...] = ()


@runtime_checkable
class Destination(Protocol):
    """What the engine, ``nw verify``, ``nw status`` and the dashboard call on a destination."""

    capabilities: Capabilities

    def describe(self) -> str:
        """Where the data goes, secrets masked (shown by `nw status`)."""

    def lock(self) -> ContextManager[None]:
        """Exclusive sync lock; raises SyncInProgress when another run holds it."""

    def ping(self) -> float:
        """Round-trip latency in seconds; raises DestinationError when down."""

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        """What the destination remembers of each table (missing → empty state). Creates nothing."""

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        """Create or evolve tables; returns the schema changes made per table.

        Tables that need all their rows re-sent (a new column) are reported by
        :meth:`needs_full`."""

    def needs_full(self) -> frozenset[str]:
        """Tables whose last :meth:`prepare` requires a full re-send."""

    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        """Apply the change sets of one step, their watermarks and ledger rows, atomically."""

    def ensure_foreign_keys(self) -> Sequence[tuple[str, str]]:
        """Create the lake's foreign keys the destination lacks; returns (table, what was added)."""

    def note_schema_changes(self, run_id: str, table: str, notes: Sequence[str]) -> None:
        """Add schema-change notes to the run's ledger row for ``table``."""

    def transaction(self) -> ContextManager[None]:
        """Make the calls inside one transaction (used when ``capabilities.joint_transactions``)."""

    def row_count(self, table: str) -> int:
        """The table's rows, counted now (the engine checks its bookkeeping with it)."""

    def keys(self, spec: TableSpec) -> pa.RecordBatchReader:
        """The destination's primary keys of a table, as text or typed columns (the engine casts them)."""

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str) -> int:
        """Delete these keys (lake-typed), update the state and the run's ledger row, atomically."""

    def set_row_count(self, table: str, n: int) -> None:
        """Record the table's row count after reconciliation (a no-op where the count is derived)."""

    def record_failure(self, run_id: str, table: str, mode: str, error: str, status: str = FAILED) -> None:
        """Append a failed (or skipped) row to the ledger (best effort: never raises)."""

    def record_skipped(self, run_id: str, table: str, mode: str, reason: str) -> None:
        """A ledger row for a table the run did not attempt because a parent failed."""

    def history(self, limit: int = 200) -> list[dict]:
        """Ledger rows, newest first."""

    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        """Every row of a table, as canonical text or columns DuckDB can CAST to the lake types (for verify)."""

    def close(self) -> None:
        """Release connections and temporary files."""


class BaseDestination:
    """Defaults for the parts of :class:`Destination` a destination may not need."""

    capabilities: Capabilities

    def ensure_foreign_keys(self) -> Sequence[tuple[str, str]]:
        return ()

    def note_schema_changes(self, run_id: str, table: str, notes: Sequence[str]) -> None:
        return None

    def transaction(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def set_row_count(self, table: str, n: int) -> None:
        return None

    def record_skipped(self, run_id: str, table: str, mode: str, reason: str) -> None:
        # Every destination writes its own record_failure (see Destination); a skipped row is one with another status.
        self.record_failure(run_id, table, mode, reason, status=SKIPPED)  # type: ignore[attr-defined]

    def close(self) -> None:
        return None
