"""The `nw` command line, run as a child process against the test server (no developer .env leaks in)."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from clirun import env_for, one_line_error, run_nw

from nwlib.cli import main

COMMANDS = ("bootstrap", "sync", "status", "verify")


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS)])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nw")
    if argv[0] == "--help":
        assert all(c in out for c in COMMANDS)


def test_python_dash_m_and_the_console_script_show_help():
    for argv in ([sys.executable, "-m", "nwlib", "--help"], [str(Path(sys.executable).with_name("nw")), "sync", "--help"]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "usage: nw" in proc.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2


def test_missing_duckdb_file_is_one_line(settings, tmp_path):
    proc = run_nw(env_for(settings, DUCKDB_PATH=str(tmp_path / "nowhere.duckdb")), "sync")
    line = one_line_error(proc)
    assert proc.returncode == 3 and "lake file not found" in line and "nowhere.duckdb" in line


def test_unknown_destination_type_is_one_line(settings):
    proc = run_nw(env_for(settings, DESTINATION_TYPE="ORACLE"), "status")
    line = one_line_error(proc)
    assert proc.returncode == 2 and "DESTINATION_TYPE='ORACLE'" in line and "SUPABASE" in line


@pytest.mark.parametrize("var, value", [("BATCH_SIZE", "many"), ("DB_PORT", "-5"), ("MAX_RETRIES", "three")])
def test_malformed_variable_is_one_line_naming_it(settings, var, value):
    proc = run_nw(env_for(settings, **{var: value}), "sync")
    line = one_line_error(proc)
    assert proc.returncode == 2 and var in line


def test_bad_flag_value_is_a_usage_error(settings):
    proc = run_nw(env_for(settings), "sync", "--batch-size", "lots")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--batch-size" in proc.stderr


@pytest.fixture
def password_role(pg_url, pg):
    """A role that must log in with a password (scram) on the test server; yields (role, password)."""
    data_dir = Path(pg.execute("SHOW data_directory").fetchone()[0])
    hba = data_dir / "pg_hba.conf"
    role = f"nw_pw_{uuid.uuid4().hex[:8]}"
    password = f"right-{uuid.uuid4().hex[:8]}"
    try:
        text = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n" + text)
    except OSError:
        pytest.skip("the test server's pg_hba.conf is not writable here (NW_TEST_DATABASE_URL points elsewhere)")
    pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.execute("SELECT pg_reload_conf()")
    try:
        yield role, password
    finally:
        hba.write_text(text)
        pg.execute("SELECT pg_reload_conf()")
        pg.execute(f"DROP ROLE IF EXISTS {role}")


def _as_user(url: str, user: str, password: str) -> str:
    """The test server's URL (a Unix socket or host:port) with another user and password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def test_bad_password_is_one_line_without_the_password(settings, pg_url, password_role):
    role, password = password_role
    good = _as_user(pg_url, role, password)
    with psycopg.connect(good) as c:                     # the right password works …
        assert c.execute("SELECT current_user").fetchone() == (role,)
    wrong = "wrong-" + uuid.uuid4().hex[:8]
    env = env_for(settings, DATABASE_URL=_as_user(pg_url, role, wrong))
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    from nwlib.bootstrap import bootstrap
    bootstrap(settings.duckdb_path, scale=0.01)
    proc = run_nw(env, "sync", "--no-progress")           # … a wrong one is one line, at once, and never printed
    line = one_line_error(proc)
    assert proc.returncode == 4 and "refused the password" in line
    assert wrong not in proc.stderr + proc.stdout


def test_bootstrap_sync_verify_status_on_the_sample_lake(settings, pg):
    env = env_for(settings)
    proc = run_nw(env, "bootstrap", "--scale", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "clientes 100" in proc.stdout and settings.duckdb_path.exists()

    proc = run_nw(env, "sync", "--dry-run", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "plan (dry run)" in out
    assert out.index("clientes") < out.index("pedidos") < out.index("itens_pedido") < out.index("pagamentos")

    proc = run_nw(env, "sync", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "sync report" in proc.stdout and "3,000" in proc.stdout   # itens_pedido rows inserted

    proc = run_nw(env, "bootstrap", "--mutate", "--fraction", "0.05")
    assert proc.returncode == 0, proc.stderr
    proc = run_nw(env, "sync", "--no-progress", "--tables", "clientes,pedidos,itens_pedido,pagamentos")
    assert proc.returncode == 0, proc.stderr

    proc = run_nw(env, "verify")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("equal") == 4

    proc = run_nw(env, "status")
    assert proc.returncode == 0, proc.stderr
    for table in ("clientes", "pedidos", "itens_pedido", "pagamentos"):
        assert table in proc.stdout
    assert "round trip" in proc.stdout and "ok" in proc.stdout

    # a difference makes verify fail with one line
    pg.execute(f'DELETE FROM "{settings.db_schema}".pagamentos WHERE id_pagamento IN '
               f'(SELECT id_pagamento FROM "{settings.db_schema}".pagamentos LIMIT 2)')
    proc = run_nw(env, "verify", "--tables", "pagamentos")
    line = one_line_error(proc)
    assert proc.returncode == 1 and "pagamentos" in line


def test_failed_table_makes_sync_exit_non_zero(settings, pg):
    import duckdb
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'a')")
    con.close()
    env = env_for(settings)
    assert run_nw(env, "sync", "--no-progress").returncode == 0
    pg.execute(f'ALTER TABLE "{settings.db_schema}".t ADD CONSTRAINT v_short CHECK (length(v) < 3)')
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("UPDATE t SET v = 'too long'")
    con.close()
    proc = run_nw(env, "sync", "--no-progress")
    line = one_line_error(proc)
    assert proc.returncode == 1 and "'t' failed" in line and "v_short" in line


@pytest.mark.parametrize("dest_type, variable", [("S3", "S3_BUCKET_NAME"), ("DELTA", "DELTA_URI"), ("DATABRICKS", "DATABRICKS_HOST")])
def test_missing_variable_is_one_line_naming_it(settings, dest_type, variable):
    from nwlib.bootstrap import bootstrap
    bootstrap(settings.duckdb_path, scale=0.01)
    env = {k: v for k, v in env_for(settings, DESTINATION_TYPE=dest_type).items() if not k.startswith(("S3_", "DELTA_", "DATABRICKS_"))}
    proc = run_nw(env, "sync", "--no-progress")
    line = one_line_error(proc)
    assert variable in line, line


@pytest.mark.parametrize("after", [0.8, 1.5, 2.5])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(settings, after):
    """SIGINT while the run starts, compares fingerprints or loads (inside a DuckDB query it arrives as DuckDB's
    own error): "interrupted", exit 130, never "unexpected error"; the rerun finishes."""
    import signal
    import time

    from clirun import start_nw

    from nwlib.bootstrap import bootstrap
    from nwlib.verification import verify

    bootstrap(settings.duckdb_path, scale=20, seed=3)            # about 1M rows: still running when the signal comes
    child = start_nw(env_for(settings), "sync", "--no-progress")
    time.sleep(after)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted" in err and "unexpected error" not in err and "Traceback" not in err, err
    assert run_nw(env_for(settings), "sync", "--no-progress").returncode == 0
    assert all(c.ok for c in verify(settings))
