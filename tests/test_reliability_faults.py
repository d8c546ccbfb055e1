"""Faults against a real PostgreSQL: kills, network cuts, a server restart, a bad lake, a read-only role.

After each fault the run either finishes, or stops with one clear line and a
rerun finishes; ``verify`` then finds every table equal (nothing lost, nothing
doubled).  Figures these tests measure are in docs/reliability.md.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import duckdb
import psycopg
import pytest
from clirun import child_env_for, env_for, object_store_env, one_line_error, run_nw, start_nw
from private_pg import PrivatePg
from tcp_proxy import TcpProxy, proxy_target, through

from nwlib.bootstrap import PER_SCALE, bootstrap, mutate
from nwlib.engine import sync
from nwlib.verification import verify


def assert_equal(settings, **kw):
    checks = verify(settings, **kw)
    bad = [c for c in checks if not c.ok]
    assert not bad, bad
    return checks


def ledger(settings, pg_url, run_id=None):
    with psycopg.connect(pg_url, autocommit=True) as c:
        sql = f'SELECT run_id, tabela_nome, status, erro FROM "{settings.db_schema}".controle_cargas'
        rows = c.execute(sql + (" WHERE run_id = %s" if run_id else "") + " ORDER BY id", [run_id] if run_id else []).fetchall()
    return rows


# --- 1. SIGKILL at random moments ------------------------------------------------------

@pytest.mark.slow
def test_sigkill_at_random_moments_20_times_then_rerun(make_settings, pg_url):
    settings = make_settings(MAX_RETRIES=3)
    bootstrap(settings.duckdb_path, scale=5, seed=3)
    env = env_for(settings)
    rng = random.Random(20261129)
    kills, finished_before_kill = 0, 0
    started = time.monotonic()
    for i in range(20):
        if i:
            mutate(settings.duckdb_path, 0.03, seed=100 + i)
        args = ["sync", "--no-progress"] + (["--full-refresh"] if i % 3 == 2 else [])
        child = start_nw(env, *args)
        time.sleep(rng.uniform(0.05, 1.0))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        else:
            finished_before_kill += 1
        child.communicate(timeout=30)
        rerun = sync(settings, show_progress=False)
        assert rerun.ok, rerun.failed
    checks = assert_equal(settings)
    elapsed = time.monotonic() - started
    assert {c.table: c.dest_rows for c in checks} == {c.table: c.lake_rows for c in checks}
    assert kills >= 15, f"only {kills} of 20 runs were killed mid-sync"
    with psycopg.connect(pg_url, autocommit=True) as c:
        for table in PER_SCALE:
            key = {"clientes": "id_cliente", "pedidos": "id_pedido", "itens_pedido": "id_item", "pagamentos": "id_pagamento"}[table]
            dup = c.execute(f'SELECT count(*) - count(DISTINCT {key}) FROM "{settings.db_schema}".{table}').fetchone()[0]
            assert dup == 0
    print(f"\n[reliability] sigkill: {kills} kills, {finished_before_kill} finished first, {elapsed:.1f}s, "
          f"rows={sum(c.lake_rows for c in checks)}")


def test_killed_between_add_column_and_reload_still_converges(make_settings):
    """The ALTER that adds a column commits before the rows are re-sent: a kill in between must not leave NULLs."""
    from nwlib import destinations

    settings = make_settings()
    bootstrap(settings.duckdb_path, scale=0.05, seed=2)
    assert sync(settings, show_progress=False).ok
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("ALTER TABLE clientes ADD COLUMN pontos INTEGER DEFAULT 7")
    from nwlib.lake import open_lake
    from nwlib.plan import read_plan
    with open_lake(settings) as con:
        plan = read_plan(settings, con)
    dest = destinations.create(settings)
    dest.prepare([plan.specs[t] for t in plan.order], frozenset())   # the ALTER … and then the process dies
    dest.close()
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert_equal(settings)


# --- 2. the network: cut, stall, refuse -------------------------------------------------

@pytest.fixture
def proxy(pg_url):
    p = TcpProxy(proxy_target(pg_url))
    yield p
    p.close()


def test_connection_cut_mid_copy_is_retried_and_the_run_finishes(make_settings, proxy, pg_url):
    direct = make_settings()
    bootstrap(direct.duckdb_path, scale=1, seed=5)
    settings = make_settings(DATABASE_URL=through(proxy, pg_url), MAX_RETRIES=3)
    proxy.cut_after(300_000, times=2)
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert proxy.cuts == 2
    assert_equal(direct)
    rows = ledger(direct, pg_url, report.run_id)
    assert sorted(r[1] for r in rows if r[2] == "ok") == sorted(PER_SCALE)  # one ledger row per table: the retries left none


def test_stalled_connection_resumes_and_the_run_finishes(make_settings, proxy, pg_url):
    direct = make_settings()
    bootstrap(direct.duckdb_path, scale=1, seed=6)
    settings = make_settings(DATABASE_URL=through(proxy, pg_url))
    proxy.stall_after(300_000, seconds=2.0)
    t = time.monotonic()
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert proxy.stalls == 1 and time.monotonic() - t >= 2.0
    assert_equal(direct)


def test_refused_connections_for_two_seconds_are_retried(make_settings, proxy, pg_url):
    direct = make_settings()
    bootstrap(direct.duckdb_path, scale=0.1, seed=7)
    settings = make_settings(DATABASE_URL=through(proxy, pg_url), MAX_RETRIES=6, RETRY_BASE_SECONDS=0.3)
    proxy.refuse(2.0)
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert_equal(direct)


def test_cut_on_every_attempt_fails_cleanly_after_max_retries_and_rerun_completes(make_settings, proxy, pg_url):
    direct = make_settings()
    bootstrap(direct.duckdb_path, scale=1, seed=8)
    settings = make_settings(DATABASE_URL=through(proxy, pg_url), MAX_RETRIES=2, RETRY_BASE_SECONDS=0.05)
    proxy.cut_after(300_000, times=1000)
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert proc.returncode == 1
    assert "PostgreSQL connection failed" in line and "table 'pedidos' failed" in line, line
    assert proxy.cuts == 3  # the first try and MAX_RETRIES=2 retries, then it gave up
    # Nothing partial: the failed table and its children (skipped) are empty, the parent is complete.
    with psycopg.connect(pg_url, autocommit=True) as c:
        counts = {t: c.execute(f'SELECT count(*) FROM "{direct.db_schema}".{t}').fetchone()[0] for t in PER_SCALE}
    assert counts == {"clientes": 1000, "pedidos": 0, "itens_pedido": 0, "pagamentos": 0}
    assert [c.table for c in verify(direct) if not c.ok] == ["pedidos", "itens_pedido", "pagamentos"]
    statuses = {r[1]: r[2] for r in ledger(direct, pg_url)}
    assert statuses["clientes"] == "ok" and statuses["pedidos"] == "failed"
    assert all(statuses.get(t, "skipped") == "skipped" for t in ("itens_pedido", "pagamentos"))
    proxy.cut_after(0, times=0)
    again = run_nw(env_for(settings), "sync", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_equal(direct)


# --- 3. the server restarts in the middle of a sync -------------------------------------

@pytest.fixture(scope="module")
def private_pg(tmp_path_factory):
    server = PrivatePg(tmp_path_factory.mktemp("pgpriv"))
    yield server
    server.close()


def test_server_restart_during_sync(private_pg, tmp_path):
    from nwlib.settings import load_settings

    schema = f"r_{uuid.uuid4().hex[:8]}"
    settings = load_settings(env={"DATABASE_URL": private_pg.url, "DB_SCHEMA": schema, "DUCKDB_PATH": str(tmp_path / "lake.duckdb"),
                                  "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "6", "RETRY_BASE_SECONDS": "0.3"}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=5, seed=9)
    pid_before = private_pg.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")[0][0]
    result = {}
    worker = threading.Thread(target=lambda: result.update(report=sync(settings, show_progress=False)))
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        copying = private_pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%%' AND application_name = 'nwlib'")[0][0]
        if copying:
            break
        time.sleep(0.005)
    assert copying, "the sync never reached COPY"
    private_pg.stop()          # in the middle of a COPY
    time.sleep(1.0)            # the server stays down a moment: connections are refused
    private_pg.start()
    worker.join(timeout=60)
    report = result["report"]
    assert report.ok, report.failed
    pid_after = private_pg.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")[0][0]
    assert pid_after != pid_before
    assert_equal(settings)
    private_pg.sql(f'DROP SCHEMA "{schema}" CASCADE')


# --- 4. the lake file ---------------------------------------------------------------------

def test_lake_locked_by_another_writer_is_one_line(settings, tmp_path):
    bootstrap(settings.duckdb_path, scale=0.01)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(60)", str(settings.duckdb_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        proc = run_nw(env_for(settings), "sync", "--no-progress")
        line = one_line_error(proc)
        assert proc.returncode == 3
        assert "locked by another process" in line and str(settings.duckdb_path) in line, line
    finally:
        holder.kill()
        holder.wait()
    assert run_nw(env_for(settings), "sync", "--no-progress").returncode == 0   # the writer gone, it works


@pytest.mark.parametrize("damage", ["missing", "truncated", "not duckdb", "empty"])
def test_bad_lake_file_is_one_line(settings, damage):
    path = settings.duckdb_path
    if damage != "missing":
        bootstrap(path, scale=0.05)
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif damage == "not duckdb":
        path.write_text("id,name\n1,ana\n")
    elif damage == "empty":
        path.write_bytes(b"")
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert proc.returncode == 3, line
    assert str(path) in line
    expected = {"missing": "lake file not found", "truncated": "truncated or damaged"}.get(damage, "cannot open lake file")
    assert expected in line, line


# --- 5. the destination refuses writes -----------------------------------------------------

def test_read_only_role_is_one_line_and_nothing_partial(make_settings, pg, pg_url):
    owner = make_settings()
    bootstrap(owner.duckdb_path, scale=0.2, seed=4)
    assert sync(owner, show_progress=False).ok
    role = f"ro_{uuid.uuid4().hex[:8]}"
    pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'ro-pass-1'")
    try:
        pg.execute(f'GRANT USAGE ON SCHEMA "{owner.db_schema}" TO {role}')
        pg.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{owner.db_schema}" TO {role}')
        before = {t: pg.execute(f'SELECT count(*), sum(hashtext(x::text)) FROM "{owner.db_schema}".{t} x').fetchone() for t in PER_SCALE}
        ledger_before = len(ledger(owner, pg_url))
        mutate(owner.duckdb_path, 0.05, seed=11)
        parts = urlsplit(pg_url)
        ro_url = parts._replace(netloc=f"{role}:ro-pass-1@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")).geturl()
        ro = make_settings(DATABASE_URL=ro_url)
        proc = run_nw(env_for(ro), "sync", "--no-progress")
        line = one_line_error(proc)
        assert "permission denied" in line and "grant" in line.lower(), line
        assert "ro-pass-1" not in proc.stderr + proc.stdout
        after = {t: pg.execute(f'SELECT count(*), sum(hashtext(x::text)) FROM "{owner.db_schema}".{t} x').fetchone() for t in PER_SCALE}
        assert after == before
        assert len(ledger(owner, pg_url)) == ledger_before
        # The owner's rerun catches up.
        assert sync(owner, show_progress=False).ok
        assert_equal(owner)
    finally:
        pg.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{owner.db_schema}" FROM {role}')
        pg.execute(f'REVOKE ALL ON SCHEMA "{owner.db_schema}" FROM {role}')
        pg.execute(f"DROP ROLE {role}")



# --- the same kills against the object-store destinations --------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["S3", "DELTA"])
def test_sigkill_object_store_destinations_then_rerun(kind, request, tmp_path):
    from nwlib.settings import load_settings

    env = object_store_env(kind, request, tmp_path)
    settings = load_settings(env=env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=1, seed=12)
    child_env = child_env_for(env)
    rng = random.Random(7)
    kills = 0
    for i in range(6):
        if i:
            mutate(settings.duckdb_path, 0.03, seed=200 + i)
        child = start_nw(child_env, "sync", "--no-progress")
        time.sleep(rng.uniform(0.3, 1.5))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.communicate(timeout=60)
        rerun = sync(settings, show_progress=False)
        assert rerun.ok, rerun.failed
    checks = assert_equal(settings)   # EXCEPT ALL both ways: a doubled row would count as extra
    assert kills >= 3, kills
    print(f"\n[reliability] sigkill {kind}: {kills} kills of 6, rows={sum(c.lake_rows for c in checks)}")
