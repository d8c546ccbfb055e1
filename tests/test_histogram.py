"""nwlib.histogram: every bin's count is the DuckDB count(*) of its interval, whatever the data."""
from __future__ import annotations

import duckdb
import pytest

from nwlib.errors import LakeError
from nwlib.histogram import histogram


def _bin_counts_by_sql(con, table, column, edges):
    """count(*) per bin as a person would write it: [edge_i, edge_i+1), the last bin closed."""
    out = []
    for i in range(len(edges) - 1):
        op = "<=" if i == len(edges) - 2 else "<"
        out.append(con.execute(f"SELECT count(*) FROM {table} WHERE {column} >= ? AND {column} {op} ?", [edges[i], edges[i + 1]]).fetchone()[0])
    return out


@pytest.mark.parametrize("column_type, values_sql", [
    ("DECIMAL(12,2)", "SELECT round(random() * 5000, 2) FROM range(20000)"),                         # money, like valor_total
    ("DOUBLE", "SELECT (random() - 0.5) * 1e6 FROM range(20000) UNION ALL SELECT NULL FROM range(37)"),  # negatives and NULLs
    ("INTEGER", "SELECT (i % 7) * 3 FROM range(10000) r(i)"),                                           # many values on edges
    ("BIGINT", "SELECT 42 FROM range(10)"),                                                             # one value only
])
def test_bin_counts_match_count_star_per_bin(column_type, values_sql):
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    con.execute(f"CREATE TABLE t (v {column_type})")
    con.execute(f"INSERT INTO t {values_sql}")
    h = histogram(con, "t", "v", bins=30)
    assert list(h.counts) == _bin_counts_by_sql(con, "t", "v", h.edges)
    non_null, nulls = con.execute("SELECT count(v), count(*) - count(v) FROM t").fetchone()
    assert sum(h.counts) == non_null and h.nulls == nulls
    assert len(h.edges) == len(h.counts) + 1
    assert h.edges[0] == con.execute("SELECT min(v)::DOUBLE FROM t").fetchone()[0]
    assert h.edges[-1] == con.execute("SELECT max(v)::DOUBLE FROM t").fetchone()[0]


def test_bins_of_the_sample_lake_valor_total(tmp_path):
    """The case a user met: 10k orders, 30 bins; bins hold hundreds of rows each, not 1–3."""
    from nwlib.bootstrap import bootstrap

    path = tmp_path / "lake.duckdb"
    bootstrap(path, scale=1, seed=42)
    con = duckdb.connect(str(path), read_only=True)
    h = histogram(con, "pedidos", "valor_total", bins=30)
    assert sum(h.counts) == con.execute("SELECT count(valor_total) FROM pedidos").fetchone()[0]
    assert list(h.counts) == _bin_counts_by_sql(con, "pedidos", "valor_total", h.edges)
    assert max(h.counts) > 100


def test_identifiers_are_quoted_and_bad_requests_are_one_line():
    con = duckdb.connect()
    con.execute('CREATE TABLE "odd table" ("a col" INTEGER, txt VARCHAR)')
    con.execute("""INSERT INTO "odd table" VALUES (1, 'x'), (2, 'y'), (NULL, 'z')""")
    h = histogram(con, "odd table", "a col", bins=2)
    assert h.counts == (1, 1) and h.nulls == 1
    with pytest.raises(LakeError, match="column 'nope' not found in table 'odd table'"):
        histogram(con, "odd table", "nope")
    with pytest.raises(LakeError, match="table 'missing' not found"):
        histogram(con, "missing", "x")
    with pytest.raises(LakeError, match="is VARCHAR, not a number"):
        histogram(con, "odd table", "txt")
    with pytest.raises(LakeError, match="bins must be"):
        histogram(con, "odd table", "a col", bins=0)


def test_an_empty_or_all_null_column():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v DOUBLE)")
    assert histogram(con, "t", "v").counts == ()
    con.execute("INSERT INTO t VALUES (NULL), (NULL)")
    h = histogram(con, "t", "v")
    assert h.counts == () and h.nulls == 2
