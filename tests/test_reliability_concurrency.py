"""Two `nw sync` at once against one destination: one says another sync is running; never both write."""
from __future__ import annotations

import time

import pytest
from clirun import child_env_for, env_for, object_store_env, one_line_error, run_nw, start_nw
from tcp_proxy import TcpProxy, proxy_target, through

from nwlib import destinations
from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync
from nwlib.errors import SyncInProgress, TablesBehind
from nwlib.verification import verify


def lock_holders(pg, schema: str) -> int:
    """Runs holding the schema's sync lock now (its row in nw_trava, lease not lapsed)."""
    if pg.execute("SELECT to_regclass(%s)", [f'"{schema}".nw_trava']).fetchone()[0] is None:
        return 0
    return pg.execute(f'SELECT count(*) FROM "{schema}".nw_trava WHERE expira_em > clock_timestamp()').fetchone()[0]


@pytest.mark.routes("pooler")
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
        assert proxy.stalls == 1 and lock_holders(pg, settings.db_schema) == 1, "the first sync never reached its COPY holding the lock"
        shown = run_nw(env_for(settings), "status")
        # It shows the running sync; the tables that sync has not committed yet are behind the lake (exit 7).
        assert shown.returncode == TablesBehind.exit_code and "a sync is running: on " in shown.stdout, shown.stdout + shown.stderr
        second = run_nw(env_for(settings), "sync", "--no-progress")
        line = one_line_error(second)
        assert second.returncode == 6
        assert "another sync is running" in line and settings.db_schema in line and ", pid " in line and "since" in line, line
        assert first.poll() is None  # the first was still running when the second gave up
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        proxy.close()
    assert all(c.ok for c in verify(settings))
    # Only the first run wrote: one run id in the ledger; the lock row left with its run.
    assert pg.execute(f'SELECT count(DISTINCT run_id) FROM "{settings.db_schema}".controle_cargas').fetchone()[0] == 1
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".nw_trava').fetchone()[0] == 0


@pytest.mark.routes("pooler")
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


def test_a_lock_taken_by_an_attempt_whose_answer_was_lost_is_the_retrys(settings, monkeypatch):
    """The lock's row committed but the answer never came (a cut): the retry finds its own row, not 'another sync'."""
    from nwlib.destinations.postgres.lock import LeaseLock
    from nwlib.errors import DestinationError

    real, lost = LeaseLock._take, []

    def take_then_lose_the_answer(self):
        real(self)
        if not lost:
            lost.append(self.token)
            raise DestinationError("lock: PostgreSQL connection failed: server closed the connection unexpectedly", "retry", transient=True)
    monkeypatch.setattr(LeaseLock, "_take", take_then_lose_the_answer)
    dest = destinations.create(settings)
    try:
        with pytest.raises(DestinationError), dest.lock():
            pass
        with dest.lock():                       # the engine's retry
            assert dest._lock.token == lost[0] and dest.running()
        assert dest.running() is None           # released as usual
    finally:
        dest.close()


@pytest.mark.routes("pooler")
def test_simultaneous_starts_never_both_write(settings, pg, pg_route):
    """Ten rounds of two `nw sync` started together: each round one writes and the other exits 6."""
    bootstrap(settings.duckdb_path, scale=2, seed=2)
    env = env_for(settings)
    assert run_nw(env, "sync", "--no-progress").returncode == 0
    outcomes = []
    for round_ in range(10):
        mutate(settings.duckdb_path, 0.1, seed=round_ + 1)
        pair = [start_nw(env, "sync", "--no-progress") for _ in range(2)]
        codes = []
        for p in pair:
            _, err = p.communicate(timeout=120)
            codes.append(p.returncode)
            if p.returncode:
                assert p.returncode == 6 and "another sync is running" in err, err
        outcomes.append(tuple(sorted(codes)))
    print(f"\n[reliability] simultaneous starts ({pg_route.name}): {outcomes}")
    assert outcomes == [(0, 6)] * 10, outcomes
    # The runs that wrote ran one after the other: their ledger spans do not overlap.
    spans = pg.execute(f'SELECT run_id, min(iniciado_em), max(finalizado_em) FROM "{settings.db_schema}".controle_cargas '
                       "GROUP BY run_id ORDER BY 2").fetchall()
    assert len(spans) == 11
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert end <= start, spans
    assert all(c.ok for c in verify(settings))


