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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ContextManager, Protocol, runtime_checkable

from ..cdc import ChangeSet
from ..fingerprint import COLUMN as FP
from ..model import APPEND, REPLACE, ForeignKey, TableReport, TableSpec, TableState

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa

Progress = Callable[[str, int], None]        # (table, rows just sent)
ReaderFactory = Callable[[ChangeSet], "pa.RecordBatchReader"]


@dataclass(frozen=True)
class Capabilities:
    """What the engine may ask of a destination."""

    name: str                            # DESTINATION_TYPE, shown in reports
    foreign_keys: bool = False           # it enforces the lake's FKs: the engine calls ensure_foreign_keys(), checks orphans first
    joint_transactions: bool = False     # transaction() makes several calls one (the deletes of an FK cycle)
    append_replaces_tail: bool = False   # it can delete an append-only table's rows from a value on (see cdc)
    strict_json: bool = False            # JSON travels as jsonb: no NaN/Infinity, no \u0000, no repeated keys (checked first)


@dataclass(frozen=True)
class LoadResult:
    inserted: int = 0
    updated: int = 0
    schema_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeleteResult:
    deleted: int = 0
    held_back: int = 0                   # keys kept because rows the run did not remove still reference them


def nothing_held(spec: TableSpec) -> pa.RecordBatchReader:
    """The (key, fingerprint) rows of a table that holds none (or none the run can compare against)."""
    import pyarrow as pa

    return pa.table({k: pa.array([], pa.string()) for k in (*spec.primary_key, FP)}).to_reader()


def state_to_store(cs: ChangeSet, inserted: int, rows_before: int, whole: bool = False) -> TableState:
    """The state a destination records with a change set's rows.

    The engine expected ``cs.inserts`` new keys (from what it believed the
    destination held); when the destination inserted another number, that
    belief was wrong, so the fingerprint sum is stored as unknown and the next
    run compares row by row again instead of trusting it.  ``whole``: the
    destination replaced the table with the rows sent (a full refresh or a
    rewrite of a file-based table): it holds those rows, all of them written."""
    after = cs.state_after
    if cs.spec.mode == APPEND:
        return replace(after, watermark=cs.watermark_after, row_count=inserted if cs.full else rows_before + inserted,
                       columns=cs.spec.columns, loaded=True, fingerprint_sum=None)
    if whole or cs.spec.mode == REPLACE:
        # It holds the rows sent, not the keys its deletes would have removed (they are gone with the old rows).
        total = cs.lake_sum if cs.lake_sum is not None else (after.fingerprint_sum if not cs.deletes else None)
        return replace(after, watermark=cs.watermark_after, row_count=inserted, columns=cs.spec.columns, loaded=True,
                       fingerprint_sum=total if inserted == cs.rows else None)
    return replace(after, watermark=cs.watermark_after, row_count=rows_before + inserted, columns=cs.spec.columns, loaded=True,
                   fingerprint_sum=after.fingerprint_sum if inserted == cs.inserts else None)


@runtime_checkable
class Destination(Protocol):
    """What the engine, ``nw verify``, ``nw status`` and the dashboard call on a destination."""

    capabilities: Capabilities

    def describe(self) -> str:
        """Where the data goes, secrets masked (shown by `nw status`)."""

    def lock(self) -> ContextManager[None]:
        """Exclusive sync lock; raises SyncInProgress when another run holds it."""

    def running(self) -> str | None:
        """The sync holding the lock now, as one line for `nw status` (host, pid, since when), or None."""

    def ping(self) -> float:
        """Round-trip latency in seconds; raises DestinationError when down."""

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        """What the destination remembers of each table (missing → empty state). Creates nothing."""

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        """Create or evolve tables (``specs`` as held: lake columns plus the fingerprint); returns the
        schema changes made per table.  A table it cannot evolve is listed by :meth:`schema_errors`;
        an append-only table that needs all its rows again (a new column) by :meth:`needs_full`."""

    def schema_errors(self) -> dict[str, str]:
        """Tables the last :meth:`prepare` could not make fit, with the one-line reason."""

    def needs_full(self) -> frozenset[str]:
        """Append-only tables whose last :meth:`prepare` requires a full re-send."""

    def fingerprints(self, spec: TableSpec) -> pa.RecordBatchReader:
        """Every row's key columns (as text or typed columns DuckDB can CAST) and fingerprint, as held now."""

    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        """Apply the change sets of one step with their states (:func:`state_to_store`) and ledger rows, atomically."""

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str, revision: str,
               protect: Sequence[ForeignKey] = ()) -> DeleteResult:
        """Delete these keys (sent form, each with the fingerprint held), update the state (count, fingerprint
        sum, ``revision``) and the run's ledger row, atomically.  Keys still referenced through ``protect``
        (foreign keys of other tables) are held back where the destination enforces foreign keys."""

    def ensure_foreign_keys(self) -> Sequence[tuple[str, str]]:
        """Create the lake's foreign keys the destination lacks; returns (table, what was added)."""

    def transaction(self) -> ContextManager[None]:
        """Make the calls inside one transaction (used when ``capabilities.joint_transactions``)."""

    def record(self, run_id: str, reports: Sequence[TableReport]) -> None:
        """Write the run's final ledger row for each table (one row per table per run)."""

    def history(self, limit: int = 200) -> list[dict]:
        """Ledger rows, newest first."""

    def run_history(self, runs: int) -> list[dict]:
        """Every ledger row of the newest ``runs`` runs (as :meth:`history` gives them), newest first (`nw runs`)."""

    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        """Every row of a table, as canonical text or columns DuckDB can CAST to the lake types (for verify)."""

    def close(self) -> None:
        """Release connections and temporary files."""


class BaseDestination:
    """Defaults for the parts of :class:`Destination` a destination may not need."""

    capabilities: Capabilities

    def schema_errors(self) -> dict[str, str]:
        return {}

    def needs_full(self) -> frozenset[str]:
        return frozenset()

    def ensure_foreign_keys(self) -> Sequence[tuple[str, str]]:
        return ()

    def transaction(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        return None
