"""Change sets: which rows a run sends, which keys it deletes, and what the destination holds after.

The contract every destination relies on:

* **Keyed tables (mode ``merge``) are compared, not trusted.**  Every row has a
  fingerprint (:mod:`nwlib.fingerprint`: a hash of all its columns as sent,
  key included) and every destination row carries the fingerprint it was
  written with.  A run compares the lake's (key, fingerprint) pairs with the
  destination's: a lake row whose fingerprint the destination lacks is sent
  (a new key is an insert, a known key an update); a destination key the lake
  lacks is deleted.  Timestamps, row counts and whether the table has an
  incremental column at all play no part: rows written late, stamped equal,
  older or NULL, never stamped, or a lake rebuilt from scratch are all exact.
* **What the destination holds** is read from a local copy
  (:mod:`nwlib.holdings`) while its revision matches the destination's state,
  else from the destination itself (its keys and fingerprints, once), so a
  fresh machine with only the lake and the destination is incremental too.
* **Nothing changed** is known without that comparison: the destination's
  state keeps the row count and the sum of the fingerprints it holds, written
  in the same transaction as the rows; when the lake's count and sum are the
  same (one hashing pass over the lake), the table is skipped.  The sum is a
  64-bit-per-row checksum: a change that kept both count and sum would need two
  fingerprints to cancel exactly (odds about 2^-64 per change).
* **A changed fingerprint function** (another DuckDB, another nwlib format:
  ``fingerprint.version()``) makes stored fingerprints meaningless: the table is
  compared in full once — every row sent, the merge writing only what differs
  (plus the new fingerprints) — and the run records it in ``observacoes``.
* **Full refresh** (``--full-refresh``, ``TRUNCATE_BEFORE_LOAD``) distrusts the
  local copy and the destination's fingerprints: every lake row is sent (the
  merge writes only rows whose values differ) and destination keys the lake
  lacks are deleted.
* **Order.**  Rows are sent parents first, so a child's new rows find their
  parent; deletes go children first, after every table's rows.  Where the
  destination enforces foreign keys, a delete still referenced by a row the run
  did not remove (a child table left out by ``--tables``, or one that failed)
  is held back with a note, and sent by a later run.
* **Watermarks** (the greatest (incremental value, key) in the lake, capped at
  the run's time) are still recorded, for ``nw status``'s lag; they decide
  nothing for keyed tables (``CDC_LOOKBACK_SECONDS`` is no longer read).
* **Append-only** tables (no key) use the incremental value alone, strictly
  greater — so a row appended later with exactly the watermark's value would be
  missed.  A destination that can (``Capabilities.append_replaces_tail``) is
  sent every row ``>=`` the watermark instead and first removes its own rows
  from that value on (``ChangeSet.tail_from``), in the same transaction: exact,
  and counts stay net.  **Full-replace** tables are rewritten whole, but only
  when their rows' count or fingerprint sum changed.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import duckdb

from . import fingerprint
from .errors import reraise_interrupt
from .holdings import Holdings, key_type, sent_keys
from .lake import memory_limit, row_count, stream_cursor
from .lake.files import DELETES_BYTES_PER_ROW, PAIRS_MAX_ROWS
from .model import APPEND, MERGE, REPLACE, Column, TableSpec, TableState, Watermark
from .sql import ident
from .typemap import send_expr

log = logging.getLogger("nwlib.cdc")

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa

FP = fingerprint.COLUMN


def transfer_spec(spec: TableSpec) -> TableSpec:
    """The table as destinations hold it: the lake's columns plus the fingerprint column."""
    return replace(spec, columns=spec.columns + (Column(FP, "BIGINT"),))


def transfer_select(spec: TableSpec, where: str = "") -> str:
    """DuckDB query producing the transfer columns of ``spec`` (a lake spec) and each row's fingerprint."""
    cols = ", ".join(f"{send_expr(ident(c.name), c.type)} AS {ident(c.name)}" for c in spec.columns)
    return f"SELECT {cols}, {fingerprint.of(spec)} AS {ident(FP)} FROM {spec.source} {where}".rstrip()


