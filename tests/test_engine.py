"""The engine under real faults: `nw sync` killed with SIGKILL at three moments, and a dropped connection retried.

(The wider fault matrix — proxy cuts, server restarts, concurrency — is in test_reliability_*.)
"""
from __future__ import annotations

import signal
import time

import duckdb
import psycopg
import pytest
from clirun import env_for, start_nw

from nwlib.bootstrap import PRIMARY_KEYS, bootstrap, mutate
from nwlib.destinations.postgres import PostgresDestination
from nwlib.engine import sync
from nwlib.verification import verify


def ok_rows(pg_url, schema) -> int:
    with psycopg.connect(pg_url, autocommit=True) as c:
        try:
            return c.execute(f"SELECT count(*) FROM \"{schema}\".controle_cargas WHERE status = 'ok'").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def assert_exact(settings, pg):
    """verify equal, and no table holds a key twice or more rows than the lake."""
    checks = verify(settings)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        for table, key in PRIMARY_KEYS.items():
            lake_n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            n, distinct = pg.execute(f'SELECT count(*), count(DISTINCT {key}) FROM "{settings.db_schema}".{table}').fetchone()
            assert n == distinct == lake_n, table
    finally:
        con.close()


def kill(child, after_seconds=None, when=None, timeout=120) -> int:
    deadline = time.monotonic() + timeout
    if after_seconds is not None:
        time.sleep(after_seconds)
    else:
        while child.poll() is None and not when() and time.monotonic() < deadline:
            time.sleep(0.005)
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.wait(timeout)
    return child.returncode


@pytest.mark.routes("pooler")
@pytest.mark.slow
def test_sigkill_at_three_moments_then_rerun_is_exact(make_settings, pg_route, pg):
    pg_url = pg_route.admin_url        # the test's own reads go to the server, not through a pooler
    settings = make_settings(MAX_RETRIES=3)
    bootstrap(settings.duckdb_path, scale=3, seed=5)
    env = env_for(settings)
    outcomes = []

    # 1. early: the child is still starting up or taking the lock
    outcomes.append(kill(start_nw(env, "sync", "--no-progress"), after_seconds=0.3))
    assert sync(settings, show_progress=False).ok
    assert_exact(settings, pg)

    # 2. mid-run: a full refresh, killed right after its first table committed
    mutate(settings.duckdb_path, 0.05, seed=6)
    before = ok_rows(pg_url, settings.db_schema)
    rc = kill(start_nw(env, "sync", "--no-progress", "--full-refresh"), when=lambda: ok_rows(pg_url, settings.db_schema) > before)
    assert rc == -signal.SIGKILL                          # it really died with three tables to go
    outcomes.append(rc)
    assert ok_rows(pg_url, settings.db_schema) - before < 4
    rerun = sync(settings, show_progress=False)
    assert rerun.ok
    assert_exact(settings, pg)

    # 3. later: an incremental run killed 0.8 s in
    mutate(settings.duckdb_path, 0.05, seed=7)
    outcomes.append(kill(start_nw(env, "sync", "--no-progress"), after_seconds=0.8))
    assert sync(settings, show_progress=False).ok
    assert_exact(settings, pg)
    # a further run finds nothing left to do
    assert sum(t.moved for t in sync(settings, show_progress=False).tables) == 0
    assert outcomes.count(-signal.SIGKILL) >= 2, outcomes


class TerminatedBetweenSteps(PostgresDestination):
    """The real destination; before loading ``victim`` its server session is terminated from another connection."""

    def __init__(self, settings, pg, victim):
        super().__init__(settings)
        self.pg, self.victim = pg, victim
        self.attempts: list[str] = []
        self.terminated = 0

    def load(self, changes, read, run_id, progress):
        names = [c.spec.name for c in changes]
        self.attempts.append(",".join(names))
        if self.victim in names and not self.terminated:
            pid = self.conn.info.backend_pid
            assert self.pg.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
            self.terminated += 1
        return super().load(changes, read, run_id, progress)


