"""Reading a destination's rows back into the lake's types, for comparison.

A destination returns rows as canonical text (PostgreSQL) or as typed columns
(Parquet, Delta).  These DuckDB expressions bring both sides of a comparison
to one comparable form: :func:`lake_expr` for the lake's column,
:func:`dest_expr` for the read-back column, :func:`file_exprs` for what the
file-based destinations hand back.  Used by ``nw verify`` and by the S3 and
Delta destinations; it depends on nothing above the type map.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Context, Decimal

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


JSON_FUNCTION = "nw_canonical_json"


def canonical_json(text: str | None) -> str | None:
    """One text per JSON value: keys sorted, no spaces, numbers exact (1.0, 1 and 1e0 alike; the 29th
    digit kept) and still numbers (1 is not "1"), NaN/Infinity as words.  Text that is not JSON stays as it is,
    marked, so it differs."""
    if text is None:
        return None

    def number(raw: str) -> Decimal:
        return Decimal(raw).normalize(Context(prec=max(28, len(raw))))

    def dump(value) -> str:
        if isinstance(value, dict):
            return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dump(value[k])}" for k in sorted(value)) + "}"
        if isinstance(value, list):
            return "[" + ",".join(dump(v) for v in value) + "]"
        if isinstance(value, Decimal):
            if value.is_nan():
                return "NaN"
            if value.is_infinite():
                return "Infinity" if value > 0 else "-Infinity"
            if value == 0:
                return "0"       # -0 too: PostgreSQL's numeric has no negative zero
            return format(value, "f") if value == value.to_integral_value() else str(value)
        if isinstance(value, float):  # NaN / Infinity, read by parse_constant
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        return json.dumps(value, ensure_ascii=False)    # text, true/false, null
    try:
        parsed = json.loads(text, parse_float=number, parse_int=number, parse_constant=float)
    except ValueError:
        return "not json: " + text
    return dump(parsed)


def use_exact_json(con: duckdb.DuckDBPyConnection) -> None:
    """Give ``con`` the function :func:`lake_expr` and :func:`dest_expr` use for JSON columns.

    DuckDB's own ``json()`` reads numbers as doubles (a 29th digit vanishes), so the comparison is
    made on :func:`canonical_json` instead (a vectorised Python function: ``nw verify`` only)."""
    import pyarrow as pa

    def canonical(values):
        return pa.array([canonical_json(v) for v in values.to_pylist()], pa.string())
    try:
        con.create_function(JSON_FUNCTION, canonical, ["VARCHAR"], "VARCHAR", type="arrow")
    except duckdb.Error:
        pass  # already there


def travels_as_json(duck_type: str) -> bool:
    """A JSON column, or a nested one sent as JSON text (a STRUCT, a MAP, a list of lists): compared as canonical
    JSON text on both sides, not cast back to the lake's type (JSON numbers are doubles to DuckDB, and a BLOB
    inside a STRUCT comes back as its escaped text)."""
    return pg_type(duck_type).json


def text_array(pg: str) -> bool:
    """A PostgreSQL array whose elements JSON cannot carry exactly (a numeric past a double's digits, a bit
    string): read back element by element as text."""
    return pg.endswith("[]") and pg[:-2].split("(")[0] in ("numeric", "varbit")


def text_elements(duck_type: str) -> bool:
    """A list sent as such an array (:func:`text_array`): read back as text elements, then cast."""
    m = pg_type(duck_type)
    return not m.json and text_array(m.pg)


def lake_expr(column: Column) -> str:
    """The lake's value in the form both sides are compared in (JSON needs :func:`use_exact_json`)."""
    col, typ = ident(column.name), column.type
    if is_json(typ):
        return f"{JSON_FUNCTION}(CAST({col} AS VARCHAR))"
    if travels_as_json(typ):
        return f"{JSON_FUNCTION}({send_expr(col, typ)})"
    return send_expr(col, typ)


def compared_expr(column: Column) -> str:
    """The destination's read-back value in the form :func:`lake_expr` gives the lake's (``nw verify``)."""
    if travels_as_json(column.type):
        return f"{JSON_FUNCTION}(CAST({ident(column.name)} AS VARCHAR))"
    return dest_expr(column)


def dest_expr(column: Column) -> str:
    """Cast a destination's text (or typed) column back to the lake's comparable form (JSON: see :func:`lake_expr`)."""
    col, typ = ident(column.name), column.type
    if is_json(typ):
        return f"{JSON_FUNCTION}(CAST({col} AS VARCHAR))"
    if typ.upper() == "BLOB":
        parsed = f"unhex(CAST({col} AS VARCHAR))"
    elif typ.upper() == "BLOB[]":
        parsed = f"CAST({col} AS BLOB[])"   # a typed list, or DuckDB's list literal text (PostgreSQL's read-back)
    elif text_elements(typ):
        parsed = f"CAST(CAST(CAST({col} AS JSON) AS VARCHAR[]) AS {typ})"
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
        elif text_elements(c.type):
            out.append(f"CAST(to_json(CAST({col} AS VARCHAR[])) AS VARCHAR) AS {col}")
        elif is_nested(c.type) and not pg_type(c.type).json:  # a native list, not JSON text
            out.append(f"CAST(to_json({col}) AS VARCHAR) AS {col}")
        else:
            out.append(col)
    return ", ".join(out)
