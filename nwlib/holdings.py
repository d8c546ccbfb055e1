"""What a destination holds of each keyed table — (key as sent, fingerprint) per row — kept beside the lake.

The truth is in the destination: every destination table carries each row's
fingerprint (:mod:`nwlib.fingerprint`), and its state carries a ``revision``
that changes with every commit.  This is a local copy in a small DuckDB file
under ``DESTINATION_PATH/.nw/`` (one per destination), used to compare the lake
with the destination without reading the destination: it is used only while
its recorded revision equals the destination's, and read again from the
destination (:meth:`Holdings.load`) when it is missing, stale (another machine
synced, a run died between a commit and this update) or distrusted
(``--full-refresh``).  Losing it costs one read of keys and fingerprints.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from . import fingerprint
from .errors import reraise_interrupt
from .lake.files import PAIRS_MAX_ROWS, newest_write
from .model import TableSpec, TableState
from .readback import dest_expr
from .sql import ident
from .typemap import pg_type

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa

log = logging.getLogger("nwlib.holdings")

ALIAS = "nw_holdings"
META = "nw_meta"
FP = fingerprint.COLUMN
# A DELETE keeps, for every 2,048-row vector it touches, a bitmap of the rows it removed: about 8 bytes a row of the
# table when the change is spread over it (1 % of the rows is), pinned in DuckDB's memory until the checkpoint and
# loaded back by every later read.  A copy of more rows than this is written again instead (the rows that stay,
# mostly in their order, then the new ones): 0.5 s for 10M rows here against 0.2 s, in bounded memory.  The same
# threshold as DUCKDB_MEMORY_LIMIT=auto's, which leaves a larger table no room for a DELETE's bookkeeping.
REWRITE_ROWS = PAIRS_MAX_ROWS


def holdings_path(destination_path: Path, destination_id: str) -> Path:
    digest = hashlib.sha256(destination_id.encode()).hexdigest()[:16]
    return Path(destination_path) / ".nw" / f"holdings-{digest}.duckdb"


def last_written(destination_path: Path) -> float | None:
    """When a local copy under ``destination_path`` was last written (seconds since the epoch), None if none is."""
    return newest_write((Path(destination_path) / ".nw").glob("holdings-*.duckdb*"))


def key_type(spec: TableSpec, column: str) -> str:
    """The DuckDB type a key column has once sent (TIMESTAMP_NS → TIMESTAMP, UUID → VARCHAR …)."""
    c = spec.column(column)
    return pg_type(c.type).send or c.type


def sent_keys(spec: TableSpec, alias: str = "") -> str:
    """The lake's key columns as sent, named as themselves."""
    from .typemap import send_expr

    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{send_expr(prefix + ident(k), spec.column(k).type)} AS {ident(k)}" for k in spec.primary_key)