def test_dropped_connection_between_steps_is_retried_and_the_run_finishes(make_settings, pg):
    settings = make_settings(MAX_RETRIES=3, RETRY_BASE_SECONDS=0.01)
    bootstrap(settings.duckdb_path, scale=0.2, seed=8)
    dest = TerminatedBetweenSteps(settings, pg, victim="pedidos")
    try:
        report = sync(settings, show_progress=False, destination=dest)
    finally:
        dest.close()
    assert report.ok, report.failed
    assert dest.terminated == 1
    assert dest.attempts.count("pedidos") == 2            # the killed attempt, then the retry
    by = {t.table: t for t in report.tables}
    assert by["pedidos"].inserted == 2000
    # the failed attempt left nothing: one ok ledger row per table, counts exact
    rows = pg.execute(f'SELECT tabela_nome, status, linhas_inseridas FROM "{settings.db_schema}".controle_cargas '
                      "WHERE run_id = %s ORDER BY id", [report.run_id]).fetchall()
    assert rows == [("clientes", "ok", 200), ("pedidos", "ok", 2000), ("itens_pedido", "ok", 6000), ("pagamentos", "ok", 2000)]
    assert_exact(settings, pg)


def test_permanent_failure_is_not_retried(make_settings, pg):
    settings = make_settings(MAX_RETRIES=3, RETRY_BASE_SECONDS=0.01)
    bootstrap(settings.duckdb_path, scale=0.05, seed=9)
    assert sync(settings, show_progress=False).ok
    pg.execute(f'ALTER TABLE "{settings.db_schema}".clientes ADD CONSTRAINT no_change CHECK (nome = \'never\') NOT VALID')
    mutate(settings.duckdb_path, 0.2, seed=10)
    dest = TerminatedBetweenSteps(settings, pg, victim="none")
    try:
        report = sync(settings, show_progress=False, destination=dest)
    finally:
        dest.close()
    assert dest.attempts.count("clientes") == 1           # a check violation is not a transient fault
    by = {t.table: t for t in report.tables}
    assert by["clientes"].status == "failed" and "no_change" in by["clientes"].error
    assert {by[t].status for t in ("pedidos", "itens_pedido", "pagamentos")} == {"skipped"}


@pytest.mark.routes("pooler")
def test_the_ledger_and_the_cli_agree_when_a_step_fails_after_the_data_committed(make_settings, pg):
    """The foreign-key step runs after every table's rows (and their ledger rows) committed; when it fails,
    controle_cargas must say what the command line says, table by table."""
    from clirun import one_line_error, run_nw

    from nwlib.bootstrap import PER_SCALE

    settings = make_settings()
    bootstrap(settings.duckdb_path, scale=0.1, seed=21)
    assert sync(settings, show_progress=False).ok
    schema = settings.db_schema
    # Someone drops a foreign key in the destination and writes a row it would have refused.
    fk = pg.execute("SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                    "WHERE n.nspname = %s AND conrelid::regclass::text LIKE '%%itens_pedido' AND contype = 'f' "
                    "AND pg_get_constraintdef(c.oid) LIKE '%%pedidos%%'", [schema]).fetchone()[0]
    pg.execute(f'ALTER TABLE "{schema}".itens_pedido DROP CONSTRAINT "{fk}"')
    pg.execute(f'CREATE TEMP TABLE orphan AS SELECT * FROM "{schema}".itens_pedido LIMIT 1')
    pg.execute("UPDATE orphan SET id_item = id_item + 1000000, id_pedido = 999999")
    pg.execute(f'INSERT INTO "{schema}".itens_pedido SELECT * FROM orphan')
    mutate(settings.duckdb_path, 0.2, seed=22)
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert proc.returncode == 1 and "foreign keys" in line, line
    cli = {}
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("table ") and " status " in ln)
    status_at = header.index(" status ") + 1              # the report's columns are aligned under their header
    for row in lines[lines.index(header) + 1:]:
        if row.split()[:1] and row.split()[0] in PER_SCALE:
            cli[row.split()[0]] = row[status_at:].split()[0]
    run_id = pg.execute(f'SELECT run_id FROM "{schema}".controle_cargas ORDER BY id DESC LIMIT 1').fetchone()[0]
    ledger = dict(pg.execute(f'SELECT tabela_nome, status FROM "{schema}".controle_cargas WHERE run_id = %s', [run_id]).fetchall())
    assert cli == ledger, (cli, ledger)
    assert set(ledger.values()) == {"failed"}
    errors = [e for (e,) in pg.execute(f'SELECT erro FROM "{schema}".controle_cargas WHERE run_id = %s', [run_id]).fetchall()]
    assert all("foreign keys" in e and "rows are loaded" in e for e in errors), errors


