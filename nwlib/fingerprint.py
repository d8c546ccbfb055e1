"""Row fingerprints: a 64-bit hash of every column of a row, as the destination will hold it.

The fingerprint of a row is DuckDB's ``hash()`` of the row's columns in the
form they are sent (:func:`nwlib.typemap.send_expr`: a TIMESTAMP_NS as the
microseconds PostgreSQL keeps, a MAP with its keys sorted, …), so a change the
destination cannot hold is not a change, and every change it can hold is.
It includes the key, so two rows never swap fingerprints, and the column names
and types (:func:`shape`), so a renamed column re-sends every row, and so does a
retyped one: DuckDB hashes 150 as an INTEGER and 1.50 as a DECIMAL(10,2) alike,
and a column changed from cents to units would otherwise look unchanged.  It is stored as a
signed BIGINT (``hash - 2^63``) in the column :data:`COLUMN` of every
destination table, beside the row it describes.

Fingerprints are stable across runs, processes and machines for one DuckDB
and nwlib version.  :func:`version` names the function: it hashes a fixed probe
row, so a DuckDB upgrade that changes ``hash()`` changes the version, and the
engine then runs one full compare (recorded) instead of trusting stale values.
"""
from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

import duckdb

from .model import Column, TableSpec
from .sql import ident
from .typemap import send_expr

COLUMN = "nw_fingerprint"
RESERVED = (COLUMN,)
_FORMAT = "nw2"          # bump when nwlib changes what goes into a fingerprint
_PROBE = ("1::BIGINT", "'nw ação'::VARCHAR", "1.25::DOUBLE", "12.34::DECIMAL(18,2)", "DATE '2024-02-29'",
          "TIMESTAMP '2024-01-01 01:02:03.456789'", "true", "NULL::INTEGER", "[1, 2, NULL]", "{'a': 'b', 'n': 1}",
          "'\\x00\\xff'::BLOB", "INTERVAL '1 month 2 days 3 seconds'", "'0f8fad5b-d9cb-469f-a165-70867728950e'::UUID",
          "170141183460469231731687303715884105727::HUGEINT")


def hash_sql(columns: Sequence[Column], alias: str = "") -> str:
    """DuckDB expression: the fingerprint (signed BIGINT) of a row with these columns."""
    prefix = f"{alias}." if alias else ""
    parts = ", ".join(_part(prefix + ident(c.name), c.type) for c in columns)
    return f"CAST(CAST(hash('{shape(columns)}', {parts}) AS HUGEINT) - 9223372036854775808 AS BIGINT)"


# An ENUM's labels are not part of its type here: its values travel as their text, so a label added changes no row.
_ENUM = re.compile(r"ENUM\((?:'(?:[^']|'')*'|[^)'])*\)", re.IGNORECASE)


def _part(column_sql: str, duck_type: str) -> str:
    """A column's share of the fingerprint: its sent form, and for a list whether it is NULL (DuckDB hashes a NULL
    list and an empty one alike, and PostgreSQL keeps them apart)."""
    sent = send_expr(column_sql, duck_type)
    if duck_type.rstrip().endswith("]"):
        return f"{sent}, {column_sql} IS NULL"
    return sent


def shape(columns: Sequence[Column]) -> str:
    """What a row's fingerprint hashes besides its values: nwlib's format and the column names and types, in
    order (a renamed, retyped or reordered column changes every row; a new format too).  Hex only: safe in SQL text."""
    names = "\x00".join(f"{c.name}\x01{_ENUM.sub('ENUM', c.type).upper()}" for c in columns)
    return hashlib.sha256(f"{_FORMAT}\x00{names}".encode()).hexdigest()[:16]


def of(spec: TableSpec, alias: str = "") -> str:
    """The fingerprint expression of a table's rows."""
    return hash_sql(spec.columns, alias)


@functools.lru_cache(maxsize=1)
def version() -> str:
    """Names the fingerprint function: nwlib's format and DuckDB's hash of a fixed probe row."""
    con = duckdb.connect()
    try:
        probe = con.execute(f"SELECT hash({', '.join(_PROBE)})").fetchone()[0]
    finally:
        con.close()
    return f"{_FORMAT}-{probe:016x}"
