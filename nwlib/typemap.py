"""DuckDB → PostgreSQL types, as data.

For each lake type we say three things:

* ``pg``: the destination column type (faithful: no overflow, no rounding,
  no time-zone shift);
* ``send``: the DuckDB type the value is cast to before it leaves the lake as
  Arrow (``None`` = as it is), chosen so that pgpq can encode it as PostgreSQL
  binary COPY;
* ``direct``: whether the binary COPY of ``send`` lands in ``pg`` as it is.
  When not, the value arrives as ``staging`` (text) and the merge casts it with
  ``::pg`` — a set-based cast inside PostgreSQL, never a Python loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class PgType:
    pg: str
    send: str | None = None      # DuckDB cast target before transfer
    direct: bool = True
    json: bool = False            # value travels as JSON text (to_json)
    lossy: bool = False           # the sent form drops detail (nanoseconds): distinct lake values may become equal

    @property
    def staging(self) -> str:
        return self.pg if self.direct else ("text" if not self.pg.endswith("[]") else "text[]")


_TEXT = "VARCHAR"

# DuckDB type id → PgType, for every scalar type.
SCALARS: dict[str, PgType] = {
    "boolean": PgType("boolean"),
    "tinyint": PgType("smallint", "SMALLINT"),
    "smallint": PgType("smallint"),
    "integer": PgType("integer"),
    "bigint": PgType("bigint"),
    "utinyint": PgType("smallint", "SMALLINT"),
    "usmallint": PgType("integer", "INTEGER"),
    "uinteger": PgType("bigint", "BIGINT"),
    "ubigint": PgType("numeric(20,0)", "DECIMAL(20,0)"),
    "hugeint": PgType("numeric(39,0)", _TEXT, direct=False),
    "uhugeint": PgType("numeric(39,0)", _TEXT, direct=False),
    "bignum": PgType("numeric", _TEXT, direct=False),
    "varint": PgType("numeric", _TEXT, direct=False),
    "float": PgType("real"),
    "double": PgType("double precision"),
    "varchar": PgType("text"),
    "blob": PgType("bytea"),
    "date": PgType("date"),
    "time": PgType("time"),
    "time with time zone": PgType("time with time zone", _TEXT, direct=False),
    "time_ns": PgType("time", "TIME", lossy=True),
    "timestamp": PgType("timestamp"),
    "timestamp_s": PgType("timestamp", "TIMESTAMP"),
    "timestamp_ms": PgType("timestamp", "TIMESTAMP"),
    "timestamp_ns": PgType("timestamp", "TIMESTAMP", lossy=True),
    "timestamp with time zone": PgType("timestamp with time zone"),
    "interval": PgType("interval", _TEXT, direct=False),
    "uuid": PgType("uuid", _TEXT, direct=False),
    "enum": PgType("text", _TEXT),
    "bit": PgType("varbit", _TEXT, direct=False),
}
JSONB = PgType("jsonb", _TEXT, direct=False, json=True)


class UnsupportedType(ValueError):
    pass


def pg_type(duck_type: str) -> PgType:
    """Map a DuckDB type string (as DuckDB prints it) to its PostgreSQL form."""
    if duck_type.upper() == "JSON":
        return PgType("jsonb", _TEXT, direct=False)
    t = duckdb.sqltype(duck_type)
    return _map(t)


def _map(t: duckdb.typing.DuckDBPyType) -> PgType:
    tid = t.id
    if tid == "decimal":
        p, s = (v for _, v in t.children)
        return PgType(f"numeric({p},{s})")
    if tid in ("list", "array"):
        child_type = dict(t.children)["child"]
        if str(child_type).upper() == "JSON" or child_type.id in ("list", "array", "struct", "map", "union"):
            return JSONB  # nested collections keep their shape as jsonb
        child = _map(child_type)
        if child.json:
            return JSONB
        if child.pg == "timestamp with time zone":
            # Sent as it is (to every destination, and into fingerprints), but not straight into PostgreSQL: pgpq marks
            # the elements of a binary array of zoned timestamps as timestamp, which timestamptz[] refuses.  The
            # PostgreSQL copier writes them as text with their offset instead (copy.zoned_lists_as_text).
            return PgType("timestamp with time zone[]", None, direct=False)
        send_child = child.send or str(child_type)
        needs_cast = child.send is not None or tid == "array"
        return PgType(child.pg + "[]", f"{send_child}[]" if needs_cast else None, direct=child.direct)
    if tid in ("struct", "map", "union"):
        return JSONB
    if tid in SCALARS:
        return SCALARS[tid]
    raise UnsupportedType(str(t))


def send_expr(column_sql: str, duck_type: str) -> str:
    """DuckDB expression that prepares a column for transfer.

    A MAP travels with its entries sorted by key: the same map in another key
    order is the same value (jsonb would sort it anyway), so it neither counts
    as a change nor reads back as a difference."""
    m = pg_type(duck_type)
    if m.json:
        if duck_type.upper() != "JSON" and duckdb.sqltype(duck_type).id == "map":
            column_sql = f"map_from_entries(list_sort(map_entries({column_sql})))"
        return f"CAST(to_json({column_sql}) AS VARCHAR)"
    if m.send:
        return f"CAST({column_sql} AS {m.send})"
    return column_sql


def merge_expr(column_sql: str, duck_type: str) -> str:
    """PostgreSQL expression that turns a staging column into the target type."""
    m = pg_type(duck_type)
    return column_sql if m.direct else f"{column_sql}::{m.pg}"
