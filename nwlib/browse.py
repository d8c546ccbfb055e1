"""Browsing a lake table a page at a time, with an optional column filter.

The SQL the dashboard's Data tab runs: keyset paging on the primary key (no
OFFSET scan; ``rowid`` order for keyless tables) and a filter whose value is
always a bound parameter.  Identifiers go through :func:`nwlib.sql.ident`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from .errors import InputRejected
from .model import TableSpec
from .sql import ident

OPERATORS = ("=", "!=", ">=", "<=", "contains", "is null")
ROWID = "nw_rowid"


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: str = ""


@dataclass(frozen=True)
class Page:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    total: int                    # rows matching the filter
    last: tuple | None            # cursor of the page's last row (None when empty)


def where_clause(spec: TableSpec, flt: Filter | None) -> tuple[str, list[Any]]:
    """The filter as SQL (without WHERE) and its parameters; ('', []) for no filter."""
    if flt is None or not flt.column:
        return "", []
    if flt.column not in spec.column_names:
        raise InputRejected(f"{spec.name} has no column {flt.column!r}", f"choose one of: {', '.join(spec.column_names)}")
    if flt.op not in OPERATORS:
        raise InputRejected(f"unknown filter operator {flt.op!r}", f"use one of: {', '.join(OPERATORS)}")
    c = ident(flt.column)
    if flt.op == "is null":
        return f"{c} IS NULL", []
    if flt.value == "":
        raise InputRejected(f"the filter on {spec.name}.{flt.column} has no value", "type a value or choose 'is null'")
    if flt.op == "contains":
        return f"contains(lower(CAST({c} AS VARCHAR)), lower(?))", [flt.value]
    return f"{c} {flt.op} ?", [flt.value]


def page_query(spec: TableSpec, where: str, params: Sequence[Any], cursor: tuple | None, size: int) -> tuple[str, list[Any]]:
    """One page after ``cursor``: keyset on the primary key, or rowid order for keyless tables."""
    conds, args = ([where], list(params)) if where else ([], [])
    if spec.primary_key:
        keys = ", ".join(ident(k) for k in spec.primary_key)
        if cursor is not None:
            conds.append(f"({keys}) > ({', '.join('?' for _ in spec.primary_key)})")
            args += list(cursor)
        order = keys
    else:
        if cursor is not None:
            conds.append("rowid > ?")
            args.append(cursor[0])
        order = "rowid"
    sql = f"SELECT {'' if spec.primary_key else f'rowid AS {ROWID}, '}* FROM {spec.source}"
    sql += (" WHERE " + " AND ".join(conds) if conds else "") + f" ORDER BY {order} LIMIT {int(size)}"
    return sql, args


def read_page(con: duckdb.DuckDBPyConnection, spec: TableSpec, flt: Filter | None, cursor: tuple | None, size: int,
              total: int | None = None) -> Page:
    """A page of ``spec`` (rows after ``cursor``) and how many rows match; ``total`` skips the count when known."""
    where, params = where_clause(spec, flt)
    sql, args = page_query(spec, where, params, cursor, size)
    try:
        cur = con.execute(sql, args)
        rows = cur.fetchall()
        names = [d[0] for d in cur.description]
        if where or total is None:
            total = con.execute(f"SELECT count(*) FROM {spec.source}" + (f" WHERE {where}" if where else ""), params).fetchone()[0]
    except duckdb.ConversionException:
        col = flt.column if flt else "?"
        raise InputRejected(f"{flt.value if flt else ''!r} cannot be compared with {spec.name}.{col} ({spec.column(col).type})",
                             "type a value of that column's type") from None
    keyless = not spec.primary_key
    last = None
    if rows:
        r = rows[-1]
        last = (r[0],) if keyless else tuple(r[names.index(k)] for k in spec.primary_key)
    if keyless:
        names, rows = names[1:], [r[1:] for r in rows]
    return Page(tuple(names), tuple(tuple(r) for r in rows), int(total), last)
