"""``nw verify``: is each destination table equal to its lake table?

Both sides are compared inside DuckDB: the destination's rows come back as
canonical text, are cast to the lake's types, and ``EXCEPT ALL`` both ways
counts rows missing from, or extra in, the destination — row for row and value
for value.  The checksum is an order-independent hash of the lake's rows.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from . import destinations, evolution
from .destinations.base import Destination
from .lake import LAKE_ALIAS, open_lake
from .model import TableSpec
from .plan import read_plan
from .readback import JSON_FUNCTION, compared_expr, lake_expr, use_exact_json
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

    def to_json(self) -> dict:
        """Stable keys (``nw verify --json``); ``sample_keys``: primary keys (or whole rows) of up to 5 differing rows."""
        return {"table": self.table, "lake_rows": self.lake_rows, "dest_rows": self.dest_rows, "missing": self.missing,
                "extra": self.extra, "checksum": self.checksum, "equal": self.ok, "sample_keys": [list(k) for k in self.sample]}


def check_table(con: duckdb.DuckDBPyConnection, dest: Destination, spec: TableSpec) -> TableCheck:
    use_exact_json(con)
    reader = dest.scan(spec)
    con.register("nw_dest_scan", reader)
    try:
        d_cols = ", ".join(f"{compared_expr(c)} AS {ident(c.name)}" for c in spec.columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE nw_dest AS SELECT {d_cols} FROM nw_dest_scan")
    finally:
        con.unregister("nw_dest_scan")
    l_cols = ", ".join(f"{lake_expr(c)} AS {ident(c.name)}" for c in spec.columns)
    # Catalog-qualified: a lake table may itself be called nw_lake (the temp view would shadow it).  Made once when a
    # column goes through the canonical-JSON function (Python, per value): the view is read four times below.
    kind = "TABLE" if JSON_FUNCTION in l_cols else "VIEW"
    con.execute(f"CREATE OR REPLACE TEMP {kind} nw_lake AS SELECT {l_cols} FROM {LAKE_ALIAS}.{spec.source}")
    try:
        lake_rows = con.execute("SELECT count(*) FROM nw_lake").fetchone()[0]
        dest_rows = con.execute("SELECT count(*) FROM nw_dest").fetchone()[0]
        missing_sql = "SELECT * FROM nw_lake EXCEPT ALL SELECT * FROM nw_dest"
        extra_sql = "SELECT * FROM nw_dest EXCEPT ALL SELECT * FROM nw_lake"
        missing = con.execute(f"SELECT count(*) FROM ({missing_sql})").fetchone()[0]
        extra = con.execute(f"SELECT count(*) FROM ({extra_sql})").fetchone()[0]
        checksum = con.execute("SELECT coalesce(sum(hash(nw_lake)), 0)::HUGEINT FROM nw_lake").fetchone()[0]
        sample = ()
        if missing or extra:
            keys = ", ".join(ident(k) for k in spec.primary_key) or "*"
            # Each side in its own parentheses: A EXCEPT ALL B UNION ALL C EXCEPT ALL D would read as ((A − B) ∪ C) − D.
            sample = tuple(con.execute(f"SELECT {keys} FROM (({missing_sql}) UNION ALL ({extra_sql})) LIMIT 5").fetchall())
    finally:
        con.execute(f"DROP {kind} IF EXISTS temp.main.nw_lake")
    return TableCheck(spec.name, lake_rows, dest_rows, missing, extra, f"{int(checksum) & (2**64 - 1):016x}", sample)


def verify(settings: Settings, tables: Iterable[str] | None = None, destination: Destination | None = None) -> list[TableCheck]:
    """Compare every (or each named) table, lake against destination; one :class:`TableCheck` per table."""
    with open_lake(settings, whole_tables=True) as con:
        plan = read_plan(settings, con, tables)
        dest = destination or destinations.create(settings)
        try:
            checked = [t for t in plan.order if not plan.specs[t].problem]
            states = dest.states(checked)
            return [check_table(con, dest, evolution.as_sent(plan.specs[t], settings.schema_policy(t), states[t].columns))
                    for t in checked]
        finally:
            if destination is None:
                dest.close()
