"""Supabase as people connect: through pgbouncer in transaction mode (Supabase's port 6543) and session mode,
with scram passwords pasted with special characters, TLS checked against a CA, and a pooler whose server is down.

The servers are real (tests/servers.py): Debian's PostgreSQL 15 behind Debian's pgbouncer 1.18.  Every run
here is the `nw` command line in a child process, as CI and schedulers run it.
"""
from __future__ import annotations

import time
from urllib.parse import quote

import duckdb
import pytest
from clirun import one_line_error, run_nw
from conftest import PG15_ROLES, POOL_PASSWORD, POOL_USER
from tcp_proxy import TcpProxy

from nwlib.bootstrap import bootstrap, mutate

PASSWORD_ROLES = {"p@ss:w/rd?#%": POOL_USER, "Sup3r@Secret": "nw_supa", "a": "nw_a"}


@pytest.fixture
def env(tmp_path, pg15):
    """A child environment for a fresh schema on PostgreSQL 15 (DATABASE_URL set by each test)."""
    import os
    import uuid

    schema = f"p_{uuid.uuid4().hex[:10]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "DUCKDB_", "DESTINATION_", "MAX_RETRIES",
                                                                     "RETRY_"))}
    base.update(DB_SCHEMA=schema, DUCKDB_PATH=str(tmp_path / "lake.duckdb"), DESTINATION_PATH=str(tmp_path), MAX_RETRIES="2",
                RETRY_BASE_SECONDS="0.05")
    yield base
    pg15.sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def nw(env: dict, url: str, *args: str, **extra: str):
    return run_nw({**env, "DATABASE_URL": url, **extra}, *args)


def assert_equal(env: dict, url: str) -> None:
    proc = nw(env, url, "verify")
    assert proc.returncode == 0 and "DIFFERENT" not in proc.stdout, proc.stdout + proc.stderr


def fragments(secret: str, size: int = 4) -> set[str]:
    """Every piece of ``secret`` of ``size`` characters or more (a whole one-letter password, as ``:a@``)."""
    if len(secret) < size:
        return {f":{secret}@", f"password={secret}", f"'{secret}'"}
    return {secret[i:j] for i in range(len(secret)) for j in range(i + size, len(secret) + 1)}


def assert_no_password(text: str, secret: str) -> None:
    for piece in fragments(secret) | fragments(quote(secret, safe="")):
        assert piece not in text, f"{piece!r} of the password appeared: {text}"


# --- the acceptance runs: first sync, deletes, an FK cycle ---------------------------------------

