"""Rows and keys read back from PostgreSQL as canonical text that DuckDB can CAST to the lake's types."""
from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ...fingerprint import COLUMN as FP
from ...model import TableSpec
from ...readback import text_array
from ...sql import ident, qualified
from ...typemap import pg_type
from ..base import nothing_held
from .connection import Session, local_settings
from .scanner import Scanner

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa


# Types read typed through the postgres extension's binary COPY (exact, and blind to the session's DateStyle,
# TimeZone and extra_float_digits, which a role or a pooled connection may set); any other is read as
# canonical text.  Through psycopg's CSV COPY everything is text, under SET LOCAL settings.
TYPED_KEYS = ("smallint", "integer", "bigint", "text", "date", "uuid", "boolean", "timestamp", "timestamp with time zone")
TYPED_VALUES = (*TYPED_KEYS, "double precision", "real")


class Reader:
    def __init__(self, session: Session, schema: str, scanner: Scanner | None = None):
        self.session, self.schema, self.scanner = session, schema, scanner

    def rows(self, sql: str) -> pa.RecordBatchReader:
        """The rows of ``sql``: through DuckDB's postgres extension when it works, else psycopg's COPY."""
        if self.scanner is not None:
            reader = self.scanner.read(sql, 100_000)
            if reader is not None:
                return reader
        return self.copy_out(sql)

    def copy_out(self, sql: str) -> pa.RecordBatchReader:
        """Run ``COPY (sql) TO STDOUT CSV`` into a temp file; read it back as text columns."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        tmp = tempfile.NamedTemporaryFile(prefix="nw_copy_", suffix=".csv", delete=False)
        path = Path(tmp.name)
        try:
            with self.session.errors("read back"):
                conn = self.session.conn
                with tmp, conn.transaction(), conn.cursor() as cur:
                    local_settings(conn)
                    with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV, HEADER)") as copy:
                        for chunk in copy:
                            tmp.write(chunk)
            with path.open("rb") as f:
                header = f.readline().decode().rstrip("\r\n")
            return pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=8 << 20),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in next(csv.reader([header]))},
                    null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False),  # only an unquoted empty field is NULL ("NA", "NaN", "null" are values)
            )
        finally:
            tmp.close()
            path.unlink(missing_ok=True)  # read or not, no file stays behind (an open reader keeps its data readable on POSIX)

    def fingerprints(self, spec: TableSpec, present: dict[str, str] | None) -> pa.RecordBatchReader:
        """Keys (canonical text) and fingerprints of every row; ``present``: the table's columns (None: no table)."""
        if present is None:
            return nothing_held(spec)
        typed = self.scanner is not None
        if typed and FP in present and all(pg_type(spec.column(k).type).pg in TYPED_KEYS for k in spec.primary_key):
            reader = self.scanner.scan_table(self.schema, spec.name, [*spec.primary_key, FP], 100_000)
            if reader is not None:
                return reader
        cols = ", ".join(f"{ident(k) if typed and pg_type(spec.column(k).type).pg in TYPED_KEYS else text_expr(ident(k), pg_type(spec.column(k).type).pg)}"
                         f" AS {ident(k)}" for k in spec.primary_key)
        fp = (ident(FP) if typed else f"{ident(FP)}::text") if FP in present else "NULL::bigint"   # written by an older nwlib: unknown
        return self.rows(f"SELECT {cols}, {fp} AS {ident(FP)} FROM {qualified(self.schema, spec.name)}")

    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        typed = TYPED_VALUES if self.scanner is not None else ()
        cols = ", ".join(f"{ident(c.name) if pg_type(c.type).pg in typed else text_expr(ident(c.name), pg_type(c.type).pg)} AS {ident(c.name)}"
                         for c in spec.columns)
        return self.rows(f"SELECT {cols} FROM {qualified(self.schema, spec.name)}")


def text_expr(col: str, pg: str) -> str:
    """Canonical text of a PostgreSQL value, readable back by a DuckDB CAST."""
    if pg == "bytea":
        return f"encode({col}, 'hex')"
    if pg == "bytea[]":
        # DuckDB's list literal, each byte as \xHH: '[\x00\xFF, NULL, '']' (its JSON route reads escapes literally).
        each = "CASE WHEN e IS NULL THEN 'NULL' WHEN e = ''::bytea THEN '''''' ELSE regexp_replace(upper(encode(e, 'hex')), '(..)', '\\\\x\\1', 'g') END"
        return (f"CASE WHEN {col} IS NULL THEN NULL ELSE '[' || coalesce((SELECT string_agg({each}, ', ' ORDER BY i) "
                f"FROM unnest({col}) WITH ORDINALITY u(e, i)), '') || ']' END")
    if text_array(pg):
        return f"to_json({col}::text[])::text"      # each element as its exact text: JSON numbers are doubles to DuckDB
    if pg.endswith("[]") or pg == "jsonb":
        return f"to_json({col})::text"
    if pg == "interval":
        # PostgreSQL prints '-10 mons -3 days +04:05:06.789', which DuckDB cannot read: spell out the three parts.
        return (f"((extract(year FROM {col}) * 12 + extract(month FROM {col}))::text || ' months ' || extract(day FROM {col})::text || ' days ' || "
                f"(extract(hour FROM {col}) * 3600000000 + extract(minute FROM {col}) * 60000000 + extract(microsecond FROM {col}))::bigint::text "
                "|| ' microseconds')")
    if pg == "timestamp with time zone":
        # In UTC whatever the session's TimeZone (the postgres extension's connection keeps the server's default).
        return f"CASE WHEN isfinite({col}) AND {col} >= '0001-01-01 00:00:00+00' THEN ({col} AT TIME ZONE 'UTC')::text || '+00' ELSE {col}::text END"
    return f"{col}::text"
