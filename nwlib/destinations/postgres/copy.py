"""Rows into PostgreSQL: binary COPY (pgpq) into a staging table, one set-based merge; deletes.

A table that is empty in the destination skips staging: its rows are copied
straight in, and a large one gets its primary key index built once, after the
rows, rather than grown row by row (about 20 % of a first load's time; still
one transaction, so a duplicate key fails it whole).  Otherwise the change set lands in a temporary table
(``ON COMMIT DROP``) and one ``INSERT … ON CONFLICT DO UPDATE … WHERE … IS
DISTINCT FROM`` merges it, so re-sent identical rows write nothing.  Everything
here runs inside the caller's transaction.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ...cdc import ChangeSet
from ...errors import DestinationError, first_line
from ...fingerprint import COLUMN as FP
from ...model import APPEND, REPLACE, ForeignKey, TableSpec
from ...sql import ident, idents, qualified
from ...typemap import merge_expr, pg_type
from ..base import Progress, ReaderFactory
from .connection import Session, psycopg_module

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa


# A first load of at least this many rows builds its primary key after the COPY (one sort) instead of during it,
# if the table's lock comes within KEY_LOCK_WAIT.
BULK_KEY_ROWS = 100_000
KEY_LOCK_WAIT = "2s"


def _stage_name(prefix: str, table: str) -> str:
    return ident(f"{prefix}_{hashlib.md5(table.encode()).hexdigest()[:12]}")


class Copier:
    def __init__(self, session: Session, schema: str):
        self.session, self.schema = session, schema

    @property
    def conn(self):
        return self.session.conn

    def apply(self, cs: ChangeSet, read: ReaderFactory, progress: Progress) -> tuple[int, int]:
        """Apply one change set; returns (inserted, updated) — net of rows an append replaced."""
        spec = cs.spec
        target = qualified(self.schema, spec.name)
        removed = 0
        if spec.mode == REPLACE or (spec.mode == APPEND and cs.full):  # a full append (refresh, new column) re-sends every row
            self.conn.execute(f"DELETE FROM {target}")
        elif spec.mode == APPEND and cs.tail_from is not None:
            # Rows from the watermark's value on are re-sent (see cdc): replace them, so counts stay net.
            inc = spec.incremental_column
            removed = self.conn.execute(f"DELETE FROM {target} WHERE {ident(inc)} >= CAST(%s AS {pg_type(spec.column(inc).type).pg})",
                                        [cs.tail_from]).rowcount
        if cs.rows == 0:
            return -removed, 0
        ins, upd = self._send(cs, read, progress, target)
        return ins - removed, upd

    def is_empty(self, target: str) -> bool:
        return self.conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {target})").fetchone()[0]

    def _send(self, cs: ChangeSet, read: ReaderFactory, progress: Progress, target: str) -> tuple[int, int]:
        spec = cs.spec
        direct = all(pg_type(c.type).direct for c in spec.columns)
        if direct and (spec.mode in (APPEND, REPLACE) or (cs.full and self.is_empty(target))):
            with self._key_built_after(target, spec, cs.rows):
                n = self.copy_in(target, spec, read(cs), progress)
            return n, 0
        stage = _stage_name("nw_stage", spec.name)
        cols = ", ".join(f"{ident(c.name)} {pg_type(c.type).staging}" for c in spec.columns)
        self.conn.execute(f"CREATE TEMP TABLE {stage} ({cols}) ON COMMIT DROP")
        self.copy_in(stage, spec, read(cs), progress)
        names = idents(spec.column_names)
        exprs = ", ".join(merge_expr(ident(c.name), c.type) for c in spec.columns)
        if spec.mode in (APPEND, REPLACE):
            n = self.conn.execute(f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {stage}").rowcount
            return n, 0
        conflict = f"ON CONFLICT ({idents(spec.primary_key)})"
        rest = spec.non_key_columns
        if rest:
            sets = ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in rest)
            t_cols = ", ".join(f"t.{ident(c)}" for c in rest)
            e_cols = ", ".join(f"EXCLUDED.{ident(c)}" for c in rest)
            action = f"DO UPDATE SET {sets} WHERE ROW({t_cols}) IS DISTINCT FROM ROW({e_cols})"
        else:
            action = "DO NOTHING"
        sql = (f"WITH m AS (INSERT INTO {target} AS t ({names}) SELECT {exprs} FROM {stage} {conflict} {action} "
               "RETURNING (xmax = 0) AS ins) SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM m")
        ins, upd = self.conn.execute(sql).fetchone()
        return int(ins), int(upd)

    @contextlib.contextmanager
    def _key_built_after(self, target: str, spec: TableSpec, rows: int) -> Iterator[None]:
        """Around the COPY into an empty table: drop its primary key first and add the same definition back
        after, so PostgreSQL builds the index in one pass.  Only for a large load, when no foreign key refers to
        that key (nwlib adds children's keys after the loads) and the key is not the table's replica identity.
        The drop waits at most KEY_LOCK_WAIT for the table's lock (a reader inside an open transaction holds it)
        and may be refused (a view depending on the key): then the rows go in with the key kept."""
        key = None
        if spec.primary_key and rows >= BULK_KEY_ROWS:
            key = self.conn.execute(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
                "WHERE c.conrelid = %s::regclass AND c.contype = 'p' AND t.relreplident = 'd' "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.conrelid AND f.contype = 'f')", [target]).fetchone()
        if key is not None and not self._drop_key(target, key[0]):
            key = None
        yield
        if key is not None:
            self.conn.execute(f"ALTER TABLE {target} ADD CONSTRAINT {ident(key[0])} {key[1]}")   # the definition PostgreSQL gave

    def _drop_key(self, target: str, name: str) -> bool:
        """Drop the constraint inside a savepoint, waiting at most KEY_LOCK_WAIT; False (nothing changed) if it
        cannot be now.  A lost connection is raised as ever."""
        psycopg = psycopg_module()
        conn = self.conn
        waited = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", [KEY_LOCK_WAIT])
                conn.execute(f"ALTER TABLE {target} DROP CONSTRAINT {ident(name)}")
            return True
        except psycopg.Error:
            if conn.broken or conn.closed:
                raise
            return False
        finally:
            if not (conn.broken or conn.closed):
                conn.execute("SELECT set_config('lock_timeout', %s, true)", [waited])

    def copy_in(self, target: str, spec: TableSpec, reader: pa.RecordBatchReader, progress: Progress | None = None) -> int:
        """Binary COPY of Arrow batches into ``target`` (columns named as the batches'); returns the rows sent."""
        import pgpq

        sent = 0
        with self.conn.cursor() as cur, cur.copy(f"COPY {target} ({idents(reader.schema.names)}) FROM STDIN (FORMAT BINARY)") as copy:
            encoder = pgpq.ArrowToPostgresBinaryEncoder(zoned_lists_as_text(reader.schema))
            copy.write(encoder.write_header())
            for batch in reader:
                if batch.num_rows:
                    refuse_infinite_times(batch, spec.name)
                    batch = zoned_list_text(batch)
                    try:
                        data = encoder.write_batch(batch)
                    except ValueError as exc:  # pgpq: a value binary COPY cannot carry
                        raise DestinationError(f"table {spec.name!r}: a value cannot be sent to PostgreSQL ({first_line(exc)})",
                                               "change that value in the lake and rerun") from None
                    copy.write(data)
                    sent += batch.num_rows
                    if progress is not None:
                        progress(spec.name, batch.num_rows)
            copy.write(encoder.finish())
        return sent

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, protect: Sequence[ForeignKey] = ()) -> tuple[int, int, int]:
        """Delete these keys (staged by binary COPY, one set-based DELETE).

        A key still referenced by another table's row (``protect``: foreign keys into this table, of tables
        that exist here) is kept.  Returns (rows deleted, keys held back, sum of the deleted rows' fingerprints)."""
        target = qualified(self.schema, spec.name)
        stage = _stage_name("nw_del", spec.name)
        cols = ", ".join(f"{ident(k)} {pg_type(spec.column(k).type).staging}" for k in spec.primary_key)
        self.conn.execute(f"CREATE TEMP TABLE {stage} ({cols}, {ident(FP)} bigint) ON COMMIT DROP")
        self.copy_in(stage, spec, keys)
        match = " AND ".join(f"t.{ident(k)} = {merge_expr('s.' + ident(k), spec.column(k).type)}" for k in spec.primary_key)
        kept = ""
        for fk in protect:
            if self.conn.execute("SELECT to_regclass(%s)", [qualified(self.schema, fk.table)]).fetchone()[0] is None:
                continue     # that table is not here (yet): nothing of it can reference these rows
            refs = " AND ".join(f"c.{ident(col)} = t.{ident(ref)}" for col, ref in zip(fk.columns, fk.ref_columns))
            kept += f" AND NOT EXISTS (SELECT 1 FROM {qualified(self.schema, fk.table)} c WHERE {refs})"
        n, total = self.conn.execute(
            f"WITH d AS (DELETE FROM {target} AS t USING {stage} AS s WHERE {match}{kept} RETURNING t.{ident(FP)} AS fp) "
            "SELECT count(*), sum(fp)::text FROM d").fetchone()
        held = 0
        if kept:
            held = self.conn.execute(f"SELECT count(*) FROM {stage} s JOIN {target} t ON {match}").fetchone()[0]
        return int(n), int(held), 0 if total is None else int(total)


def _zoned_list(typ: pa.DataType) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and pa.types.is_timestamp(typ.value_type) and typ.value_type.tz is not None


def zoned_lists_as_text(schema: pa.Schema) -> pa.Schema:
    """The schema :func:`zoned_list_text` gives batches of ``schema``."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.list_(pa.string()), f.nullable) if _zoned_list(f.type) else f for f in schema])


def zoned_list_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Lists of zoned timestamps as lists of text with their offset ('2024-06-01 12:00:00.123456Z'; a year before 1 as
    PostgreSQL writes it, '0057-03-15 10:00:00.000000Z BC'), which the merge casts to timestamptz[] whatever the
    session's TimeZone: pgpq marks a binary array's elements as timestamp, which timestamptz[] refuses."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(_zoned_list(f.type) for f in batch.schema):
        return batch
    columns = []
    for field, column in zip(batch.schema, batch.columns):
        if _zoned_list(field.type):
            column = column.cast(pa.list_(pa.string()))
            flat = column.flatten()
            if len(flat) and pc.any(pc.or_(pc.starts_with(flat, "-"), pc.starts_with(flat, "0000-"))).as_py():
                column = pa.array([None if v is None else [None if e is None else _era(e) for e in v] for v in column.to_pylist()],
                                  pa.list_(pa.string()))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=zoned_lists_as_text(batch.schema))


def _era(text: str) -> str:
    """Arrow's astronomical year (0000: 1 BC, -0056: 57 BC) as PostgreSQL writes it."""
    if not (text.startswith("-") or text.startswith("0000-")):
        return text
    year, rest = text.lstrip("-").split("-", 1)
    astronomical = -int(year) if text.startswith("-") else int(year)
    return f"{1 - astronomical:04d}-{rest} BC"


def refuse_infinite_times(batch: pa.RecordBatch, table: str) -> None:
    """DuckDB's ±infinity dates/timestamps would arrive as wrong finite values (or not at all): say so instead."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for field, column in zip(batch.schema, batch.columns):
        typ = field.type
        while pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            column, typ = column.flatten(), typ.value_type          # a list's elements (a PostgreSQL array's)
        if pa.types.is_timestamp(typ):
            ints, top = column.cast(pa.int64()), 2**63 - 1
        elif pa.types.is_date32(typ):
            ints, top = column.cast(pa.int32()), 2**31 - 1
        else:
            continue
        if not len(ints):
            continue
        lo, hi = pc.min_max(ints).values()
        if hi.is_valid and (hi.as_py() >= top or lo.as_py() <= -top):
            raise DestinationError(f"table {table!r} column {field.name!r} holds an infinite date/timestamp, which nwlib cannot send to PostgreSQL",
                                   "replace 'infinity'/'-infinity' in the lake with NULL or a real date and rerun")
