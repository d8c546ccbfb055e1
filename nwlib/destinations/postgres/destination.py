"""PostgreSQL / Supabase destination.

Per step (a table, or the tables of an FK cycle) one transaction holds:
binary COPY of the change set into a temporary staging table, one set-based
``INSERT … ON CONFLICT DO UPDATE … WHERE IS DISTINCT FROM`` merge, the new
watermark in ``nw_estado`` and the run's ``controle_cargas`` row.  A table
that is empty in the destination skips staging: its rows are copied straight
in.  Foreign keys are ``DEFERRABLE`` and deferred inside our transactions.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ...cdc import ChangeSet
from ...connstr import display, parse_url
from ...errors import SchemaChangeError
from ...model import APPEND, ForeignKey, TableReport, TableSpec, TableState
from ...records import now
from ...sql import qualified
from ...settings import Settings
from ..base import BaseDestination, Capabilities, DeleteResult, LoadResult, Progress, ReaderFactory, state_to_store
from .bookkeeping import Bookkeeping
from .connection import Session, classify, local_settings, psycopg_module
from .copy import Copier
from .embedded import embedded_url
from .lock import LeaseLock
from .readback import Reader
from .scanner import Scanner
from .schema import Tables

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa

CAPABILITIES = Capabilities(name="POSTGRES", foreign_keys=True, joint_transactions=True, append_replaces_tail=True, strict_json=True)


class PostgresDestination(BaseDestination):
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings):
        self.settings = settings
        self.schema = settings.db_schema
        self.params = parse_url(embedded_url(settings)) if settings.uses_embedded_postgres else settings.postgres_params()
        self.mode = settings.connection_mode(self.params)
        self.session = Session(self.params, settings)
        self.books = Bookkeeping(self.session, self.schema)
        self.tables = Tables(self.session, self.schema, self.books)
        self.copier = Copier(self.session, self.schema)
        self.scanner = Scanner(self.params, settings)
        self.reader = Reader(self.session, self.schema, self.scanner)
        self._lock = LeaseLock(self.session, settings, self.schema, Session(self.params, settings, "nwlib-lock"))
        self._needs_full: set[str] = set()
        self._schema_errors: dict[str, str] = {}
        self._fk_specs: list[TableSpec] = []

    # --- connection -----------------------------------------------------------------
    def describe(self) -> str:
        kind = "embedded PostgreSQL" if self.settings.uses_embedded_postgres else "PostgreSQL"
        return f"{kind} {display(self.params)} schema {self.schema} ({self.mode})"

    @property
    def conn(self):
        return self.session.conn

    def close(self) -> None:
        self.session.reset()
        self.scanner.close()

    def ping(self) -> float:
        with self.session.errors("ping"):
            t = time.perf_counter()
            self.conn.execute("SELECT 1").fetchone()
            return time.perf_counter() - t

    def lock(self):
        self.books.recheck()          # a run checks the state tables once (a kept destination object, as --watch keeps, again)
        return self._lock.hold()

    def running(self) -> str | None:
        with self.session.errors("read lock"):
            return self._lock.running(self.conn)

    @contextlib.contextmanager
    def _writing(self, where: str) -> Iterator[None]:
        """One transaction under the lock (its row locked and checked first, its lease renewed last),
        FKs deferred; driver errors as one line."""
        with self.session.errors(where), self.conn.transaction():
            self._lock.confirm(self.conn)
            local_settings(self.conn)
            self.conn.execute("SET CONSTRAINTS ALL DEFERRED")
            yield
            self._lock.extend(self.conn)

    # --- state ----------------------------------------------------------------------
    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        with self.session.errors("read state"):
            return self.books.read_states(tables)

    # --- schema ---------------------------------------------------------------------
    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str] = frozenset()) -> dict[str, tuple[str, ...]]:
        self._needs_full = set()
        self._schema_errors = {}
        changes: dict[str, tuple[str, ...]] = {}
        with self._writing("prepare tables"):
            self.books.ensure()
            states = self.books.read_states([s.name for s in specs])
            for spec in specs:
                self.tables.check_identifiers(spec)
                try:
                    with self.conn.transaction():      # a savepoint: what PostgreSQL refuses of one table is undone alone
                        notes, resend = self.tables.evolve(spec, spec.name in full_refresh, {c.name: c.type for c in states[spec.name].columns})
                except SchemaChangeError as exc:
                    # Stops this table only; independent tables go on.
                    self._schema_errors[spec.name] = str(exc)
                    continue
                except psycopg_module().Error as exc:
                    if not _refuses_the_table(exc) or self.conn.broken:
                        raise       # the connection, the server or the user's rights: the whole step, as ever
                    self._schema_errors[spec.name] = str(classify(exc, self.settings, f"create or change table {spec.name}"))
                    continue
                changes[spec.name] = tuple(notes)
                if resend and spec.mode == APPEND:
                    self._needs_full.add(spec.name)
            self._fk_specs = list(specs)
        return changes

    def schema_errors(self) -> dict[str, str]:
        return dict(self._schema_errors)

    def needs_full(self) -> frozenset[str]:
        return frozenset(self._needs_full)

    def ensure_foreign_keys(self) -> list[tuple[str, str]]:
        with self._writing("create foreign keys"):
            return self.tables.ensure_foreign_keys(self._fk_specs)

    def fingerprints(self, spec: TableSpec) -> pa.RecordBatchReader:
        with self.session.errors(f"read {spec.name}"):
            present = self.tables.columns(spec.name)
            if present is not None and self.copier.is_empty(qualified(self.schema, spec.name)):
                present = None      # nothing to read (a table this run created): no reader to open
        return self.reader.fingerprints(spec, present)

    # --- loading --------------------------------------------------------------------
    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        results = {}
        with self._writing(f"load {', '.join(c.spec.name for c in changes)}"):
            for cs in changes:
                started = now()
                before = self.books.row_count(cs.spec.name)
                ins, upd = self.copier.apply(cs, read, progress)
                self.books.save_state(cs.spec, state_to_store(cs, ins, before), run_id)
                self.books.record_load(run_id, cs, started, ins, upd)
                results[cs.spec.name] = LoadResult(ins, upd)
        return results

    # --- deletes --------------------------------------------------------------------
    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str, revision: str,
               protect: Sequence[ForeignKey] = ()) -> DeleteResult:
        with self._writing(f"delete from {spec.name}"):
            n, held, total = self.copier.delete(spec, keys, protect)
            self.books.remove_rows(spec.name, n, total, revision)
            self.books.record_deletes(run_id, spec.name, n)
            return DeleteResult(n, held)

    @contextlib.contextmanager
    def transaction(self):
        """One transaction around several calls (the deletes of an FK cycle); theirs become savepoints."""
        with self._writing("commit"):
            yield

    # --- reading back and the ledger --------------------------------------------------
    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        return self.reader.scan(spec)

    def record(self, run_id: str, reports: Sequence[TableReport]) -> None:
        with self.session.errors("ledger"):
            self.books.ensure()           # once per destination object: prepare() made them already
            with self.conn.transaction():
                self.books.record(run_id, reports, self.settings.redact)

    def history(self, limit: int = 200) -> list[dict]:
        with self.session.errors("read history"):
            self.books.ensure()
            return self.books.history(limit)

    def run_history(self, runs: int) -> list[dict]:
        with self.session.errors("read history"):
            self.books.ensure()
            return self.books.run_history(runs)


# What PostgreSQL says of one table's definition (its limits, a feature it lacks, a value or name it refuses) and
# not of the run: SQLSTATE classes 54, 0A, 22, 23 and 42 but 42501 (permission denied, which every table would meet).
_TABLE_REFUSALS = ("54", "0A", "22", "23", "42")


def _refuses_the_table(exc: Exception) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _TABLE_REFUSALS and state != "42501"
