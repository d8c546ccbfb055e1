"""Change sets: which lake rows a run sends, and the watermark it leaves.

Rules (the contract every destination relies on):

* **Cursor.**  A table's watermark is the pair (incremental value, primary key)
  of the greatest row loaded, ordered by the incremental column and then by
  the key.  The next run reads rows strictly after that pair, so rows sharing
  the watermark's timestamp are neither missed (a later key at the same
  instant is still after the cursor) nor read twice.
* **Lookback.**  ``CDC_LOOKBACK_SECONDS`` > 0 widens the window to every row
  with ``value >= watermark - lookback`` (time cursors only), to catch rows
  written late with an older timestamp.  Re-read rows cost a read, not a
  write: the merge only touches rows whose values differ, so counts stay exact.
* **NULL cursor values** are always re-sent (a NULL ``updated_at`` row still
  syncs); the merge makes that idempotent.
* **Future values** are loaded but never advance the watermark past the time
  of the run (UTC), so a row stamped year 9999 cannot hide later rows.
* **No incremental column**: every run sends the whole table (still merged,
  so only real differences are written).
* **Deletes** are found by key reconciliation, not by the cursor: after the
  upserts, the destination's row count is compared with the lake's; when the
  destination has more rows, its keys are compared with the lake's keys and
  the missing ones are deleted (children before parents).  When it has fewer
  (rows inserted with timestamps older than the lookback), the table is
  re-merged in full, so such rows are not lost.  Counts cannot see a late
  insert and a delete in the same run (they balance): only the lookback or
  ``--full-refresh`` brings that insert, as it does an update stamped before
  the watermark (tests/test_property.py pins both).  A soft-delete column is an
  ordinary column: the flag travels as an update.
* **Append-only** tables (no key) use the incremental value alone, strictly
  greater — so a row appended later with exactly the watermark's value would
  be missed.  A destination that can (``Capabilities.append_replaces_tail``)
  is sent every row ``>=`` the watermark instead and first removes its own rows
  from that value on (``ChangeSet.tail_from``), in the same transaction:
  exact, and the counts stay net.  **Full-replace** tables are sent whole every run.
* **Full refresh** ignores the watermark: the table is sent whole and rows the
  lake no longer has are deleted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from .model import APPEND, MERGE, REPLACE, TableSpec, Watermark
from .sql import ident
from .typemap import send_expr

TIME_TYPES = ("TIMESTAMP", "DATE")


@dataclass(frozen=True)
class ChangeSet:
    """The rows one table sends in one run, and the watermark they lead to."""

    spec: TableSpec
    select_sql: str                  # DuckDB query producing the transfer columns
    params: tuple[Any, ...]
    where: str                       # the change filter alone (same params)
    rows: int                        # how many rows the query returns
    watermark_before: Watermark
    watermark_after: Watermark
    full: bool                       # the whole table is sent (first load / refresh / replace)
    tail_from: str | None = None     # append: the destination first deletes its rows with the incremental value >= this

    def reader(self, con: duckdb.DuckDBPyConnection, batch_rows: int) -> pa.RecordBatchReader:
        """Stream the rows as Arrow record batches (bounded memory)."""
        return con.execute(self.select_sql, list(self.params)).to_arrow_reader(batch_rows)


def _is_time(duck_type: str) -> bool:
    return duck_type.upper().startswith(TIME_TYPES)


def _after_cursor(spec: TableSpec, wm: Watermark) -> tuple[str, list[Any]]:
    """SQL for "(inc, key) > (wm.value, wm.key)", expanded so NULL-free and portable."""
    inc = spec.incremental_column
    inc_type = spec.column(inc).type
    terms = [(ident(inc), inc_type, wm.value)]
    if wm.key and len(wm.key) == len(spec.primary_key):
        terms += [(ident(k), spec.column(k).type, v) for k, v in zip(spec.primary_key, wm.key)]
    params: list[Any] = []

    def build(i: int) -> str:
        col, typ, val = terms[i]
        params.append(str(val))
        if i == len(terms) - 1:
            return f"{col} > CAST(? AS {typ})"
        params.append(str(val))
        head = f"{col} > CAST(? AS {typ}) OR ({col} = CAST(? AS {typ}) AND ("
        return head + build(i + 1) + "))"

    return build(0), params


def change_filter(spec: TableSpec, wm: Watermark, lookback_seconds: float, full: bool,
                  append_tail: bool = False) -> tuple[str, list[Any]]:
    """WHERE clause (or '') and parameters selecting the rows to send."""
    inc = spec.incremental_column
    if full or spec.mode == REPLACE or not inc or wm.value is None:
        return "", []
    col = ident(inc)
    inc_type = spec.column(inc).type
    if spec.mode == APPEND:
        return f"WHERE {col} {'>=' if append_tail else '>'} CAST(? AS {inc_type})", [wm.value]
    if lookback_seconds > 0 and _is_time(inc_type):
        cond = f"{col} >= CAST(? AS {inc_type}) - to_microseconds(CAST(? AS BIGINT))"
        return f"WHERE {col} IS NULL OR {cond}", [wm.value, int(lookback_seconds * 1_000_000)]
    cond, params = _after_cursor(spec, wm)
    return f"WHERE {col} IS NULL OR {cond}", params


def next_watermark(con: duckdb.DuckDBPyConnection, spec: TableSpec, current: Watermark) -> Watermark:
    """The greatest (inc, key) in the lake, capped at now (UTC) for time cursors."""
    inc = spec.incremental_column
    if not inc or spec.mode == REPLACE:
        return Watermark()
    col = ident(inc)
    inc_type = spec.column(inc).type
    cap = ""
    upper = inc_type.upper()
    if "TIME ZONE" in upper:
        cap = f" AND {col} <= now()"
    elif upper.startswith("DATE"):
        cap = f" AND {col} <= CAST(timezone('UTC', now()) AS DATE)"
    elif upper.startswith("TIMESTAMP"):
        cap = f" AND {col} <= CAST(timezone('UTC', now()) AS TIMESTAMP)"
    key = list(spec.primary_key) if spec.mode == MERGE else []
    order = ", ".join(f"{ident(c)} DESC" for c in [inc, *key])
    select = ", ".join(f"CAST({ident(c)} AS VARCHAR)" for c in [inc, *key])
    row = con.execute(f"SELECT {select} FROM {ident(spec.name)} WHERE {col} IS NOT NULL{cap} ORDER BY {order} LIMIT 1").fetchone()
    if row is None:
        return current
    return Watermark(row[0], tuple(row[1:]))


def transfer_select(spec: TableSpec, where: str = "") -> str:
    cols = ", ".join(f"{send_expr(ident(c.name), c.type)} AS {ident(c.name)}" for c in spec.columns)
    return f"SELECT {cols} FROM {ident(spec.name)} {where}".rstrip()


def change_set(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    watermark: Watermark,
    lookback_seconds: float = 0.0,
    full: bool = False,
    append_tail: bool = False,
) -> ChangeSet:
    """Build the change set of ``spec`` after ``watermark``.

    ``append_tail``: the destination can replace an append-only table's rows from the watermark on."""
    full = full or spec.mode == REPLACE or not spec.incremental_column or watermark.value is None
    append_tail = append_tail and spec.mode == APPEND and not full
    where, params = change_filter(spec, watermark, lookback_seconds, full, append_tail)
    rows = con.execute(f"SELECT count(*) FROM {ident(spec.name)} {where}", params).fetchone()[0]
    after = next_watermark(con, spec, watermark) if spec.incremental_column else Watermark()
    if spec.mode == APPEND and after.value is None:
        after = watermark
    return ChangeSet(spec, transfer_select(spec, where), tuple(params), where, rows, watermark, after, full,
                     watermark.value if append_tail else None)


def missing_keys_sql(spec: TableSpec, dest_keys_view: str) -> str:
    """Keys present in the destination (a view of text columns) but gone from the lake."""
    cast = ", ".join(f"CAST(d.{ident(k)} AS {spec.column(k).type}) AS {ident(k)}" for k in spec.primary_key)
    keys = ", ".join(ident(k) for k in spec.primary_key)
    return f"SELECT {cast} FROM {dest_keys_view} d EXCEPT SELECT {keys} FROM {ident(spec.name)}"

