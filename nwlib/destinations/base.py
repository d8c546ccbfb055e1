"""The one interface every destination implements.

The engine owns the order, the change sets, retries and reporting; a
destination owns how rows, watermarks and the ledger are made durable
*together*.  Limits are data (:class:`Capabilities`), not if-branches.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ContextManager, Protocol

import pyarrow as pa

from ..cdc import ChangeSet
from ..model import TableSpec, TableState

Progress = Callable[[str, int], None]        # (table, rows just sent)
ReaderFactory = Callable[[ChangeSet], pa.RecordBatchReader]


@dataclass(frozen=True)
class Capabilities:
    name: str
    max_identifier_length: int | None = None
    transactional: bool = True
    merge_strategies: tuple[str, ...] = ("merge", "append", "replace")
    foreign_keys: bool = False
    state_location: str = ""
    append_replaces_tail: bool = False   # can delete an append-only table's rows from a value on (see cdc)


@dataclass(frozen=True)
class LoadResult:
    inserted: int = 0
    updated: int = 0
    schema_changes: tuple[str, ...] = ()


class Destination(Protocol):
    """What the engine, ``nw verify`` and ``nw status`` call.

    Optional: ``ensure_foreign_keys()`` (create the lake's FKs),
    ``note_schema_changes(run_id, table, notes)`` (add notes to the ledger) and
    ``transaction()`` (a context manager making the calls inside it one
    transaction: the deletes of an FK cycle); the engine calls them only when present."""

    capabilities: Capabilities

    def describe(self) -> str:
        """Where the data goes, secrets masked (shown by `nw status`)."""

    def lock(self) -> ContextManager[None]:
        """Exclusive sync lock; raises SyncInProgress when another run holds it."""

    def ping(self) -> float:
        """Round-trip latency in seconds; raises DestinationError when down."""

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        """What the destination remembers of each table (missing → empty state)."""

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        """Create or evolve tables; returns the schema changes made per table.

        Tables that need all their rows re-sent (a new column) are reported by
        :meth:`needs_full`."""

    def needs_full(self) -> frozenset[str]:
        """Tables whose last :meth:`prepare` requires a full re-send."""

    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        """Apply the change sets of one step, their watermarks and ledger rows, atomically."""

    def row_count(self, table: str) -> int:
        """The table's rows, counted now (the engine checks its bookkeeping with it)."""

    def keys(self, spec: TableSpec) -> pa.RecordBatchReader:
        """The destination's primary keys of a table, as text or typed columns (the engine casts them)."""

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str) -> int:
        """Delete these keys (lake-typed), update the state and the run's ledger row, atomically."""

    def set_row_count(self, table: str, n: int) -> None:
        """Record the table's row count after reconciliation (a no-op where the count is derived)."""

    def record_failure(self, run_id: str, table: str, mode: str, error: str) -> None:
        """Append a failed row to the ledger (best effort)."""

    def history(self, limit: int = 200) -> list[dict]:
        """Ledger rows, newest first."""

    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        """Every row of a table, as canonical text or columns DuckDB can CAST to the lake types (for verify)."""

    def close(self) -> None:
        ...
