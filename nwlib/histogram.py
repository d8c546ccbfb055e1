"""A histogram of a lake column, counted by DuckDB.

Bins are equal-width between the column's minimum and maximum; a value
belongs to bin *i* when ``edge[i] <= value < edge[i+1]`` (the last bin also
holds the maximum), compared as DOUBLE, exactly as
``SELECT count(*) … WHERE col >= ? AND col < ?`` would count it.  One
set-based query (a range join of the rows against the bins), whatever the
table's size; NULLs are counted apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from .errors import LakeError, first_line
from .sql import ident

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
           "FLOAT", "DOUBLE", "REAL", "DECIMAL")


@dataclass(frozen=True)
class Histogram:
    table: str
    column: str
    edges: tuple[float, ...]     # len(counts) + 1 edges, the first the minimum, the last the maximum
    counts: tuple[int, ...]
    nulls: int

    @property
    def rows(self) -> int:
        return sum(self.counts) + self.nulls


def _column_type(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    found = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = ? "
                        "AND table_catalog = current_database()", [table, column]).fetchall()
    if not found:
        tables = con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ? AND table_catalog = current_database()",
                             [table]).fetchall()
        what = f"column {column!r} not found in table {table!r}" if tables else f"table {table!r} not found in the lake"
        raise LakeError(f"histogram: {what}", "check the names (DESCRIBE the table in a %sql cell)")
    return found[0][0]


def histogram(con: duckdb.DuckDBPyConnection, table: str, column: str, bins: int = 30) -> Histogram:
    """Count the values of ``table.column`` (a numeric column of the connection's current database) in ``bins`` bins."""
    if not isinstance(bins, int) or bins < 1:
        raise LakeError(f"histogram: bins must be a whole number ≥ 1 (got {bins!r})", "pass bins=30, for example")
    kind = _column_type(con, table, column)
    if not kind.upper().startswith(NUMERIC):
        raise LakeError(f"histogram: column {table}.{column} is {kind}, not a number",
                        "choose a numeric column, or cast it in a query first")
    src, col = ident(table), ident(column)
    try:
        lo, hi, nulls = con.execute(f"SELECT min(CAST({col} AS DOUBLE)), max(CAST({col} AS DOUBLE)), count(*) - count({col}) "
                                    f"FROM {src}").fetchone()
        if lo is None:
            return Histogram(table, column, (), (), int(nulls))
        if lo == hi:
            bins = 1
        width = (hi - lo) / bins
        edges = [lo + i * width for i in range(bins)] + [hi]
        # The last bin's upper bound is +infinity in the join, so that it also holds the maximum.
        rows = con.execute(
            f"WITH e AS (SELECT i - 1 AS b, edges[i] AS lo, CASE WHEN i = ? THEN 'infinity'::DOUBLE ELSE edges[i + 1] END AS hi "
            f"FROM (SELECT ?::DOUBLE[] AS edges) p, range(1, ? + 1) r(i)) "
            f"SELECT e.b, count(t.x) FROM e LEFT JOIN (SELECT CAST({col} AS DOUBLE) AS x FROM {src} WHERE {col} IS NOT NULL) t "
            f"ON t.x >= e.lo AND t.x < e.hi GROUP BY e.b ORDER BY e.b", [bins, edges, bins]).fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"histogram of {table}.{column} failed: {first_line(exc)}", "check the table in a %sql cell") from None
    return Histogram(table, column, tuple(edges), tuple(int(n) for _, n in rows), int(nulls))