@dataclass(frozen=True)
class ChangeSet:
    """The rows one table sends in one run, and what the destination holds after they commit."""

    spec: TableSpec                  # the table as the destination holds it (transfer_spec)
    select_sql: str                  # DuckDB query producing the transfer columns
    params: tuple[Any, ...]
    rows: int                        # rows sent
    watermark_before: Watermark
    watermark_after: Watermark
    full: bool                       # the whole table is sent
    tail_from: str | None = None     # append: the destination first deletes its rows with the incremental value >= this
    only: str | None = None          # a table (in the lake session's memory) of the keys, as sent (nw_k0, nw_k1 …), of the rows to send;
                                     # None: every row select_sql returns
    inserts: int = 0                 # of ``rows``, those with a key the destination lacks (as the comparison expects)
    deletes: int = 0                 # keys to delete after every table's rows (children first)
    state_after: TableState = field(default_factory=TableState)  # what the destination holds once the rows commit
    notes: tuple[str, ...] = ()
    lake_sum: int | None = None      # every lake row sent: their fingerprint sum (what a table written again whole then holds,
                                     # where state_after also counts the rows its deletes will remove)

    @property
    def nothing(self) -> bool:
        return self.rows == 0 and self.deletes == 0 and self.tail_from is None and not self.full

    def reader(self, con: duckdb.DuckDBPyConnection, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the rows as Arrow record batches (bounded memory)."""
        return con.execute(self.select_sql, list(self.params)).to_arrow_reader(batch_rows)


def only_keys(con: duckdb.DuckDBPyConnection, spec: TableSpec, rows: str) -> str:
    """A table of the keys (as sent: nw_k0, nw_k1 …) in ``rows`` (a relation with the key columns), for :func:`only_select`.
    A DuckDB table, not Arrow: the rows to send are then found by a semi-join inside DuckDB, and only they are hashed."""
    name = f"memory.main.{temp_name('only', spec)}"    # the session's in-memory database: the stream cursor sees it too
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {', '.join(f'{ident(k)} AS nw_k{i}' for i, k in enumerate(spec.primary_key))} FROM {rows}")
    return name


def only_rows(spec: TableSpec, only: str) -> str:
    """``FROM`` clause tail restricting the lake table to the keys in the temp table ``only`` (a semi-join; the lake
    table is aliased ``nw_lake`` so that no column of it can be mistaken for the key table's)."""
    match = " AND ".join(f"{send_expr('nw_lake.' + ident(k), spec.column(k).type)} = {only}.nw_k{i}" for i, k in enumerate(spec.primary_key))
    return f"AS nw_lake SEMI JOIN {only} ON {match}"


def only_select(spec: TableSpec, only: str) -> str:
    """:func:`transfer_select` of only the rows whose keys are in the temp table ``only``."""
    return transfer_select(spec, only_rows(spec, only))


def lake_totals(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> tuple[int, int]:
    """(rows, sum of fingerprints) of a lake table: one hashing pass."""
    n, total = con.execute(f"SELECT count(*), coalesce(sum({fingerprint.of(spec)}), 0) FROM {spec.source}").fetchone()
    return int(n), int(total)


def lake_pairs(con: duckdb.DuckDBPyConnection, spec: TableSpec, name: str) -> tuple[int, int]:
    """:func:`lake_totals`, the (key as sent, fingerprint) pairs kept in the table ``name``: still one hashing pass."""
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {sent_keys(spec)}, {fingerprint.of(spec)} AS {ident(FP)} FROM {spec.source}")
    n, total = con.execute(f"SELECT count(*), coalesce(sum({ident(FP)}), 0) FROM {name}").fetchone()
    return int(n), int(total)


# A keyed table of up to PAIRS_MAX_ROWS rows keeps the (key, fingerprint) pairs its totals were hashed from,
# so that its comparison (and the local copy after a full send) does not hash the lake again: about 0.1 s of a
# 2M-row table, for about 0.04 s more than the sum alone.  So they are kept only when changes are likely (the
# engine's guess: the lake was written since the local copy was; a wrong guess costs time, never a row), for
# keys of fixed width (pair_bytes), and only while a one-pass comparison of the table still fits in
# DUCKDB_MEMORY_LIMIT beside them and the pairs kept for other tables (``auto`` leaves that room for a BIGINT
# key); otherwise the comparison hashes again.  Comparisons size their passes to what the kept pairs leave.
_VARIABLE_WIDTH = ("VARCHAR", "BLOB", "BIT", "JSON", "UUID")
_WIDE = ("DECIMAL", "HUGEINT", "UHUGEINT", "INTERVAL")


def pair_bytes(spec: TableSpec) -> int | None:
    """Memory a kept pair of ``spec`` takes (measured: 22 bytes for a BIGINT key, 29 for INTEGER + BIGINT), or
    None when a key column is of variable width (text, a UUID sent as text): its size cannot be told up front."""
    size = 8 + 8                                    # the fingerprint, and DuckDB's own overhead per row
    for k in spec.primary_key:
        typ = key_type(spec, k).upper()
        if typ.startswith(_VARIABLE_WIDTH) or "[" in typ or ("(" in typ and not typ.startswith("DECIMAL")):
            return None
        size += 16 if typ.startswith(_WIDE) else 8
    return size


class LakeTotals:
    """The lake's (rows, fingerprint sum) of tables, hashed in a background thread from the moment the plan is
    known, while the destination connects, takes its lock and reads its state (DuckDB releases the GIL).

    :meth:`get` returns a table's totals when they were hashed over the same columns (the schema-change policy
    may send fewer), else hashes them there and then; :meth:`pairs` then names the table of its (key,
    fingerprint) pairs when they were kept (``keep_pairs``: changes are likely), until :meth:`release`.  One DuckDB cursor of the run's lake
    session; the thread is stopped (its query interrupted) and the pairs dropped by :meth:`close`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, specs: Iterable[TableSpec], keep_pairs: bool = True):
        from concurrent.futures import ThreadPoolExecutor

        self._cursor = stream_cursor(con)
        self._limit = memory_limit(con)
        self._keep_pairs = keep_pairs
        self._kept: dict[str, tuple[str, int]] = {}      # table → (pairs table, bytes)
        self._held = 0                                    # bytes of pairs kept and not yet released
        self._lock = threading.Lock()
        self._closing = False       # set by close(): a hash that has not begun its pairs does not begin them
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="nw-lake-totals")
        self._pending = {s.name: (s.columns, self._pool.submit(self._hash, s)) for s in specs}

    def _hash(self, spec: TableSpec) -> tuple[int, int, tuple[str, int] | None]:
        per_row = pair_bytes(spec) if self._keep_pairs and spec.mode == MERGE and spec.primary_key else None
        if per_row is not None:
            rows = row_count(self._cursor, spec)
            size = per_row * rows
            with self._lock:
                one_pass = (PASS_BYTES_PER_ROW + DELETES_BYTES_PER_ROW) * rows + PASS_RESERVE
                keep = rows <= PAIRS_MAX_ROWS and self._held + size + one_pass <= self._limit and not self._closing
                if keep:
                    self._held += size
            if keep:
                name = f"memory.main.{temp_name('pairs', spec)}"   # the session's in-memory database: every cursor sees it
                try:
                    return (*lake_pairs(self._cursor, spec, name), (name, size))
                except BaseException:
                    self._drop(self._cursor, (name, size))
                    raise
        return (*lake_totals(self._cursor, spec), None)

    def get(self, con: duckdb.DuckDBPyConnection, spec: TableSpec) -> tuple[int, int]:
        columns, future = self._pending.pop(spec.name, (None, None))
        if future is not None and columns == spec.columns:
            n, total, kept = future.result()
            if kept:
                self._kept[spec.name] = kept
            return n, total
        if future is not None and not future.cancel():
            try:                                    # hashed over other columns: not needed, nor is its error
                self._drop(con, future.result()[2])
            except Exception as exc:  # noqa: BLE001
                reraise_interrupt(exc)
        return lake_totals(con, spec)

    @property
    def held(self) -> int:
        """Bytes of pairs kept now (of every table): what a comparison's passes must leave room for."""
        with self._lock:
            return self._held

    def pairs(self, spec: TableSpec) -> str | None:
        """The table of (key as sent, fingerprint) of every lake row of ``spec``, if kept (after :meth:`get`)."""
        kept = self._kept.get(spec.name)
        return kept[0] if kept else None

    def release(self, con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
        self._drop(con, self._kept.pop(spec.name, None))

    def _drop(self, con: duckdb.DuckDBPyConnection, kept: tuple[str, int] | None) -> None:
        if kept:
            with self._lock:
                self._held -= kept[1]
            con.execute(f"DROP TABLE IF EXISTS {kept[0]}")

    def close(self) -> None:
        with self._lock:
            self._closing = True
        for _, future in self._pending.values():
            future.cancel()
        with contextlib.suppress(duckdb.Error):
            self._cursor.interrupt()
        self._pool.shutdown(wait=True)
        unused = [f.result()[2] for _, f in self._pending.values() if f.done() and not f.cancelled() and f.exception() is None]
        for kept in [*self._kept.values(), *unused]:
            with contextlib.suppress(duckdb.Error):
                self._drop(self._cursor, kept)
        self._kept.clear()
        with contextlib.suppress(duckdb.Error):
            self._cursor.close()


def full_changes(con: duckdb.DuckDBPyConnection, spec: TableSpec, revision: str = "full") -> ChangeSet:
    """Every row of a table as one change set, as a first load sends it (tools, tests and the benchmark)."""
    if spec.mode == APPEND:
        return append_changes(con, spec, Watermark(), True, False)
    n, total = lake_totals(con, spec)
    wm = next_watermark(con, spec, Watermark())
    after = TableState(wm, n, (), True, total, fingerprint.version(), revision)
    return ChangeSet(transfer_spec(spec), transfer_select(spec), (), n, Watermark(), wm, True, inserts=n, state_after=after)


# --- keyed tables: compare fingerprints ------------------------------------------------------

def temp_name(kind: str, spec: TableSpec) -> str:
    import hashlib

    return f"nw_{kind}_{hashlib.md5(spec.name.encode()).hexdigest()[:12]}"


# Rows per pass of a comparison at most: a table up to this size is compared in one FULL OUTER JOIN (a 2M-row
# table in 0.27 s here), unless its key splits into ranges (then passes of RANGE_PASS_ROWS).  A larger one is compared in passes, each as large as DUCKDB_MEMORY_LIMIT leaves room for
# (pass_rows): over ranges of its key when that is one integer, date or timestamp column (see key_ranges), else
# over buckets of a hash (of the fingerprint: a fingerprint is in the same bucket on both sides).
COMPARE_BUCKET_ROWS = 2_500_000
# What a pass needs, measured on 2 and 10M-row tables: about 48 bytes a row, beside DuckDB's bookkeeping of the lake
# table's deletes (DELETES_BYTES_PER_ROW a row of the table, when they are spread over it; never evicted) and a
# reserve for the rest of the run.
PASS_BYTES_PER_ROW, PASS_RESERVE = 48, 48 << 20
MIN_PASS_ROWS = 250_000
# Rows per pass at most when the key splits into ranges (key_ranges), whatever the memory: the memory a join frees
# stays with the process's allocator (glibc keeps it), so one join of 2.2M pairs leaves about 119 MB more RSS and
# four of 550k about 51 MB, for 0.02-0.07 s more; passes over ranges each read only their part of the table.
RANGE_PASS_ROWS = 600_000
# When DuckDB runs out of memory inside a pass anyway (its joins overshoot the limit by an amount the sizing above
# cannot know: measured 130 MB over at 360 MB on a 10M-row table), the comparison starts again with twice as many
# passes, up to this many; past it the error stands (raise DUCKDB_MEMORY_LIMIT).
MAX_PASSES = 64


def pass_rows(memory_limit: int, lake_rows: int) -> int:
    """Rows per comparison pass for a table of ``lake_rows`` rows within ``memory_limit`` bytes."""
    room = (memory_limit - DELETES_BYTES_PER_ROW * lake_rows - PASS_RESERVE) // PASS_BYTES_PER_ROW
    return min(COMPARE_BUCKET_ROWS, max(MIN_PASS_ROWS, room))


def compare(con: duckdb.DuckDBPyConnection, spec: TableSpec, holdings: Holdings, full: bool, lake_rows: int,
            bucket_rows: int | None = None, pairs: str | None = None, reserved: int = 0) -> tuple[str | None, str]:
    """Compare the lake with what the destination holds (``holdings``, current).

    Returns the names of two temporary tables of (sent keys, fingerprint): the lake rows to send (None when
    ``full``: every row is sent, straight from the lake), and the keys to delete, each with the fingerprint
    the destination holds.  One FULL OUTER JOIN on the fingerprint per pass finds both: lake rows the
    destination has no fingerprint for, and destination rows whose fingerprint the lake no longer has (an
    old version, or a deleted key; a row whose fingerprint is unknown is one of them); of those, the keys
    the lake lacks are deleted.  A table of up to ``bucket_rows`` rows (default: :func:`pass_rows` of the
    session's memory limit, and RANGE_PASS_ROWS when its key splits into ranges) is compared in one pass; a larger one in passes over ranges of its key or buckets of
    fingerprints (and in twice as many, from the start, when DuckDB runs out of memory in one: up to MAX_PASSES).
    Either reads the lake's (key as sent, fingerprint) pairs from ``pairs`` when they were kept (see
    :class:`LakeTotals`), else hashes the lake once more; ``reserved``: bytes of the session's memory that kept
    pairs (these and other tables') take, which the passes leave alone."""
    up, gone, cand = temp_name("up", spec), temp_name("gone", spec), temp_name("cand", spec)
    held = holdings.table(spec)
    held_rows = holdings.totals(spec)[0]
    keys = key_columns_sql(spec)
    key_list = ", ".join(ident(k) for k in spec.primary_key)
    fp = ident(FP)
    for name in (up, gone, cand):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({keys}, {fp} BIGINT)")
    if full:
        con.execute(f"DROP TABLE {up}")
    if not held_rows:
        # The destination holds nothing: every lake row is new (sent straight from the lake), nothing to delete.
        con.execute(f"DROP TABLE {cand}")
        con.execute(f"DROP TABLE IF EXISTS {up}")
        return None, gone
    rows = max(lake_rows, held_rows)
    parts = max(1, -(-rows // (bucket_rows or pass_rows(memory_limit(con) - reserved, rows))))
    if bucket_rows is None and rangeable(spec):
        parts = max(parts, -(-rows // RANGE_PASS_ROWS))
    n = len(spec.primary_key)
    lake_cols = ", ".join(f"l.{ident(k)} AS lk{i}" for i, k in enumerate(spec.primary_key))
    held_cols = ", ".join(f"h.{ident(k)} AS hk{i}" for i, k in enumerate(spec.primary_key))
    match = " AND ".join(f"c.{ident(k)} = l.{ident(k)}" for k in spec.primary_key)
    lake_keys = pairs or f"(SELECT {sent_keys(spec)} FROM {spec.source})"

    ranges: dict[int, list[str] | None] = {}

    def split(parts: int) -> list[str] | None:      # key_ranges, once per number of passes
        if parts not in ranges:
            ranges[parts] = key_ranges(con, spec, parts, (spec.source, held))
        return ranges[parts]

    def part(p: int, parts: int, of: str) -> tuple[str, list[Any]]:
        """WHERE clause (and its parameters) of pass ``p`` of ``parts``, the same on both sides: a range of the key
        when it can be split so (both versions of a key are in the same pass), else a bucket of a hash of ``of``."""
        if parts == 1:
            return "", []
        bounds = split(parts)
        if bounds is None:
            return f"WHERE hash({of}) % {parts} = {p}", []
        k, typ = ident(spec.primary_key[0]), spec.column(spec.primary_key[0]).type
        lo, hi = ([bounds[p - 1]] if p > 0 else []), ([bounds[p]] if p < parts - 1 else [])
        where = [f"{k} >= CAST(? AS {typ})"] * len(lo) + [f"{k} < CAST(? AS {typ})"] * len(hi)
        return f"WHERE {' AND '.join(where)}", lo + hi

    if full:
        # Every lake row is sent: delete what the destination holds under keys the lake lacks.
        def deletes(p: int, parts: int) -> None:
            where, params = part(p, parts, key_list)
            con.execute(f"INSERT INTO {gone} SELECT c.* FROM (SELECT * FROM {held} {where}) c "
                        f"ANTI JOIN (SELECT * FROM {lake_keys} {where}) l ON {match}", params * 2)

        _in_passes(con, spec, parts, deletes, (gone,))
        con.execute(f"DROP TABLE {cand}")
        return None, gone
    lake_fp = pairs or f"(SELECT {sent_keys(spec)}, {fingerprint.of(spec)} AS {fp} FROM {spec.source})"
    own = temp_name("lake", spec)

    if parts > 1 and not pairs and split(parts) is None:
        # Passes over buckets read all of both sides each: over the lake's (key, fingerprint) pairs, made once, they
        # read narrow rows.  (Passes over key ranges hash only their range of the lake; when one planned pass runs
        # out of memory, the passes started instead hash the lake each: making these pairs then would take memory too.)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {own} AS {lake_fp[1:-1]}")
        lake_fp = own

    def differences(p: int, parts: int) -> None:
        where, params = part(p, parts, fp)
        con.execute(f"CREATE OR REPLACE TEMP TABLE nw_diff AS SELECT {lake_cols}, l.{fp} AS lake_fp, {held_cols}, h.{fp} AS held_fp "
                    f"FROM (SELECT * FROM {lake_fp} {where}) l FULL OUTER JOIN (SELECT * FROM {held} {where}) h "
                    f"ON l.{fp} = h.{fp} WHERE l.{fp} IS NULL OR h.{fp} IS NULL", params * 2)
        con.execute(f"INSERT INTO {up} SELECT {', '.join(f'lk{i}' for i in range(n))}, lake_fp FROM nw_diff WHERE lake_fp IS NOT NULL")
        con.execute(f"INSERT INTO {cand} SELECT {', '.join(f'hk{i}' for i in range(n))}, held_fp FROM nw_diff WHERE lake_fp IS NULL")

    _in_passes(con, spec, parts, differences, (up, cand))
    if lake_fp == own:
        con.execute(f"DROP TABLE {own}")
    con.execute("DROP TABLE IF EXISTS nw_diff")
    # Of the destination rows whose fingerprint the lake lacks, delete those whose key it lacks too.
    con.execute(f"INSERT INTO {gone} SELECT c.* FROM {cand} c ANTI JOIN (SELECT l.* FROM {lake_keys} l "
                f"SEMI JOIN {cand} c ON {match}) l ON {match}")
    con.execute(f"DROP TABLE {cand}")
    return up, gone


# Key types a comparison in passes can split into ranges: DuckDB's zone maps (each row group's least and greatest
# value) then let a pass read only the row groups that can hold its range, so a table whose rows are roughly in key
# order (an id given in sequence, a date) is read about once in all however many passes there are, instead of
# whole in each.  Not for a key sent in another form (a timestamp cut to microseconds): the ranges must agree on
# both sides.
_RANGE_TYPES = ("SMALLINT", "INTEGER", "BIGINT", "DATE", "TIMESTAMP")


def rangeable(spec: TableSpec) -> bool:
    """Is the key of ``spec`` one column of _RANGE_TYPES, sent as it is?"""
    if len(spec.primary_key) != 1:
        return False
    typ = spec.column(spec.primary_key[0]).type.upper()
    return typ in _RANGE_TYPES and key_type(spec, spec.primary_key[0]).upper() == typ


def key_ranges(con: duckdb.DuckDBPyConnection, spec: TableSpec, parts: int, sides: tuple[str, ...]) -> list[str] | None:
    """``parts - 1`` ascending bounds that split the key of ``spec`` into ``parts`` ranges of about as many rows of
    ``sides`` (the lake and the copy: a lake rebuilt with new keys must not land in one pass) each, by DuckDB's
    approximate quantiles; as text, sorted by DuckDB, to be cast back to the key's type (a year past 9999 does not
    come back to Python as a date).  None when the key is not one column of _RANGE_TYPES, or nothing is there."""
    if not rangeable(spec):
        return None
    k = ident(spec.primary_key[0])
    typ = spec.column(spec.primary_key[0]).type.upper()
    quantiles = ", ".join(repr(i / parts) for i in range(1, parts))
    keys = " UNION ALL ".join(f"SELECT {k} FROM {side}" for side in sides)
    bounds = con.execute(f"SELECT CAST(list_sort(CAST(approx_quantile({k}, [{quantiles}]) AS {typ}[])) AS VARCHAR[]) FROM ({keys})").fetchone()[0]
    if not bounds or any(b is None for b in bounds):
        return None     # nothing to split on (both sides empty): buckets then
    return bounds


def _in_passes(con: duckdb.DuckDBPyConnection, spec: TableSpec, parts: int, one_pass: Callable[[int, int], None],
               written: tuple[str, ...]) -> None:
    """``one_pass(p, parts)`` for every bucket ``p``, each writing into the tables ``written``.  If DuckDB runs out
    of memory in one, those are emptied and every pass runs again, twice as many, up to MAX_PASSES."""
    while True:
        try:
            for p in range(parts):
                one_pass(p, parts)
            return
        except duckdb.OutOfMemoryException:
            if parts * 2 > MAX_PASSES:
                raise
            parts *= 2
            log.warning("table %r: comparing ran out of memory within DUCKDB_MEMORY_LIMIT; starting again in %d smaller passes "
                        "(slower: raise the limit to avoid it)", spec.name, parts)
            for table in written:
                con.execute(f"DELETE FROM {table}")


def state_after_upserts(con: duckdb.DuckDBPyConnection, spec: TableSpec, holdings: Holdings, up: str | None,
                        lake_totals: tuple[int, int], gone: str, version: str, revision: str) -> tuple[TableState, int]:
    """(what the destination holds once the rows are merged, how many of them are new keys).

    ``up`` None: every lake row is sent, so the destination then holds the lake's rows and those to delete."""
    n_held, sum_held, _ = holdings.totals(spec)
    gone_n, gone_sum = con.execute(f"SELECT count(*), coalesce(sum({ident(FP)}), 0) FROM {gone}").fetchone()
    if up is None:
        lake_n, lake_sum = lake_totals
        state = TableState(row_count=lake_n + int(gone_n), fingerprint_sum=lake_sum + int(gone_sum), fingerprint_version=version,
                           revision=revision, loaded=True)
        return state, lake_n - (n_held - int(gone_n))
    match = " AND ".join(f"h.{ident(k)} = u.{ident(k)}" for k in spec.primary_key)
    replaced_n, replaced_sum = con.execute(
        f"SELECT count(*), coalesce(sum(h.{ident(FP)}), 0) FROM {holdings.table(spec)} h SEMI JOIN {up} u ON {match}").fetchone()
    up_n, up_sum = con.execute(f"SELECT count(*), coalesce(sum({ident(FP)}), 0) FROM {up}").fetchone()
    state = TableState(row_count=n_held - int(replaced_n) + int(up_n), fingerprint_sum=sum_held - int(replaced_sum) + int(up_sum),
                       fingerprint_version=version, revision=revision, loaded=True)
    return state, int(up_n) - int(replaced_n)


def duplicate_keys(con: duckdb.DuckDBPyConnection, spec: TableSpec, limit: int = 5) -> list[tuple]:
    """Keys (as sent) that more than one lake row has: a key the lake does not enforce, or one
    that collides once sent (two TIMESTAMP_NS values in the same microsecond)."""
    keys = ", ".join(ident(k) for k in spec.primary_key)
    return con.execute(f"SELECT {keys} FROM (SELECT {sent_keys(spec)} FROM {spec.source}) GROUP BY ALL HAVING count(*) > 1 "
                       f"ORDER BY ALL LIMIT {int(limit)}").fetchall()


def null_key_columns(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> list[tuple[str, int]]:
    """(key column, rows) for each key column that is NULL in some lake row: possible where the lake does not
    enforce the key (declared in table_metadata only).  Such a row can be neither matched nor sent."""
    counts = ", ".join(f"count(*) FILTER (WHERE {ident(k)} IS NULL)" for k in spec.primary_key)
    found = con.execute(f"SELECT {counts} FROM {spec.source}").fetchone()
    return [(k, int(n)) for k, n in zip(spec.primary_key, found) if n]


def lossy_key(spec: TableSpec) -> bool:
    from .typemap import pg_type

    return any(pg_type(spec.column(k).type).lossy for k in spec.primary_key)


def key_columns_sql(spec: TableSpec) -> str:
    return ", ".join(f"{ident(k)} {key_type(spec, k)}" for k in spec.primary_key)


# --- append-only tables: the cursor -------------------------------------------------------------

def append_filter(spec: TableSpec, wm: Watermark, tail: bool) -> tuple[str, list[Any]]:
    """WHERE clause and parameters of an append-only table's new rows: strictly after the watermark, or
    from it on when the destination replaces its tail."""
    if wm.value is None:
        return "", []
    inc = spec.incremental_column
    return f"WHERE {ident(inc)} {'>=' if tail else '>'} CAST(? AS {spec.column(inc).type})", [wm.value]


def next_watermark(con: duckdb.DuckDBPyConnection, spec: TableSpec, current: Watermark) -> Watermark:
    """The greatest (inc, key) in the lake, capped at now (UTC) for time cursors."""
    inc = spec.incremental_column
    if not inc or spec.mode == REPLACE:
        return Watermark()
    col = ident(inc)
    upper = spec.column(inc).type.upper()
    cap = ""
    if "TIME ZONE" in upper:
        cap = f" AND {col} <= now()"
    elif upper.startswith("DATE"):
        cap = f" AND {col} <= CAST(timezone('UTC', now()) AS DATE)"
    elif upper.startswith("TIMESTAMP"):
        cap = f" AND {col} <= CAST(timezone('UTC', now()) AS TIMESTAMP)"
    key = list(spec.primary_key) if spec.mode == MERGE else []
    order = ", ".join(f"{ident(c)} DESC" for c in [inc, *key])
    select = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in [inc, *key])
    row = con.execute(f"SELECT {select} FROM {spec.source} WHERE {col} IS NOT NULL{cap} ORDER BY {order} LIMIT 1").fetchone()
    if row is None:
        return current
    return Watermark(row[0], tuple(row[1:]))


def append_changes(con: duckdb.DuckDBPyConnection, spec: TableSpec, watermark: Watermark, full: bool, tail: bool) -> ChangeSet:
    """An append-only table's change set: every row when ``full`` or never loaded, else the rows after the watermark."""
    full = full or watermark.value is None
    tail = tail and not full
    where, params = ("", []) if full else append_filter(spec, watermark, tail)
    rows = con.execute(f"SELECT count(*) FROM {spec.source} {where}", params).fetchone()[0]
    after = next_watermark(con, spec, watermark)
    if after.value is None:
        after = watermark
    return ChangeSet(transfer_spec(spec), transfer_select(spec, where), tuple(params), rows, watermark, after, full,
                     watermark.value if tail else None)
