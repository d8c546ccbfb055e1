"""Reading a destination's rows back into the lake's types, for comparison.

A destination returns rows as canonical text (PostgreSQL) or as typed columns
(Parquet, Delta).  These DuckDB expressions bring both sides of a comparison
to one comparable form: :func:`lake_expr` for the lake's column,
:func:`dest_expr` for the read-back column, :func:`file_exprs` for what the
file-based destinations hand back.  Used by ``nw verify`` and by the S3 and
Delta destinations; it depends on nothing above the type map.
"""
from __future__ import annotations

from collections.abc import Sequence

import duckdb

from .model import Column
from .sql import ident
from .typemap import pg_type, send_expr


def is_json(duck_type: str) -> bool:
    return duck_type.upper() == "JSON"


def is_nested(duck_type: str) -> bool:
    """LIST / ARRAY / STRUCT / MAP / UNION (JSON is text, not nested)."""
    if is_json(duck_type):
        return False
    return duckdb.sqltype(duck_type).id in ("list", "array", "struct", "map", "union")


def lake_expr(column: Column) -> str:
    """The lake's value in the form both sides are compared in."""
    col, typ = ident(column.name), column.type
    if is_json(typ):
        return f"CAST(json({col}) AS VARCHAR)"
    return send_expr(col, typ)


def dest_expr(column: Column) -> str:
    """Cast a destination's text (or typed) column back to the lake's comparable form."""
    col, typ = ident(column.name), column.type
    if is_json(typ):
        return f"CAST(json({col}) AS VARCHAR)"
    if typ.upper() == "BLOB":
        parsed = f"unhex(CAST({col} AS VARCHAR))"
    elif typ.upper() == "BLOB[]":
        parsed = f"CAST({col} AS BLOB[])"   # a typed list, or DuckDB's list literal text (PostgreSQL's read-back)
    elif is_nested(typ):
        parsed = f"CAST(CAST({col} AS JSON) AS {typ})"
    else:
        parsed = f"CAST({col} AS {typ})"
    return send_expr(parsed, typ)


def file_exprs(columns: Sequence[Column], present: set[str]) -> str:
    """Columns of a Parquet/Delta table as :func:`dest_expr` reads them: typed where DuckDB can CAST back,
    BLOB as hex, native lists as JSON text, absent columns as NULL."""
    out = []
    for c in columns:
        col = ident(c.name)
        if c.name not in present:
            out.append(f"CAST(NULL AS VARCHAR) AS {col}")
        elif c.type.upper() == "BLOB":
            out.append(f"hex(CAST({col} AS BLOB)) AS {col}")
        elif is_nested(c.type) and not pg_type(c.type).json:  # a native list, not JSON text
            out.append(f"CAST(to_json({col}) AS VARCHAR) AS {col}")
        else:
            out.append(col)
    return ", ".join(out)