def test_a_large_first_load_builds_its_primary_key_after_the_rows(settings, pg, monkeypatch):
    """An empty table's first load copies its rows without the primary key index and adds the key after (one
    sort instead of a row-by-row index): same constraint, same name, in the same transaction; the next
    sync's merge relies on it."""
    from nwlib.destinations.postgres import copy as pgcopy

    from lakesql import lake_sql

    monkeypatch.setattr(pgcopy, "BULK_KEY_ROWS", 10)
    lake_sql(settings, "CREATE TABLE big (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO big SELECT i, 'v' || i FROM range(50) r(i)")
    statements = []
    pg_execute = pgcopy.Copier.conn.fget

    class Spy:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *a, **k):
            statements.append(sql)
            return self.conn.execute(sql, *a, **k)

        def __getattr__(self, name):
            return getattr(self.conn, name)
    monkeypatch.setattr(pgcopy.Copier, "conn", property(lambda self: Spy(pg_execute(self))))
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert any("DROP CONSTRAINT" in s for s in statements) and any("ADD CONSTRAINT" in s and "PRIMARY KEY" in s for s in statements)
    key = pg.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                     [f'"{settings.db_schema}".big']).fetchone()
    assert key == ("big_pkey", "PRIMARY KEY (id)")
    lake_sql(settings, "UPDATE big SET v = 'changed' WHERE id < 5", "INSERT INTO big VALUES (100, 'new')")
    report = sync(settings, show_progress=False)
    assert report.ok and (report.tables[0].inserted, report.tables[0].updated) == (1, 5)


def test_a_first_load_whose_table_a_reader_holds_keeps_its_key_and_does_not_wait(settings, pg, monkeypatch):
    """A session that read the empty table inside an open transaction holds a lock the key's drop would wait for:
    the load waits at most KEY_LOCK_WAIT, then copies with the key kept."""
    from nwlib.destinations.postgres import copy as pgcopy

    from lakesql import lake_sql

    monkeypatch.setattr(pgcopy, "BULK_KEY_ROWS", 10)
    monkeypatch.setattr(pgcopy, "KEY_LOCK_WAIT", "300ms")
    lake_sql(settings, "CREATE TABLE big (id INTEGER PRIMARY KEY, v VARCHAR)")
    assert sync(settings, show_progress=False).ok                     # the destination table exists, empty
    lake_sql(settings, "INSERT INTO big SELECT i, 'v' || i FROM range(50) r(i)")
    with psycopg.connect(pg.info.dsn, password=pg.info.password) as reader:
        reader.execute(f'SELECT count(*) FROM "{settings.db_schema}".big').fetchone()   # its transaction stays open
        started = time.monotonic()
        report = sync(settings, show_progress=False)
        assert report.ok, report.failed
        assert time.monotonic() - started < 30
        reader.rollback()
    key = pg.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
                     [f'"{settings.db_schema}".big']).fetchone()
    assert key == ("PRIMARY KEY (id)",)
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".big').fetchone()[0] == 50
