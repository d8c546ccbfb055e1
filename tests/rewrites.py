"""Scenarios every file-based destination (S3, Delta) runs alike: a table written again whole, a key renamed."""
from __future__ import annotations

from lakesql import lake_sql

from nwlib.engine import sync
from nwlib.status import status
from nwlib.verification import verify


def written_again_whole_is_in_sync_after(settings) -> None:
    """A type change, then a full refresh, each with a delete the rewrite makes moot: the state recorded is what the
    table holds (it recorded 0 rows, no sum, or the deleted keys' fingerprints too)."""
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)", "INSERT INTO t SELECT i, i FROM range(100) r(i)")
    assert sync(settings, show_progress=False).ok
    lake_sql(settings, "ALTER TABLE t ALTER v TYPE VARCHAR")              # a type change: the table is written again whole
    for full_refresh in (False, True):
        lake_sql(settings, "DELETE FROM t WHERE id IN (SELECT min(id) FROM t)")
        report = sync(settings, full_refresh=full_refresh, show_progress=False)
        assert report.ok and report.tables[0].mode == "merge full"          # written again whole: one snapshot, one type
        assert [t.sync for t in status(settings).tables] == ["in sync"]      # "unknown": the state recorded 0 rows, or no sum
        assert all(c.ok for c in verify(settings))
        again = sync(settings, show_progress=False).tables[0]
        assert again.notes == () and (again.inserted, again.updated, again.deleted) == (0, 0, 0)   # "recorded state corrected"


def renamed_key_is_rebuilt_by_the_advised_full_refresh(settings) -> None:
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    assert sync(settings, show_progress=False).ok
    lake_sql(settings, "ALTER TABLE t RENAME id TO key", "INSERT INTO t VALUES (3, 'c')")
    stopped = sync(settings, show_progress=False).tables[0]
    assert stopped.status == "failed" and "nw sync --full-refresh --tables t" in stopped.error
    rebuilt = sync(settings, tables=["t"], full_refresh=True, show_progress=False)   # failed: the new key read in the old files
    assert rebuilt.ok, rebuilt.failed
    assert all(c.ok for c in verify(settings))
    lake_sql(settings, "UPDATE t SET v = 'z' WHERE key = 2", "DELETE FROM t WHERE key = 1")
    after = sync(settings, show_progress=False).tables[0]
    assert (after.inserted, after.updated, after.deleted) == (0, 1, 1)
    assert all(c.ok for c in verify(settings))
