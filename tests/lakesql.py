"""Write to a test's lake file directly, as a user's own DuckDB session would."""
from __future__ import annotations

import duckdb


def lake_sql(settings, *statements, params=None) -> None:
    """Run statements on the lake at ``settings.duckdb_path``; ``params`` bind to those with ``?``."""
    with duckdb.connect(str(settings.duckdb_path)) as con:
        for s in statements:
            if params is not None and "?" in s:
                con.execute(s, params)
            else:
                con.execute(s)