class Holdings:
    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        """Attach the file at ``path`` to ``con`` (the run's lake session); an unreadable file is started again."""
        self.con = con
        self.path = path
        self.attached = False
        self._forgotten: set[str] = set()       # tables whose copy missed a change this run: they take no more
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {ALIAS}")
                con.execute(f"CREATE TABLE IF NOT EXISTS {ALIAS}.main.{META} (tabela VARCHAR PRIMARY KEY, revisao VARCHAR, versao VARCHAR)")
                self.attached = True
                break
            except duckdb.Error as exc:
                reraise_interrupt(exc)
                with contextlib.suppress(duckdb.Error):
                    con.execute(f"DETACH {ALIAS}")
                if attempt == 0 and path.exists():
                    path.unlink()  # an unreadable copy: start it again
                else:
                    break

    def table(self, spec: TableSpec) -> str:
        return f"{ALIAS}.main.{ident(spec.name)}"

    def current(self, spec: TableSpec, state: TableState) -> bool:
        """Is the local copy exactly what the destination holds now (same revision and fingerprint version)?"""
        if not self.attached or not state.revision:
            return False
        row = self.con.execute(f"SELECT revisao, versao FROM {ALIAS}.main.{META} WHERE tabela = ?", [spec.name]).fetchone()
        return row is not None and row[0] == state.revision and row[1] == state.fingerprint_version

    def load(self, spec: TableSpec, rows: pa.RecordBatchReader, state: TableState) -> None:
        """Replace the copy with the destination's own (keys, fingerprint) rows, read back as text or typed."""
        self._require()
        self.con.register("nw_read_back", rows)
        try:
            keys = ", ".join(f"CAST({dest_expr(spec.column(k))} AS {key_type(spec, k)}) AS {ident(k)}" for k in spec.primary_key)
            self.con.execute(f"CREATE OR REPLACE TABLE {self.table(spec)} AS SELECT {keys}, CAST({ident(FP)} AS BIGINT) AS {ident(FP)} "
                             "FROM nw_read_back")
        finally:
            self.con.unregister("nw_read_back")
        self._forgotten.discard(spec.name)
        self._stamp(spec, state.revision, state.fingerprint_version)

    def empty(self, spec: TableSpec, state: TableState) -> None:
        """The destination holds nothing of this table."""
        self._require()
        cols = ", ".join(f"{ident(k)} {key_type(spec, k)}" for k in spec.primary_key)
        self.con.execute(f"CREATE OR REPLACE TABLE {self.table(spec)} ({cols}, {ident(FP)} BIGINT)")
        self._forgotten.discard(spec.name)
        self._stamp(spec, state.revision, state.fingerprint_version)

    def totals(self, spec: TableSpec) -> tuple[int, int, int]:
        """(rows, sum of fingerprints, rows whose fingerprint is unknown) of the copy."""
        n, total, unknown = self.con.execute(
            f"SELECT count(*), coalesce(sum({ident(FP)}), 0), count(*) FILTER (WHERE {ident(FP)} IS NULL) FROM {self.table(spec)}").fetchone()
        return int(n), int(total), int(unknown)

    def _follow(self, spec: TableSpec, change: Callable[[], None]) -> None:
        """``change`` to the copy after the destination committed, unless the copy is forgotten (it missed a change
        of this run: it would be stamped current without it).  Should the change fail (out of memory, a full
        disk), the copy is forgotten and the next run reads the destination's fingerprints again.  The run itself
        succeeded, so it goes on, with one warning."""
        if spec.name in self._forgotten:
            return
        try:
            change()
        except duckdb.Error as exc:
            reraise_interrupt(exc)
            log.warning("table %r: the local copy of what the destination holds was not updated (%s); the next sync reads "
                        "the destination's keys and fingerprints again", spec.name, str(exc).splitlines()[0])
            with contextlib.suppress(duckdb.Error):
                self.forget(spec)

    def upsert(self, spec: TableSpec, rows: str, revision: str | None, version: str) -> None:
        """After a commit: the rows of ``rows`` (a relation of key columns + fingerprint) replace theirs."""
        self._follow(spec, lambda: self._upsert(spec, rows, revision, version))

    def _upsert(self, spec: TableSpec, rows: str, revision: str | None, version: str) -> None:
        self._require()
        match = " AND ".join(f"h.{ident(k)} = u.{ident(k)}" for k in spec.primary_key)
        cols = ", ".join(ident(c) for c in (*spec.primary_key, FP))
        if self._large(spec):
            keys = ", ".join(f"h.{ident(k)}" for k in spec.primary_key)
            self.con.execute(f"CREATE OR REPLACE TABLE {self.table(spec)} AS SELECT {keys}, coalesce(u.{ident(FP)}, h.{ident(FP)}) AS {ident(FP)} "
                             f"FROM {self.table(spec)} h LEFT JOIN {rows} u ON {match} "
                             f"UNION ALL SELECT {cols} FROM {rows} u ANTI JOIN {self.table(spec)} h ON {match}")
        else:
            self.con.execute(f"DELETE FROM {self.table(spec)} h WHERE EXISTS (SELECT 1 FROM {rows} u WHERE {match})")
            self.con.execute(f"INSERT INTO {self.table(spec)} SELECT {cols} FROM {rows}")
        self._stamp(spec, revision, version)

    def replace_with(self, spec: TableSpec, rows: str, revision: str | None, version: str) -> None:
        """After a commit that sent every lake row: the copy becomes ``rows`` (a query of key columns + fingerprint),
        whatever it held before."""
        def replace() -> None:
            self._require()
            self.con.execute(f"CREATE OR REPLACE TABLE {self.table(spec)} AS {rows}")
            self._stamp(spec, revision, version)

        self._forgotten.discard(spec.name)
        self._follow(spec, replace)

    def remove(self, spec: TableSpec, keys: str, revision: str | None, version: str) -> None:
        """After a commit: the keys of ``keys`` are gone."""
        self._follow(spec, lambda: self._remove(spec, keys, revision, version))

    def _remove(self, spec: TableSpec, keys: str, revision: str | None, version: str) -> None:
        self._require()
        match = " AND ".join(f"h.{ident(k)} = g.{ident(k)}" for k in spec.primary_key)
        if self._large(spec):
            self.con.execute(f"CREATE OR REPLACE TABLE {self.table(spec)} AS SELECT h.* FROM {self.table(spec)} h ANTI JOIN {keys} g ON {match}")
        else:
            self.con.execute(f"DELETE FROM {self.table(spec)} h WHERE EXISTS (SELECT 1 FROM {keys} g WHERE {match})")
        self._stamp(spec, revision, version)

    def _large(self, spec: TableSpec) -> bool:
        """Is the copy of ``spec`` one a change is written into by writing it again (REWRITE_ROWS)?"""
        return self.con.execute(f"SELECT count(*) FROM {self.table(spec)}").fetchone()[0] > REWRITE_ROWS

    def stamp(self, spec: TableSpec, revision: str | None, version: str | None) -> None:
        """After a commit that changed nothing the copy holds: it is current at the destination's new revision."""
        self._follow(spec, lambda: self._stamp(spec, revision, version))

    def _stamp(self, spec: TableSpec, revision: str | None, version: str | None) -> None:
        self.con.execute(f"INSERT OR REPLACE INTO {ALIAS}.main.{META} VALUES (?, ?, ?)", [spec.name, revision, version])
        self.con.execute(f"CHECKPOINT {ALIAS}")   # written blocks stay pinned in memory until a checkpoint

    def forget(self, spec: TableSpec) -> None:
        """Distrust the copy: the next use reads the destination again, and until then (this run) it takes no change
        but a whole new copy (:meth:`load`, :meth:`empty`, :meth:`replace_with`)."""
        self._forgotten.add(spec.name)
        if self.attached:
            self.con.execute(f"DELETE FROM {ALIAS}.main.{META} WHERE tabela = ?", [spec.name])

    def _require(self) -> None:
        if not self.attached:
            # A copy that cannot be written (read-only folder, full disk): keep it in memory for this run.
            self.con.execute(f"ATTACH ':memory:' AS {ALIAS}")
            self.con.execute(f"CREATE TABLE {ALIAS}.main.{META} (tabela VARCHAR PRIMARY KEY, revisao VARCHAR, versao VARCHAR)")
            self.attached = True

    def close(self) -> None:
        if self.attached:
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"DETACH {ALIAS}")
            self.attached = False
