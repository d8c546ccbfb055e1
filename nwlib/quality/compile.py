"""Each check as one set-based DuckDB query: ``SELECT bad_rows, sample_keys`` (no row-by-row Python).

``bad_rows`` counts the rows that break the check (for ``unique``: every row of a duplicated value; for
``row_count_change``: how many rows beyond the bound the count moved; for ``freshness``: 1 when stale); ``sample_keys`` holds up
to :data:`SAMPLE` of their primary keys as text (``a,b`` for a composite key, ``row N`` without a key).
Identifiers are quoted; values (accepted values, counts, ages) are bound parameters.  The one piece of
SQL taken as written is an ``expression`` check's boolean expression, from the versioned checks file.
"""
from __future__ import annotations

from typing import Any

from ..model import TableSpec
from ..sql import ident
from .rules import Check

SAMPLE = 5


def key_text(spec: TableSpec, alias: str = "t") -> str:
    """A row's key as text: ``42``, ``(BR, 7)`` for a composite key, ``row 12`` without a key."""
    if not spec.primary_key:
        return f"'row ' || CAST({alias}.rowid AS VARCHAR)"
    parts = [f"coalesce(CAST({alias}.{ident(k)} AS VARCHAR), 'NULL')" for k in spec.primary_key]
    return parts[0] if len(parts) == 1 else f"'(' || concat_ws(', ', {', '.join(parts)}) || ')'"


def _order(spec: TableSpec, alias: str = "t") -> str:
    """The sample's order: by the key's own values (10 after 9), not by its text."""
    return ", ".join(f"{alias}.{ident(k)}" for k in spec.primary_key) if spec.primary_key else f"{alias}.rowid"


def _rows(spec: TableSpec, where: str, join: str = "") -> str:
    """Bad rows = the rows of the table matching ``where`` (after ``join``): their count and a sample of keys."""
    bad = f"SELECT {key_text(spec)} AS k, row_number() OVER (ORDER BY {_order(spec)}) AS o FROM {spec.source} AS t {join} WHERE {where}"
    return (f"WITH bad AS ({bad}) SELECT (SELECT count(*) FROM bad), "
            f"(SELECT coalesce(list(k ORDER BY o), []) FROM (SELECT k, o FROM bad ORDER BY o LIMIT {SAMPLE}))")


def compile_check(check: Check, spec: TableSpec, ref: TableSpec | None = None, published_rows: int | None = None) -> tuple[str, list[Any]]:
    """The query and its parameters for ``check`` on the lake table ``spec`` (``ref``: a relationships check's parent)."""
    cols = [f"t.{ident(c)}" for c in check.columns]
    if check.kind == "not_null":
        return _rows(spec, " OR ".join(f"{c} IS NULL" for c in cols)), []
    if check.kind == "unique":
        match = " AND ".join(f"t.{ident(c)} = d.{ident(c)}" for c in check.columns)
        dups = (f"(SELECT {', '.join(ident(c) for c in check.columns)} FROM {spec.source} "
                f"WHERE {' AND '.join(f'{ident(c)} IS NOT NULL' for c in check.columns)} GROUP BY ALL HAVING count(*) > 1)")
        return _rows(spec, "true", f"SEMI JOIN {dups} AS d ON {match}"), []
    if check.kind == "accepted_values":
        # The values are cast to the column's own type (so `true` matches a BOOLEAN, 1.5 a DECIMAL's 1.50);
        # a value that is not of that type is DuckDB's conversion error, one line naming the check.
        kind = spec.column(check.columns[0]).type
        texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in check.values]
        return _rows(spec, f"{cols[0]} IS NOT NULL AND NOT list_contains(CAST(?::VARCHAR[] AS {kind}[]), {cols[0]})"), [texts]
    if check.kind == "relationships":
        assert ref is not None
        match = " AND ".join(f"t.{ident(c)} = p.{ident(r)}" for c, r in zip(check.columns, check.ref_columns))
        return _rows(spec, " AND ".join(f"{c} IS NOT NULL" for c in cols), f"ANTI JOIN {ref.source} AS p ON {match}"), []
    if check.kind == "expression":
        return _rows(spec, f"NOT ({check.sql})"), []
    if check.kind == "row_count_change":
        # bad = how far the count moved beyond a bound (0 within the bounds, or when never published)
        # Nothing published (or an empty table published) is no baseline: a first load grows from 0 by any share.
        base = published_rows or None
        low = None if base is None or check.max_drop_pct is None else base * (1 - check.max_drop_pct / 100)
        high = None if base is None or check.max_growth_pct is None else base * (1 + check.max_growth_pct / 100)
        return (f"WITH c AS (SELECT count(*) AS n FROM {spec.source}) "
                "SELECT CASE WHEN ?::BIGINT IS NULL THEN 0 WHEN n < ?::DOUBLE THEN ceil(?::DOUBLE - n) WHEN n > ?::DOUBLE THEN ceil(n - ?::DOUBLE) "
                "ELSE 0 END, ['lake ' || n::VARCHAR || ' rows, last published ' || coalesce(?::VARCHAR, 'never')] FROM c",
                [base, low, low, high, high, published_rows])
    if check.kind == "freshness":
        newest = f"max(CAST({ident(check.columns[0])} AS TIMESTAMP))"
        return (f"SELECT CASE WHEN {newest} IS NULL OR {newest} < CAST(now() AS TIMESTAMP) - to_seconds(?::DOUBLE) THEN 1 ELSE 0 END, "
                f"['newest ' || coalesce(CAST({newest} AS VARCHAR), 'none')] FROM {spec.source}"), [check.max_age_seconds]
    raise ValueError(f"unknown check kind {check.kind!r}")
