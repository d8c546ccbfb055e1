"""The keys an S3 table holds now, each with its row's fingerprint, kept in the destination's DuckDB session.

Derived once per run from the committed change files (latest operation per
key, deletes removed), then kept in step with what the run commits: the rows
a commit wrote replace theirs, deleted keys are removed.  They decide insert
vs update for each row sent, which keys a delete really removes, and what
``fingerprints()`` reports.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ...fingerprint import COLUMN as FP
from ...model import MERGE, TableSpec
from ...sql import ident
from ...typemap import pg_type
from .layout import OP, SEQ


def no_keys_sql(spec: TableSpec) -> str:
    """An empty relation with the table's key columns, typed as they are sent."""
    def typ(k):
        try:
            c = spec.column(k)
        except KeyError:
            return "VARCHAR"
        return pg_type(c.type).send or c.type
    keys = ", ".join(f"CAST(NULL AS {typ(k)}) AS {ident(k)}" for k in spec.primary_key)
    return f"SELECT {keys}, CAST(NULL AS BIGINT) AS {ident(FP)} WHERE false"


class KeySets:
    def __init__(self, duck: Callable, source: Callable, errors):
        """``duck()``: the session; ``source(table, columns)``: (view over committed files, its columns)."""
        self.duck, self.source, self.errors = duck, source, errors
        self.cached: set[str] = set()          # tables whose key set is in the session

    def forget_all(self) -> None:
        self.cached = set()

    @staticmethod
    def table(spec: TableSpec) -> str:
        return "nw_keys_" + hashlib.md5(spec.name.encode()).hexdigest()[:12]

    def ensure(self, spec: TableSpec) -> str:
        """The destination's current keys (and fingerprints) of a merge table, in the DuckDB session."""
        con, table = self.duck(), self.table(spec)
        if spec.name in self.cached:
            return table
        keys = ", ".join(ident(k) for k in spec.primary_key)
        view, present = self.source(spec.name, (*spec.primary_key, FP))
        if view is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {no_keys_sql(spec)}")
        else:
            fp = f"arg_max({ident(FP)}, {SEQ})" if FP in present else "CAST(NULL AS BIGINT)"   # files of an older nwlib: unknown
            latest = f"SELECT {keys}, arg_max({OP}, {SEQ}) AS op, {fp} AS {ident(FP)} FROM {view} GROUP BY ALL"
            with self.errors("read keys"):
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {keys}, {ident(FP)} FROM ({latest}) WHERE op <> 'delete'")
        self.cached.add(spec.name)
        return table

    def remember(self, spec: TableSpec, parts: list[Path], fresh: bool) -> None:
        """After a commit: the rows the parts hold replace theirs in the session's key set; drop local parts.

        ``fresh``: the destination held nothing of the table before (first load or snapshot)."""
        try:
            if spec.mode != MERGE:
                return
            con, table = self.duck(), self.table(spec)
            cols = ", ".join(ident(c) for c in (*spec.primary_key, FP))
            files = [str(p) for p in parts]
            if fresh:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {no_keys_sql(spec)}")
                self.cached.add(spec.name)
            if spec.name in self.cached and files:
                con.execute(f"CREATE OR REPLACE TEMP TABLE nw_written AS SELECT {cols} FROM read_parquet(?) WHERE {OP} <> 'delete'", [files])
                self.remove(spec, "nw_written")
                con.execute(f"INSERT INTO {table} SELECT {cols} FROM nw_written")
                con.execute("DROP TABLE nw_written")
        finally:
            for p in parts:
                p.unlink(missing_ok=True)

    def remove(self, spec: TableSpec, gone_table: str) -> None:
        match = " AND ".join(f"k.{ident(k)} = g.{ident(k)}" for k in spec.primary_key)
        self.duck().execute(f"DELETE FROM {self.table(spec)} k WHERE EXISTS (SELECT 1 FROM {gone_table} g WHERE {match})")
