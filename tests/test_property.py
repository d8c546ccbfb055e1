"""Property: after any sequence of lake changes and syncs, the destination equals the lake — on PostgreSQL, S3 and Delta.

A small schema with a foreign key (child → parent).  Hypothesis draws inserts,
updates and deletes — stamped newer than everything, at the same instant as
the newest row, older, NULL, or not re-stamped at all — whole-table rebuilds
(every row rewritten with older stamps), and syncs at random steps; after
every sync ``verify`` must find both tables equal, row for row and value for
value.  No ``CDC_LOOKBACK_SECONDS``: change detection compares fingerprints,
so no timestamp needs to be right (nwlib/cdc.py).
"""
from __future__ import annotations

import shutil
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from nwlib.engine import sync
from nwlib.settings import load_settings
from nwlib.verification import verify

T0 = datetime(2025, 1, 1)
LATE = 3600          # the latest a row is stamped behind the newest one, in seconds

texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6)
values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))
stamps = st.one_of(st.just("newer"), st.just("same"), st.integers(1, LATE).map(lambda s: ("older", s)), st.just("null"), st.just("keep"))
pick = st.integers(0, 10**6)
ops = st.one_of(
    st.tuples(st.just("insert_parent"), texts, stamps),
    st.tuples(st.just("insert_child"), pick, values, stamps),
    st.tuples(st.just("update_parent"), pick, texts, stamps),
    st.tuples(st.just("update_child"), pick, values, stamps),
    st.tuples(st.just("move_child"), pick, pick, stamps),
    st.tuples(st.just("delete_child"), pick),
    st.tuples(st.just("delete_parent"), pick),
    st.tuples(st.just("rebuild"), st.integers(1, LATE)),            # every row rewritten, stamped that much older
    st.just(("sync",)), st.just(("sync",)), st.just(("sync",)),   # a sync about every fourth step
)


class Lake:
    """The lake plus what the test knows of it (ids), so every change keeps the FK intact."""

    def __init__(self, path: Path):
        self.path = path
        self.clock = T0
        self.next_id = 1
        self.parents: list[int] = []
        self.children: dict[int, int] = {}          # child id → parent id
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR, updated_at TIMESTAMP)")
            con.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL, v DOUBLE, updated_at TIMESTAMP)")
            con.execute("CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)")
            con.execute("INSERT INTO fk_metadata VALUES ('child', 'parent_id', 'parent', 'id')")

    def stamp(self, how, column: str = "updated_at") -> str:
        """SQL for the new stamp: a parameter placeholder, or the row's own stamp when it is not bumped."""
        return column if how == "keep" else "?"

    def stamp_value(self, how) -> list:
        if how == "keep":
            return []
        if how == "newer":
            self.clock += timedelta(seconds=1)
            return [self.clock]
        if how == "same":
            return [self.clock]
        if how == "null":
            return [None]
        return [self.clock - timedelta(seconds=how[1])]

    def apply(self, op) -> None:
        kind = op[0]
        with duckdb.connect(str(self.path)) as con:
            if kind == "insert_parent":
                self.parents.append(self.next_id)
                con.execute("INSERT INTO parent VALUES (?, ?, ?)", [self.next_id, op[1], *(self.stamp_value(op[2]) or [self.clock])])
                self.next_id += 1
            elif kind == "insert_child" and self.parents:
                parent = self.parents[op[1] % len(self.parents)]
                con.execute("INSERT INTO child VALUES (?, ?, ?, ?)", [self.next_id, parent, op[2], *(self.stamp_value(op[3]) or [self.clock])])
                self.children[self.next_id] = parent
                self.next_id += 1
            elif kind == "update_parent" and self.parents:
                con.execute(f"UPDATE parent SET name = ?, updated_at = {self.stamp(op[3])} WHERE id = ?",
                            [op[2], *self.stamp_value(op[3]), self.parents[op[1] % len(self.parents)]])
            elif kind in ("update_child", "move_child") and self.children:
                cid = sorted(self.children)[op[1] % len(self.children)]
                if kind == "update_child":
                    con.execute(f"UPDATE child SET v = ?, updated_at = {self.stamp(op[3])} WHERE id = ?", [op[2], *self.stamp_value(op[3]), cid])
                elif self.parents:
                    parent = self.parents[op[2] % len(self.parents)]
                    con.execute(f"UPDATE child SET parent_id = ?, updated_at = {self.stamp(op[3])} WHERE id = ?",
                                [parent, *self.stamp_value(op[3]), cid])
                    self.children[cid] = parent
            elif kind == "delete_child" and self.children:
                cid = sorted(self.children)[op[1] % len(self.children)]
                con.execute("DELETE FROM child WHERE id = ?", [cid])
                del self.children[cid]
            elif kind == "delete_parent" and self.parents:
                pid = self.parents.pop(op[1] % len(self.parents))
                con.execute("DELETE FROM child WHERE parent_id = ?", [pid])   # children first: the lake keeps its FK
                con.execute("DELETE FROM parent WHERE id = ?", [pid])
                self.children = {c: p for c, p in self.children.items() if p != pid}
            elif kind == "rebuild":
                # as a nightly script does: the tables made again from scratch, every stamp older than before
                older = self.clock - timedelta(seconds=op[1])
                for table in ("parent", "child"):
                    con.execute(f"CREATE TEMP TABLE copy AS SELECT * FROM {table}")
                    con.execute(f"DELETE FROM {table}")
                    con.execute(f"INSERT INTO {table} SELECT * REPLACE (CAST(? AS TIMESTAMP) AS updated_at) FROM copy", [older])
                    con.execute("DROP TABLE copy")


