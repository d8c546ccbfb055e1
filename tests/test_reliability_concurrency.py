"""Two `nw sync` at once against one destination: one says another sync is running; never both write."""
from __future__ import annotations

import time

import pytest
from clirun import child_env_for, env_for, object_store_env, one_line_error, run_nw, start_nw
from tcp_proxy import TcpProxy, proxy_target, through

from nwlib import destinations
from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync
from nwlib.errors import SyncInProgress
from nwlib.verification import verify


def lock_holders(pg) -> int:
    return pg.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                      "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'nwlib-lock'").fetchone()[0]


def test_a_second_sync_while_one_runs_exits_with_a_clear_line(make_settings, pg, pg_url):
    settings = make_settings()
    bootstrap(settings.duckdb_path, scale=1, seed=1)
    proxy = TcpProxy(proxy_target(pg_url))
    try:
        # The first run's COPY freezes for 4 s on the wire: it surely holds the lock while the second starts.
        proxy.stall_after(200_000, seconds=4.0)
        first = start_nw(env_for(make_settings(DATABASE_URL=through(proxy, pg_url))), "sync", "--no-progress")
        deadline = time.monotonic() + 30
        while not proxy.stalls and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        assert proxy.stalls == 1 and lock_holders(pg) == 1, "the first sync never reached its COPY holding the lock"
        second = run_nw(env_for(settings), "sync", "--no-progress")
        line = one_line_error(second)
        assert second.returncode == 6
        assert "another sync is running" in line and settings.db_schema in line, line
        assert first.poll() is None  # the first was still running when the second gave up
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        proxy.close()
    assert all(c.ok for c in verify(settings))
    # Only the first run wrote: one run id in the ledger.
    assert pg.execute(f'SELECT count(DISTINCT run_id) FROM "{settings.db_schema}".controle_cargas').fetchone()[0] == 1


def test_in_process_lock_is_exclusive(settings):
    bootstrap(settings.duckdb_path, scale=0.01)
    holder = destinations.create(settings)
    try:
        with holder.lock():
            with pytest.raises(SyncInProgress, match="another sync is running"):
                sync(settings, show_progress=False)
        assert sync(settings, show_progress=False).ok  # released: the next run goes ahead
    finally:
        holder.close()


def test_simultaneous_starts_never_both_write(settings, pg):
    bootstrap(settings.duckdb_path, scale=2, seed=2)
    env = env_for(settings)
    outcomes = []
    for round_ in range(4):
        if round_:
            mutate(settings.duckdb_path, 0.05, seed=round_)
        pair = [start_nw(env, "sync", "--no-progress") for _ in range(2)]
        codes = []
        for p in pair:
            _, err = p.communicate(timeout=60)
            codes.append(p.returncode)
            if p.returncode:
                assert p.returncode == 6 and "another sync is running" in err, err
        outcomes.append(tuple(sorted(codes)))
        assert codes.count(0) >= 1
    # When both ran, they ran one after the other: their ledger spans do not overlap.
    spans = pg.execute(f'SELECT run_id, min(iniciado_em), max(finalizado_em) FROM "{settings.db_schema}".controle_cargas '
                       "GROUP BY run_id ORDER BY 2").fetchall()
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert end <= start, spans
    assert all(c.ok for c in verify(settings))
    print(f"\n[reliability] simultaneous starts: {outcomes}")


@pytest.mark.parametrize("kind", ["S3", "DELTA"])
def test_object_store_simultaneous_starts_never_both_write(kind, request, tmp_path):
    from nwlib.settings import load_settings

    env = object_store_env(kind, request, tmp_path)
    settings = load_settings(env=env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.5, seed=3)
    outcomes = []
    for round_ in range(3):
        if round_:
            mutate(settings.duckdb_path, 0.05, seed=round_)
        pair = [start_nw(child_env_for(env), "sync", "--no-progress") for _ in range(2)]
        codes = []
        for p in pair:
            _, err = p.communicate(timeout=60)
            codes.append(p.returncode)
            if p.returncode:
                assert p.returncode == 6 and "another sync holds the lock" in err, err
        assert 0 in codes
        outcomes.append(tuple(sorted(codes)))
    checks = verify(settings)
    assert all(c.ok for c in checks), checks   # a doubled row would be "extra"
    print(f"\n[reliability] simultaneous starts {kind}: {outcomes}")


@pytest.mark.parametrize("meanwhile", ["nobody", "another run"])
def test_a_lost_lock_is_taken_again_before_writing_or_the_run_stops(make_settings, pg, pg_url, meanwhile):
    """A server restart (here: the lock's session terminated) must not let two runs write at once."""
    import threading

    settings = make_settings()
    bootstrap(settings.duckdb_path, scale=1, seed=4)
    proxy = TcpProxy(proxy_target(pg_url))
    holder = destinations.create(settings)
    result = {}
    try:
        proxy.stall_after(200_000, seconds=2.0)
        slow = make_settings(DATABASE_URL=through(proxy, pg_url))
        worker = threading.Thread(target=lambda: result.update(report=sync(slow, show_progress=False)))
        worker.start()
        deadline = time.monotonic() + 30
        while not proxy.stalls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.stalls == 1
        ended = pg.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'nwlib-lock'").fetchone()[0]
        assert ended == 1
        if meanwhile == "another run":
            with holder.lock():            # the other run holds the lock while the first wakes up
                worker.join(timeout=60)
        worker.join(timeout=60)
    finally:
        proxy.close()
        holder.close()
    report = result["report"]
    if meanwhile == "nobody":
        assert report.ok, report.failed      # it took the lock again and went on
    else:
        failed = {t.table: t.error for t in report.tables if t.status == "failed"}
        assert failed and all("lost its lock" in e and "another sync took it" in e for e in failed.values()), report.tables
        assert sync(settings, show_progress=False).ok
    assert all(c.ok for c in verify(settings))


def test_a_lock_file_caught_half_written_is_not_taken_over(tmp_path):
    """A lock another run is writing at this instant (still empty) is held, not stale."""
    from nwlib.destinations.objectstore import FileLock
    from nwlib.errors import SyncInProgress

    lock = tmp_path / "_nw" / "lock.json"
    lock.parent.mkdir()
    lock.write_bytes(b"")  # created, not yet filled by its writer
    with pytest.raises(SyncInProgress):
        with FileLock(lock)():
            pass
    assert lock.exists()  # the other run's lock is left alone
    lock.unlink()
    with FileLock(lock)():
        assert b'"pid"' in lock.read_bytes()  # a lock appears complete, holder and all
    assert not lock.exists()