@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_first_sync_then_changes_with_deletes_through_the_pooler(env, pgbouncer, mode):
    url = pgbouncer.url(POOL_USER, POOL_PASSWORD, mode)
    bootstrap(env["DUCKDB_PATH"], scale=1, seed=11)
    first = nw(env, url, "sync", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert_equal(env, url)
    for seed in (12, 13, 14):                     # updates, inserts and deletes, children first
        mutate(env["DUCKDB_PATH"], 0.1, seed=seed)
        again = nw(env, url, "sync", "--no-progress")
        assert again.returncode == 0, again.stderr
        assert "deleted" in again.stdout
        assert_equal(env, url)
    status = nw(env, url, "status", DB_POOL_MODE=mode)
    assert status.returncode == 0, status.stderr
    assert f"({mode} pooler)" in status.stdout


def test_a_lake_of_many_tables_needs_no_prepared_statement(env, pgbouncer):
    """psycopg prepares a statement run five times on one connection; a transaction pooler hands the next
    transaction another server connection, where it does not exist.  Forty tables repeat every statement."""
    url = pgbouncer.url(POOL_USER, POOL_PASSWORD, "transaction")
    with duckdb.connect(env["DUCKDB_PATH"]) as con:
        for i in range(40):
            con.execute(f"CREATE TABLE t{i:02d} (id INTEGER PRIMARY KEY, v VARCHAR)")
            con.execute(f"INSERT INTO t{i:02d} SELECT r, 'v' || r FROM range(50) t(r)")
    assert nw(env, url, "sync", "--no-progress").returncode == 0
    with duckdb.connect(env["DUCKDB_PATH"]) as con:
        for i in range(40):
            con.execute(f"UPDATE t{i:02d} SET v = v || '!' WHERE id % 7 = 0")
            con.execute(f"DELETE FROM t{i:02d} WHERE id % 11 = 0")
    again = nw(env, url, "sync", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert_equal(env, url)


def test_an_fk_cycle_through_the_transaction_pooler(env, pgbouncer):
    url = pgbouncer.url(POOL_USER, POOL_PASSWORD, "transaction")
    with duckdb.connect(env["DUCKDB_PATH"]) as con:
        con.execute("CREATE TABLE departamentos (id INTEGER PRIMARY KEY, nome VARCHAR, gerente INTEGER)")
        con.execute("CREATE TABLE funcionarios (id INTEGER PRIMARY KEY, nome VARCHAR, departamento INTEGER)")
        con.execute("CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)")
        con.execute("INSERT INTO fk_metadata VALUES ('departamentos', 'gerente', 'funcionarios', 'id'), "
                    "('funcionarios', 'departamento', 'departamentos', 'id')")
        con.execute("INSERT INTO departamentos SELECT i, 'd' || i, i * 10 FROM range(1, 6) r(i)")
        con.execute("INSERT INTO funcionarios SELECT i, 'f' || i, 1 + i % 5 FROM range(1, 51) r(i)")
    assert nw(env, url, "sync", "--no-progress").returncode == 0
    with duckdb.connect(env["DUCKDB_PATH"]) as con:      # a department and its manager arrive, then leave, together
        con.execute("INSERT INTO funcionarios VALUES (51, 'f51', 6)")
        con.execute("INSERT INTO departamentos VALUES (6, 'd6', 51)")
    assert nw(env, url, "sync", "--no-progress").returncode == 0
    with duckdb.connect(env["DUCKDB_PATH"]) as con:
        con.execute("DELETE FROM departamentos WHERE id = 6")
        con.execute("DELETE FROM funcionarios WHERE id = 51")
    last = nw(env, url, "sync", "--no-progress")
    assert last.returncode == 0, last.stderr
    assert_equal(env, url)


def test_session_defaults_of_the_role_change_nothing(env, pgbouncer, typed_lake, lake_path):
    """A role whose TimeZone, IntervalStyle, DateStyle and extra_float_digits differ from nwlib's: every value still equal."""
    url = pgbouncer.url("nw_tz", PG15_ROLES["nw_tz"], "transaction")
    assert env["DUCKDB_PATH"] == str(lake_path)       # the typed lake (many types, hostile names)
    for change in (None, typed_lake):                   # the first load, then a batch of changes
        if change:
            change()
        proc = nw(env, url, "sync", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        assert_equal(env, url)


# --- passwords as pasted, and the lines people see ------------------------------------------------

@pytest.mark.parametrize("encode", [True, False], ids=["encoded", "as pasted"])
@pytest.mark.parametrize("password", list(PASSWORD_ROLES))
def test_pasted_passwords_work_and_a_wrong_one_gets_the_password_hint(env, pgbouncer, pg15, password, encode):
    role = PASSWORD_ROLES[password]
    bootstrap(env["DUCKDB_PATH"], scale=0.01)
    seen = []
    for url in (pgbouncer.url(role, password, "transaction", encode=encode),
                f"postgresql://{role}:{quote(password, safe='') if encode else password}@127.0.0.1:{pg15.port}/postgres"):
        ok = nw(env, url, "sync", "--no-progress")
        assert ok.returncode == 0, ok.stderr
        seen.append(ok.stdout + ok.stderr)
        status = nw(env, url, "status")
        assert status.returncode == 0 and f"{role}:***@" in status.stdout, status.stdout + status.stderr
        seen.append(status.stdout + status.stderr)
    wrong = password[:-1] + ("x" if password[-1] != "x" else "y")
    for url in (pgbouncer.url(role, wrong, "transaction", encode=encode),
                f"postgresql://{role}:{quote(wrong, safe='') if encode else wrong}@127.0.0.1:{pg15.port}/postgres"):
        proc = nw(env, url, "sync", "--no-progress")
        line = one_line_error(proc)
        assert proc.returncode == 4 and "refused the password" in line and "DB_PASSWORD" in line, line
        seen.append(proc.stdout + proc.stderr)
        assert_no_password(proc.stdout + proc.stderr, wrong)
    for text in seen:
        assert_no_password(text, password)


def test_db_password_with_special_characters_works_without_a_url(env, pgbouncer):
    bootstrap(env["DUCKDB_PATH"], scale=0.01)
    proc = run_nw({**env, "DB_HOST": "127.0.0.1", "DB_PORT": str(pgbouncer.port), "DB_NAME": "postgres_tx", "DB_USER": "nw_supa",
                   "DB_PASSWORD": "Sup3r@Secret"}, "sync", "--no-progress")
    assert proc.returncode == 0, proc.stderr


# --- TLS ------------------------------------------------------------------------------------------

def test_verify_full_with_the_ca_works_and_a_wrong_or_missing_ca_names_the_settings(env, pgbouncer, tmp_path):
    url = pgbouncer.url(POOL_USER, POOL_PASSWORD, "transaction")
    bootstrap(env["DUCKDB_PATH"], scale=0.01)
    good = nw(env, url, "sync", "--no-progress", DB_SSLMODE="verify-full", DB_SSLROOTCERT=str(pgbouncer.certs["ca"]))
    assert good.returncode == 0, good.stderr
    assert "sslmode=verify-full" in nw(env, url, "status", DB_SSLMODE="verify-full", DB_SSLROOTCERT=str(pgbouncer.certs["ca"])).stdout
    for extra in ({"DB_SSLROOTCERT": str(pgbouncer.certs["other_ca"])}, {"HOME": str(tmp_path)}):   # another CA; none at all
        proc = nw(env, url, "status", DB_SSLMODE="verify-full", **extra)
        line = one_line_error(proc)
        assert proc.returncode == 4 and "DB_SSLMODE" in line and "DB_SSLROOTCERT" in line, line
        assert_no_password(proc.stderr, POOL_PASSWORD)


# --- a pooler whose server is down ------------------------------------------------------------------

@pytest.mark.parametrize("pool", ["never reached", "was up"])
def test_a_pooler_whose_server_is_down_is_reported_within_15_s_at_the_default_retries(env, pgbouncer, pg15, pool):
    """pgbouncer accepts the login (or not) and then holds the query for its query_wait_timeout (120 s):
    nw reports it within DB_CONNECT_TIMEOUT + RETRY_WINDOW_SECONDS + DB_CONNECT_TIMEOUT = 13 s (defaults)."""
    import uuid

    from servers import free_port

    alias = f"down_{uuid.uuid4().hex[:6]}"
    proxy = TcpProxy(("127.0.0.1", pg15.port))       # the pooler's only way to its server: cut it when told
    try:
        pgbouncer.add_database(alias, free_port() if pool == "never reached" else proxy.port, database="postgres")
        url = pgbouncer.url(POOL_USER, POOL_PASSWORD, database=alias)
        bootstrap(env["DUCKDB_PATH"], scale=0.01)
        defaults = {k: v for k, v in env.items() if k not in ("MAX_RETRIES", "RETRY_BASE_SECONDS")}
        if pool == "was up":
            assert nw(defaults, url, "sync", "--no-progress").returncode == 0      # the pool has a server connection
            proxy.refuse(600)
            proxy.drop_all()
        started = time.monotonic()
        proc = nw(defaults, url, "sync", "--no-progress")
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    line = one_line_error(proc)
    assert proc.returncode == 4, line
    assert elapsed < 15, f"{elapsed:.1f} s: {line}"
    assert "server" in line and ("pooler" in line or "DB_CONNECT_TIMEOUT" in line), line
    print(f"\n[pooler] server down ({pool}): reported after {elapsed:.1f} s: {line}")


def test_urls_as_orms_and_people_write_them(env, pgbouncer):
    """Supabase's Prisma guide adds ?pgbouncer=true&connection_limit=1; a database the pooler does not know
    gets the DB_NAME hint; a URL cut off after the password is refused without a connection attempt."""
    bootstrap(env["DUCKDB_PATH"], scale=0.01)
    prisma = pgbouncer.url(POOL_USER, POOL_PASSWORD, "transaction", query="pgbouncer=true&connection_limit=1")
    synced = nw(env, prisma, "sync", "--no-progress")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    ok = nw(env, prisma, "status")                       # exit 0: every table in sync (7 would say one is behind)
    assert ok.returncode == 0 and "(transaction pooler)" in ok.stdout, ok.stdout + ok.stderr
    missing = nw(env, pgbouncer.url(POOL_USER, POOL_PASSWORD, database="nosuchdb"), "status")
    line = one_line_error(missing)
    assert missing.returncode == 4 and "nosuchdb" in line and "DB_NAME" in line, line
    for url, exit_code, words in ((f"postgresql://{POOL_USER}:{POOL_PASSWORD}@", 2, "no host"),
                                  (pgbouncer.url(POOL_USER, POOL_PASSWORD, query="schema=sales"), 2, "DB_SCHEMA")):
        proc = nw(env, url, "sync", "--no-progress")
        line = one_line_error(proc)
        assert proc.returncode == exit_code and words in line, line
        assert_no_password(proc.stdout + proc.stderr, POOL_PASSWORD)
    plain = nw(env, pgbouncer.url(POOL_USER, POOL_PASSWORD), "status")
    assert "(no pooler recognised)" in plain.stdout                      # not told as a fact: DB_POOL_MODE says it
