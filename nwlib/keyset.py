"""The keys a destination holds, remembered beside the lake — a hint, never the truth.

Finding deletes by asking the destination for every key costs a full key scan
each time a row disappears.  Instead, after each run the engine records the
primary keys it has made durable in a small DuckDB file under
``DESTINATION_PATH/.nw/`` (one per destination).  Deletes are then
``remembered keys EXCEPT lake keys``: a local anti-join, no network.

It is safe to lose or to be stale: the engine checks the destination's row
count after using it and falls back to the full key comparison when the
numbers do not add up, then rebuilds the record.  Deleting a key that is no
longer there is harmless; a key the record missed is caught by that check.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import duckdb

from .lake import LAKE_ALIAS
from .model import TableSpec
from .sql import ident

ALIAS = "nw_keys"


def keyset_path(destination_path: Path, destination_id: str) -> Path:
    digest = hashlib.sha256(destination_id.encode()).hexdigest()[:16]
    return Path(destination_path) / ".nw" / f"keys-{digest}.duckdb"


class KeySet:
    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, room: str | None = None, lake_alias: str = LAKE_ALIAS):
        """``room``: the memory limit the record is written with (kept for the rest of the run:
        DuckDB cannot always shrink back once blocks are pinned); ``lake_alias``: the name the
        lake is attached under in ``con``."""
        self.con = con
        self.lake_alias = lake_alias
        self.path = path
        self.room = room
        self.attached = False
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {ALIAS}")
                self.attached = True
                break
            except duckdb.Error:
                if attempt == 0 and path.exists():
                    path.unlink()  # unreadable hint: start it again
                else:
                    break

    def _table(self, spec: TableSpec) -> str:
        return f"{ALIAS}.main.{ident(spec.name)}"

    def _lake(self, spec: TableSpec) -> str:
        return f"{ident(self.lake_alias)}.main.{ident(spec.name)}"

    def has(self, spec: TableSpec) -> bool:
        if not self.attached:
            return False
        return bool(self.con.execute(
            "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND table_name = ?", [ALIAS, spec.name]).fetchone())

    def gone_sql(self, spec: TableSpec) -> str:
        """Keys remembered as in the destination but no longer in the lake."""
        # EXCEPT, not NOT EXISTS: DuckDB's anti-join cannot spill and ran out of a 64MB
        # memory limit on 3M keys (scale 100); EXCEPT spills and takes 0.16 s there.
        keys = ", ".join(ident(c) for c in spec.primary_key)
        return f"SELECT {keys} FROM {self._table(spec)} EXCEPT SELECT {keys} FROM {self._lake(spec)}"

    @contextlib.contextmanager
    def _writing(self):
        """Writing and checkpointing the record needs room; streaming runs on its own small view."""
        if self.room:
            self.con.execute(f"SET memory_limit = '{self.room}'")
        yield

    def rebuild(self, spec: TableSpec) -> None:
        if not self.attached:
            return
        keys = ", ".join(ident(k) for k in spec.primary_key)
        with self._writing():
            self.con.execute(f"CREATE OR REPLACE TABLE {self._table(spec)} AS SELECT {keys} FROM {self._lake(spec)}")
            self._flush()

    def _flush(self) -> None:
        # Written blocks stay pinned in memory until a checkpoint: flush so the record never
        # competes with the sync for DUCKDB_MEMORY_LIMIT (5M keys would otherwise pin ~40MB).
        self.con.execute(f"CHECKPOINT {ALIAS}")

    def add(self, spec: TableSpec, where: str, params) -> None:
        """Remember the keys of the rows a change set sent.

        A plain append (no join, so no memory beyond a scan): the record may hold a
        key more than once, which ``gone_sql``'s EXCEPT ignores.  When it has grown
        past twice the lake's size it is rebuilt.
        """
        if not self.has(spec):
            return
        keys = ", ".join(ident(c) for c in spec.primary_key)
        lake_table = self._lake(spec)
        with self._writing():
            self.con.execute(f"INSERT INTO {self._table(spec)} SELECT {keys} FROM {lake_table} {where}", list(params))
            self._flush()
        held = self.con.execute(f"SELECT count(*) FROM {self._table(spec)}").fetchone()[0]
        if held > 2 * self.con.execute(f"SELECT count(*) FROM {lake_table}").fetchone()[0] + 1000:
            self.rebuild(spec)

    def remove(self, spec: TableSpec, gone_table: str) -> None:
        if not self.has(spec):
            return
        match = " AND ".join(f"k.{ident(c)} IS NOT DISTINCT FROM g.{ident(c)}" for c in spec.primary_key)
        with self._writing():
            self.con.execute(f"DELETE FROM {self._table(spec)} k WHERE EXISTS (SELECT 1 FROM {gone_table} g WHERE {match})")
            self._flush()

    def forget(self, spec: TableSpec) -> None:
        if self.attached:
            self.con.execute(f"DROP TABLE IF EXISTS {self._table(spec)}")

    def close(self) -> None:
        if self.attached:
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"DETACH {ALIAS}")
            self.attached = False