def run_sequence(destination: dict, steps) -> None:
    work = Path(tempfile.mkdtemp(prefix="nw_prop_"))
    settings = load_settings(env={"DUCKDB_PATH": str(work / "lake.duckdb"), "DESTINATION_PATH": str(work), "MAX_RETRIES": "1",
                                  **{k: v.replace("{work}", str(work)) for k, v in destination.items()}}, dotenv=None)
    lake = Lake(settings.duckdb_path)
    try:
        for op in [*steps, ("sync",)]:
            if op[0] != "sync":
                lake.apply(op)
                continue
            report = sync(settings, show_progress=False)
            assert report.ok, report.failed
            bad = [c for c in verify(settings) if not c.ok]
            assert not bad, bad
    finally:
        shutil.rmtree(work, ignore_errors=True)


PROPERTY = hsettings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@hsettings(PROPERTY, max_examples=40)
@given(steps=st.lists(ops, min_size=3, max_size=30))
def test_postgres_equals_the_lake_whatever_the_timestamps(pg_url, steps):
    schema = f"p_{uuid.uuid4().hex[:10]}"
    try:
        run_sequence({"DATABASE_URL": pg_url, "DB_SCHEMA": schema}, steps)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("split", ["key ranges", "hash buckets"])
@hsettings(PROPERTY, max_examples=15)
@given(steps=st.lists(ops, min_size=3, max_size=20))
def test_postgres_equals_the_lake_when_every_table_is_compared_as_a_large_one(pg_url, split, steps):
    """The same, with what a large table gets used for every table: the comparison in passes (over ranges of its
    integer key, or over buckets of fingerprints as a key of another type would be) and the local copy written
    again after each change."""
    from nwlib import cdc, holdings

    schema = f"p_{uuid.uuid4().hex[:10]}"
    saved = cdc.COMPARE_BUCKET_ROWS, cdc.rangeable, holdings.REWRITE_ROWS
    cdc.COMPARE_BUCKET_ROWS, holdings.REWRITE_ROWS = 2, 0
    if split == "hash buckets":
        cdc.rangeable = lambda spec: False
    try:
        run_sequence({"DATABASE_URL": pg_url, "DB_SCHEMA": schema}, steps)
    finally:
        cdc.COMPARE_BUCKET_ROWS, cdc.rangeable, holdings.REWRITE_ROWS = saved
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.slow
@hsettings(PROPERTY, max_examples=12)
@given(steps=st.lists(ops, min_size=3, max_size=24))
def test_s3_equals_the_lake_whatever_the_timestamps(s3_bucket, moto_server, steps):
    run_sequence({"DESTINATION_TYPE": "S3", "S3_BUCKET_NAME": s3_bucket, "S3_PREFIX": f"p{uuid.uuid4().hex[:8]}",
                  "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}, steps)


@pytest.mark.slow
@hsettings(PROPERTY, max_examples=12)
@given(steps=st.lists(ops, min_size=3, max_size=24))
def test_delta_equals_the_lake_whatever_the_timestamps(steps):
    run_sequence({"DESTINATION_TYPE": "DELTA", "DELTA_URI": "{work}/delta"}, steps)
