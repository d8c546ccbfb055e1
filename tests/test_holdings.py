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
@pytest.mark.parametrize("copy", ["kept", "lost", "stale", "rewritten"])
def test_syncs_stay_exact_whatever_the_local_copy(settings, lake_path, copy, monkeypatch):
    if copy == "rewritten":     # every change written into the copy by writing it again, as a large table's is
        monkeypatch.setattr("nwlib.holdings.REWRITE_ROWS", 0)
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


def test_a_large_copy_written_again_holds_what_deletes_and_inserts_give(tmp_path, monkeypatch):
    """A copy of more than REWRITE_ROWS rows takes a change by being written again (no DELETE, whose bookkeeping
    of a change spread over a large table stays in memory): the same rows as DELETE + INSERT give, composite
    keys and unknown fingerprints included."""
    from nwlib import holdings as h
    from nwlib.lake import read_specs
    from nwlib.model import TableState

    def copy_after(rewrite_rows):
        monkeypatch.setattr(h, "REWRITE_ROWS", rewrite_rows)
        con = duckdb.connect(str(tmp_path / f"lake{rewrite_rows}.duckdb"))
        con.execute("CREATE TABLE t (a INTEGER, b VARCHAR, v INTEGER, PRIMARY KEY (a, b))")
        spec = read_specs(con)["t"]
        hold = h.Holdings(con, tmp_path / f"holdings{rewrite_rows}.duckdb")
        hold.empty(spec, TableState(revision="r0", loaded=True))
        con.execute(f"INSERT INTO {hold.table(spec)} SELECT i, 'k' || (i % 3), CASE WHEN i % 10 = 0 THEN NULL ELSE i END FROM range(1000) r(i)")
        con.execute("CREATE TEMP TABLE up AS SELECT i AS a, 'k' || (i % 3) AS b, -i AS nw_fingerprint FROM range(0, 1200, 7) r(i)")
        con.execute("CREATE TEMP TABLE gone AS SELECT i AS a, 'k' || (i % 3) AS b FROM range(3, 1000, 11) r(i)")
        hold.upsert(spec, "up", "r1", "v")
        hold.remove(spec, "gone", "r2", "v")
        assert hold.current(spec, TableState(revision="r2", fingerprint_version="v"))
        rows = con.execute(f"SELECT * FROM {hold.table(spec)}").fetchall()
        con.close()
        return rows

    rewritten, in_place = copy_after(0), copy_after(10**9)
    assert sorted(rewritten, key=str) == sorted(in_place, key=str)
    assert len(rewritten) == 1000 + len(range(1001, 1200, 7)) - len(range(3, 1000, 11))


def test_a_local_copy_that_cannot_follow_a_commit_costs_a_read_not_the_run(settings, lake_path, monkeypatch, caplog):
    """After the destination committed, the local copy failing to follow (DuckDB out of memory, a full disk) does
    not fail the run: one warning, the copy takes no later change of the run (the deletes' step would otherwise
    stamp it current without the rows it missed), and the next run reads the destination's fingerprints again:
    a row inserted in the failed run and deleted from the lake later is deleted from the destination."""
    import logging

    from nwlib import holdings

    _lake(lake_path)
    assert sync(settings, show_progress=False).ok
    _change(lake_path, "INSERT INTO t VALUES (1000, 'new', TIMESTAMP '2024-06-01') RETURNING 1", "DELETE FROM t WHERE id = 7 RETURNING 1")

    def fails(self, *args):
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block")

    monkeypatch.setattr(holdings.Holdings, "_upsert", fails)
    with caplog.at_level(logging.WARNING, logger="nwlib.holdings"):
        report = sync(settings, show_progress=False)
    assert report.ok and _counts(report) == (1, 0, 1)
    assert any("was not updated" in r.getMessage() and "'t'" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    _change(lake_path, "DELETE FROM t WHERE id = 1000 RETURNING 1", "UPDATE t SET v = 'changed' WHERE id = 3 RETURNING 1")
    assert _counts(sync(settings, show_progress=False)) == (0, 1, 1)
    assert _counts(sync(settings, show_progress=False)) == (0, 0, 0)
    assert all(c.ok for c in verify(settings))
