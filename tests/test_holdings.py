"""The local copy of what the destination holds: a speed-up only.

Kept, lost (a fresh machine: only the lake and the destination) or stale (an
old copy put back), every sync stays exact, and one without the copy reads
the destination's fingerprints instead of resending every row.
"""
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


def _change(path, *statements):
    con = duckdb.connect(str(path))
    n = [con.execute(s).fetchone()[0] for s in statements]
    con.close()
    return n


def _counts(report):
    t = report.tables[0]
    return t.inserted, t.updated, t.deleted


@pytest.mark.routes("pooler")
@pytest.mark.parametrize("copy", ["kept", "lost", "stale"])
def test_syncs_stay_exact_whatever_the_local_copy(settings, lake_path, copy):
    _lake(lake_path)
    assert sync(settings, show_progress=False).ok
    folder = settings.destination_path / ".nw"
    assert any(folder.glob("holdings-*.duckdb"))
    if copy == "stale":
        saved = folder.parent / "saved_nw"
        shutil.copytree(folder, saved)
    (n1,) = _change(lake_path, "DELETE FROM t WHERE id % 7 = 0")
    assert _counts(sync(settings, show_progress=False)) == (0, 0, n1)
    if copy == "lost":
        shutil.rmtree(folder)
    if copy == "stale":  # an old copy that never heard of the first deletes
        shutil.rmtree(folder)
        shutil.copytree(saved, folder)
    # late rows (stamped long ago), an update that keeps its stamp, and deletes: only these travel
    ins, upd, dele = _change(lake_path, "INSERT INTO t SELECT i, 'late', TIMESTAMP '2020-01-01' FROM range(1000, 1010) r(i)",
                             "UPDATE t SET v = 'changed, same stamp' WHERE id IN (1, 2, 3)",
                             "DELETE FROM t WHERE id % 5 = 0 OR id >= 1005")
    new_kept = 4                                            # 1001–1004: 1000 and 1005–1009 left again before any sync
    assert _counts(sync(settings, show_progress=False)) == (new_kept, upd, dele - (ins - new_kept))
    assert all(c.ok for c in verify(settings))
    assert _counts(sync(settings, show_progress=False)) == (0, 0, 0)