@pytest.mark.routes("pooler")
def test_a_paused_run_whose_lease_lapsed_is_taken_over_and_stops_before_writing_more(make_settings, pg, monkeypatch):
    """A run frozen longer than its lease (no heartbeat: a paused VM, SIGSTOP) loses the lock to the next run,
    and when it wakes it writes nothing more: never two writers."""
    import threading

    from nwlib.destinations.postgres.lock import LeaseLock
    from nwlib.engine import ProgressSink

    settings = make_settings(SYNC_LOCK_LEASE_SECONDS=2)
    bootstrap(settings.duckdb_path, scale=0.5, seed=4)
    monkeypatch.setattr(LeaseLock, "_heartbeat", lambda self: None)     # frozen: nothing renews the lease
    paused, resume = threading.Event(), threading.Event()

    class PauseBeforeSecondTable(ProgressSink):
        seen = 0

        def table(self, name):
            PauseBeforeSecondTable.seen += 1
            if PauseBeforeSecondTable.seen == 2:
                paused.set()
                resume.wait(60)

    result = {}
    worker = threading.Thread(target=lambda: result.update(report=sync(settings, progress=lambda n: PauseBeforeSecondTable(n, False))))
    worker.start()
    assert paused.wait(60)
    time.sleep(2.5)                                               # the lease lapses
    other = run_nw(env_for(settings), "sync", "--no-progress")    # takes the lock over and syncs everything
    assert other.returncode == 0, other.stderr
    resume.set()
    worker.join(60)
    report = result["report"]
    by = {t.table: t for t in report.tables}
    assert by["clientes"].status == "ok"          # written before the pause, under its lease
    assert by["pedidos"].status == "failed" and "lost its lock" in by["pedidos"].error and "another sync took it" in by["pedidos"].error
    assert {by[t].status for t in ("itens_pedido", "pagamentos")} == {"skipped"}, report.tables   # nothing more was tried
    assert all(c.ok for c in verify(settings))
    # The paused run's ledger shows what it did and what stopped it.
    rows = dict(pg.execute(f'SELECT tabela_nome, status FROM "{settings.db_schema}".controle_cargas WHERE run_id = %s',
                           [report.run_id]).fetchall())
    assert rows["clientes"] == "ok" and rows["pedidos"] == "failed"


@pytest.mark.routes("pooler")
def test_a_run_frozen_inside_a_write_is_ended_once_its_lease_lapses(make_settings, pg, pg_route):
    """SIGSTOP in the middle of a COPY: the frozen run holds its transaction (and the advisory lock) open and
    renews nothing.  Once its lease has lapsed the next run ends that write's server session (it rolls back)
    and takes over; woken up, the frozen run writes nothing more."""
    import signal

    settings = make_settings(SYNC_LOCK_LEASE_SECONDS=3)
    bootstrap(settings.duckdb_path, scale=5, seed=31)
    env = env_for(settings, SYNC_LOCK_LEASE_SECONDS="3")
    frozen = start_nw(env, "sync", "--no-progress")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and frozen.poll() is None:
        if pg.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%%' "
                      "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]:
            frozen.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.005)
    assert frozen.poll() is None, "the run finished before its COPY could be frozen"
    try:
        in_write = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE state IN ('active', 'idle in transaction') "
                              "AND backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid()").fetchone()[0]
        assert in_write, "frozen outside a transaction"
        early = run_nw(env, "sync", "--no-progress")           # the lease still runs: the frozen run keeps the lock
        assert early.returncode == 6 and "another sync is running" in early.stderr, early.stderr
        time.sleep(3.5)
        t = time.monotonic()
        taker = run_nw(env, "sync", "--no-progress")
        assert taker.returncode == 0, taker.stderr
        assert "ended the write of a stopped sync" in taker.stderr, taker.stderr
        assert time.monotonic() - t < 30
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert frozen.returncode != 0 and "lost its lock" in err, err
    assert all(c.ok for c in verify(settings))
    print(f"\n[reliability] frozen inside a write ({pg_route.name}): ended and taken over; the frozen run said: "
          f"{[ln for ln in err.splitlines() if ln.startswith('nw: error')]}")


@pytest.mark.routes("pooler")
def test_a_killed_run_leaves_no_lock_that_outlives_its_process_or_its_lease(make_settings, pg, pg_route):
    """kill -9 mid-run: a rerun on the same machine takes over at once (the holder's process is gone);
    from another machine (the row says so) it waits for the lease and no longer."""
    import signal

    settings = make_settings(SYNC_LOCK_LEASE_SECONDS=3)
    bootstrap(settings.duckdb_path, scale=3, seed=6)
    env = env_for(settings, SYNC_LOCK_LEASE_SECONDS="3")
    schema = settings.db_schema

    def kill_mid_run():
        child = start_nw(env, "sync", "--no-progress", "--full-refresh")
        deadline = time.monotonic() + 60
        while child.poll() is None and time.monotonic() < deadline:
            if lock_holders(pg, schema) and pg.execute("SELECT to_regclass(%s)", [f'"{schema}".controle_cargas']).fetchone()[0] and \
                    pg.execute(f'SELECT count(*) FROM "{schema}".controle_cargas').fetchone()[0]:
                break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        assert lock_holders(pg, schema) == 1           # it died holding the lock

    kill_mid_run()
    t = time.monotonic()
    rerun = run_nw(env, "sync", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert time.monotonic() - t < 30
    assert all(c.ok for c in verify(settings))

    mutate(settings.duckdb_path, 0.1, seed=7)
    kill_mid_run()
    pg.execute(f"UPDATE \"{schema}\".nw_trava SET maquina = 'elsewhere', maquina_id = 'elsewhere|boot|ns'")
    refused = run_nw(env, "sync", "--no-progress")
    line = one_line_error(refused)
    assert refused.returncode == 6 and "on elsewhere" in line and "SYNC_LOCK_LEASE_SECONDS=3" in line, line
    time.sleep(3.2)
    after_lease = run_nw(env, "sync", "--no-progress")
    assert after_lease.returncode == 0, after_lease.stderr
    assert all(c.ok for c in verify(settings))


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
