"""Where an S3 table's files go, and how its current rows are derived from them.

Each commit (one step of a run, or one batch of deletes) writes each table's
rows as ZSTD Parquet under a Hive layout::

    <prefix>/<table>/dt=YYYY-MM-DD/run=<run id>/part-<commit seq>-<n>.parquet

with ``nw_operation`` (insert/update/delete), ``nw_run_id`` and ``nw_seq`` (the
commit sequence).  A table's current rows are the latest row per key by
(commit sequence, operation), deletes removed.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from ...sql import ident

OP, RUN, SEQ = "nw_operation", "nw_run_id", "nw_seq"
META_COLUMNS = (OP, RUN, SEQ)
STATE_DIR = "_nw"
PART_ROWS = 1_000_000
PART_KEY = re.compile(r"/dt=[^/]+/run=([^/]+)/(?:[^/]+=[^/]*/)*part-(\d+)-(\d+)\.parquet$")


def folder(table: str) -> str:
    """A table's folder name: the name itself when it is plain, else percent-encoded."""
    return table if re.fullmatch(r"[A-Za-z0-9_.\-]+", table) else quote(table, safe="")


def part_name(seq: int, n: int) -> str:
    return f"part-{seq:08d}-{n:04d}.parquet"


def _op_rank() -> str:
    return f"CASE {OP} WHEN 'delete' THEN 2 WHEN 'update' THEN 1 ELSE 0 END"


def current_rows_sql(source: str, key: Sequence[str], select: str = "*") -> str:
    """The latest row of each key by (commit sequence, operation), deletes removed."""
    if not key:
        return f"SELECT {select} FROM {source} WHERE {OP} IS DISTINCT FROM 'delete'"
    part = ", ".join(ident(k) for k in key)
    ranked = (f"SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY {SEQ} DESC, {_op_rank()} DESC) AS nw_rn "
              f"FROM {source}")
    return f"SELECT {select} FROM ({ranked}) WHERE nw_rn = 1 AND {OP} <> 'delete'"
