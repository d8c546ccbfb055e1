"""``nw verify``: is each destination table equal to its lake table?

Both sides are compared inside DuckDB: the destination's rows come back as
canonical text, are cast to the lake's types, and ``EXCEPT ALL`` both ways
counts rows missing from, or extra in, the destination — row for row and value
for value.  The checksum is an order-independent hash of the lake's rows.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from . import destinations
from .destinations.base import Destination
from .lake import open_lake
from .model import TableSpec
from .plan import read_plan
from .readback import dest_expr, is_json, lake_expr
from .settings import Settings
from .sql import ident


@dataclass(frozen=True)
class TableCheck:
    table: str
    lake_rows: int
    dest_rows: int
    missing: int           # in the lake, not in the destination
    extra: int             # in the destination, not in the lake
    checksum: str
    sample: tuple = ()

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.lake_rows == self.dest_rows


def check_table(con: duckdb.DuckDBPyConnection, dest: Destination, spec: TableSpec) -> TableCheck:
    reader = dest.scan(spec)
    con.register("nw_dest_scan", reader)
    try:
        d_cols = ", ".join(f"{dest_expr(c)} AS {ident(c.name)}" for c in spec.columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE nw_dest AS SELECT {d_cols} FROM nw_dest_scan")
    finally:
        con.unregister("nw_dest_scan")
    l_cols = ", ".join(f"{lake_expr(c)} AS {ident(c.name)}" for c in spec.columns)
    con.execute(f"CREATE OR REPLACE TEMP VIEW nw_lake AS SELECT {l_cols} FROM {ident(spec.name)}")
    lake_rows = con.execute("SELECT count(*) FROM nw_lake").fetchone()[0]
    dest_rows = con.execute("SELECT count(*) FROM nw_dest").fetchone()[0]
    missing_sql = "SELECT * FROM nw_lake EXCEPT ALL SELECT * FROM nw_dest"
    extra_sql = "SELECT * FROM nw_dest EXCEPT ALL SELECT * FROM nw_lake"
    missing = con.execute(f"SELECT count(*) FROM ({missing_sql})").fetchone()[0]
    extra = con.execute(f"SELECT count(*) FROM ({extra_sql})").fetchone()[0]
    json_cols = [c.name for c in spec.columns if is_json(c.type)]
    if (missing or extra) and json_cols and missing == extra:
        missing, extra = _json_recheck(con, missing_sql, extra_sql, json_cols)
    checksum = con.execute("SELECT coalesce(sum(hash(nw_lake)), 0)::HUGEINT FROM nw_lake").fetchone()[0]
    sample = ()
    if missing or extra:
        keys = ", ".join(ident(k) for k in spec.primary_key) or "*"
        sample = tuple(con.execute(f"SELECT {keys} FROM ({missing_sql} UNION ALL {extra_sql}) LIMIT 5").fetchall())
    return TableCheck(spec.name, lake_rows, dest_rows, missing, extra, f"{int(checksum) & (2**64 - 1):016x}", sample)


def _json_recheck(con, missing_sql: str, extra_sql: str, json_cols: list[str]) -> tuple[int, int]:
    """JSON text may differ only in key order/spacing: compare candidates parsed."""
    def number(text: str) -> Decimal:
        return Decimal(text).normalize()   # jsonb keeps 1.25e2 as 125 and DuckDB prints 125.0: the same number

    def canon(rows, names):
        out = []
        for r in rows:
            row = dict(zip(names, r))
            for c in json_cols:
                if row[c] is not None:
                    row[c] = json.dumps(json.loads(row[c], parse_float=number, parse_int=number), sort_keys=True, default=str)
            out.append(tuple(sorted((k, _hashable(v)) for k, v in row.items())))
        return out

    a_cur = con.execute(missing_sql)
    names = [d[0] for d in a_cur.description]
    a = canon(a_cur.fetchall(), names)
    b = canon(con.execute(extra_sql).fetchall(), names)
    from collections import Counter
    ca, cb = Counter(a), Counter(b)
    return sum((ca - cb).values()), sum((cb - ca).values())


def _hashable(value):
    """Rows as Counter keys: lists become tuples, NaN a marker (NaN is not equal to itself)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, float) and value != value:
        return ("NaN",)
    return value


def verify(settings: Settings, tables: Iterable[str] | None = None, destination: Destination | None = None) -> list[TableCheck]:
    """Compare every (or each named) table, lake against destination; one :class:`TableCheck` per table."""
    with open_lake(settings, settings.duckdb_memory_limit) as con:
        plan = read_plan(settings, con, tables)
        dest = destination or destinations.create(settings)
        try:
            return [check_table(con, dest, plan.specs[t]) for t in plan.order]
        finally:
            if destination is None:
                dest.close()
