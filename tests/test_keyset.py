"""Deletes are exact with the remembered key set, without it, and with a stale one."""
import shutil

import duckdb
import pytest

from nwlib.engine import sync
from nwlib.verification import verify


def _lake(path, n=500):
    con = duckdb.connect(str(path))
    con.execute(f"CREATE OR REPLACE TABLE t AS SELECT i AS id, 'v' || i AS v, TIMESTAMP '2024-01-01' + to_seconds(i) AS updated_at FROM range({n}) r(i)")
    con.execute("ALTER TABLE t ADD PRIMARY KEY (id)")
    con.close()


def _delete(path, where):
    con = duckdb.connect(str(path))
    n = con.execute(f"DELETE FROM t WHERE {where}").fetchone()[0]
    con.close()
    return n


@pytest.mark.parametrize("hint", ["kept", "lost", "stale"])
def test_deletes_exact_whatever_the_key_record(settings, lake_path, hint):
    _lake(lake_path)
    assert sync(settings, show_progress=False).ok
    record = settings.destination_path / ".nw"
    assert any(record.glob("keys-*.duckdb"))
    if hint == "stale":
        saved = record.parent / "saved_nw"
        shutil.copytree(record, saved)
    n1 = _delete(lake_path, "id % 7 = 0")
    r = sync(settings, show_progress=False)
    assert r.tables[0].deleted == n1
    if hint == "lost":
        shutil.rmtree(record)
    if hint == "stale":  # an old record that never heard of the first deletes nor of new rows
        shutil.rmtree(record)
        shutil.copytree(saved, record)
    con = duckdb.connect(str(lake_path))
    con.execute("INSERT INTO t SELECT i, 'new', TIMESTAMP '2024-02-01' FROM range(1000, 1010) r(i)")
    con.close()
    assert sync(settings, show_progress=False).tables[0].inserted == 10
    n2 = _delete(lake_path, "id % 5 = 0 OR id >= 1005")
    r = sync(settings, show_progress=False)
    assert r.ok and r.tables[0].deleted == n2
    assert all(c.ok for c in verify(settings))
