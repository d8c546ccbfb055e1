"""The `nw` command line, run as a child process against the test server (no developer .env leaks in)."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from clirun import env_for, one_line_error, run_nw

from nwlib.cli import main

COMMANDS = ("bootstrap", "sync", "status", "verify", "runs", "config", "transform", "check", "run")


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

    bootstrap(settings.duckdb_path, scale=40, seed=3)            # about 2M rows: still running when the signal comes
    child = start_nw(env_for(settings), "sync", "--no-progress")
    time.sleep(after)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted" in err and "unexpected error" not in err and "Traceback" not in err, err
    assert run_nw(env_for(settings), "sync", "--no-progress").returncode == 0
    assert all(c.ok for c in verify(settings))


def test_a_reader_that_goes_away_ends_nw_quietly_with_141(settings):
    """`nw config | head -1`: the reader closes the pipe; nw stops without "unexpected error" or a traceback and
    exits 141, as a Unix tool stopped by SIGPIPE does (documented with the exit codes)."""
    import os
    import subprocess

    from clirun import nw_args

    read, write = os.pipe()
    os.close(read)                    # the reader is gone before nw writes a byte
    try:
        proc = subprocess.run(nw_args("config"), env=env_for(settings), stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_the_cli_package_runs_as_a_module_too():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "nwlib.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("nw "), proc.stderr


def test_ctrl_c_after_the_work_is_still_one_line_and_exit_130(settings):
    """A Ctrl-C that comes once the sync has committed, while the process shuts down (sent here from an atexit
    hook): the same one line and exit 130, not a death by the signal or an "Exception ignored" trace; the
    rows it committed stay, so the rerun has nothing to send."""
    import subprocess
    import sys

    from nwlib.bootstrap import bootstrap
    from nwlib.verification import verify

    bootstrap(settings.duckdb_path, scale=0.01)
    code = ("import atexit, os, signal, sys, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
            "sys.argv = ['nw', 'sync', '--no-progress', '--env-file', '/nonexistent']\n"
            "from nwlib.cli import main\nsys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code], env=env_for(settings), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("nw: interrupted"), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert "clientes" in proc.stdout            # the report of the sync it finished
    assert all(c.ok for c in verify(settings))
    again = run_nw(env_for(settings), "sync", "--json")
    assert again.returncode == 0, again.stderr
    assert {(t["inserted"], t["updated"], t["deleted"]) for t in _json(again)["tables"]} == {(0, 0, 0)}


# --- issue 12: a CLI for scripts ------------------------------------------------------------------

ALL_COMMANDS = COMMANDS
SAMPLE = ("clientes", "pedidos", "itens_pedido", "pagamentos")


def _ledger(pg, settings, run_id: str | None = None) -> list[dict]:
    from psycopg.rows import dict_row

    where, params = ("WHERE run_id = %s", [run_id]) if run_id else ("", [])
    with pg.cursor(row_factory=dict_row) as cur:
        return cur.execute(f'SELECT * FROM "{settings.db_schema}".controle_cargas {where} ORDER BY id', params).fetchall()


def _json(proc: subprocess.CompletedProcess) -> dict:
    """stdout is exactly one JSON document."""
    import json

    return json.loads(proc.stdout)


def _sample(settings, scale: float = 0.05) -> None:
    from nwlib.bootstrap import bootstrap

    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    bootstrap(settings.duckdb_path, scale=scale, seed=4)


def _one_table_lake(settings) -> None:
    import duckdb

    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    con.close()


def _lake(settings, *sql: str) -> None:
    import duckdb

    con = duckdb.connect(str(settings.duckdb_path))
    for q in sql:
        con.execute(q)
    con.close()


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_subcommand_help_has_a_description_defaults_and_an_example(command, capsys):
    import re

    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    description = rest.partition("\n\n")[0]
    assert usage.startswith(f"usage: nw {command}") and len(description.split()) >= 8, out
    assert "Example:\n  nw " in out
    options = out.split("options:\n")[1].split("\n\n")[0]
    for entry in re.split(r"\n  (?=-)", options.strip()):
        if not entry.startswith("-h"):
            assert "default" in entry, f"{entry.split()[0]} shows no default"


def _exit_codes(text: str) -> dict[int, str]:
    """The exit-code table of `nw --help` (wrapped lines joined): code → meaning."""
    entries: dict[int, str] = {}
    code = None
    for line in text.split("Exit codes:\n")[1].splitlines():
        words = line.split()
        if len(words) > 1 and words[0].isdigit():
            code = int(words[0])
            entries[code] = " ".join(words[1:])
        elif words and code is not None:
            entries[code] += " " + " ".join(words)
    return entries


def test_help_and_readme_document_every_exit_code(capsys):
    from nwlib import errors

    with pytest.raises(SystemExit):
        main(["--help"])
    codes = _exit_codes(capsys.readouterr().out)
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.NwError) and c is not errors.NwError]
    assert len(classes) >= 12
    for cls in classes:
        assert cls.__name__ in codes[cls.exit_code], (cls, codes)
    assert {0, 2, 7, 8, 70, 130} <= set(codes) and "usage" in codes[2] and "interrupted" in codes[130]
    assert "behind" in codes[7] and "failed in its last run" in codes[8]

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Command line\n")[1].split("\n## ")[0]
    rows = {int(r.split("|")[1].strip(" `")): r for r in section.splitlines() if r.startswith("| `") and r.split("|")[1].strip(" `").isdigit()}
    assert set(rows) == set(codes)
    for cls in classes:
        assert cls.__name__ in rows[cls.exit_code], cls


def test_destination_type_help_lists_the_choices_and_refuses_others(capsys):
    from nwlib.settings import DESTINATION_ALIASES, DESTINATION_TYPES

    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(t in out for t in (*DESTINATION_TYPES, *DESTINATION_ALIASES))
    with pytest.raises(SystemExit) as done:
        main(["status", "--destination-type", "oracle"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["bootstrap", "--database-url", "x"], ["bootstrap", "--schema", "s"], ["bootstrap", "--destination-type", "S3"],
                                  ["bootstrap", "--batch-size", "5"], ["status", "--batch-size", "5"], ["runs", "--duckdb-path", "x"],
                                  ["config", "--tables", "a"]])
def test_options_only_on_the_commands_they_apply_to(settings, argv):
    proc = run_nw(env_for(settings), *argv)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr and proc.stdout == "", proc.stderr


def test_sync_status_verify_json_match_the_ledger(settings, pg):
    _sample(settings)
    env = env_for(settings)
    proc = run_nw(env, "sync", "--json")
    assert proc.returncode == 0, proc.stderr
    report = _json(proc)
    assert set(report) == {"run_id", "destination", "dry_run", "ok", "ledger_error", "tables", "checks", "steps"}
    assert report["ok"] is True and report["dry_run"] is False and report["destination"] == "POSTGRES"
    rows = {r["tabela_nome"]: r for r in _ledger(pg, settings, report["run_id"])}
    assert [t["table"] for t in report["tables"]] == list(SAMPLE) and set(rows) == set(SAMPLE)
    for t in report["tables"]:
        row = rows[t["table"]]
        assert (t["status"], t["inserted"], t["updated"], t["deleted"]) == (row["status"], row["linhas_inseridas"],
                                                                           row["linhas_atualizadas"], row["linhas_excluidas"])
        assert t["watermark_after"] == row["watermark_depois"] and t["mode"] == row["modo"]
    assert proc.stderr == ""                                   # --json shows no progress bar

    proc = run_nw(env, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    st = _json(proc)
    assert st["in_sync"] is True and st["behind"] == [] and st["failed"] == [] and st["lake"] == str(settings.duckdb_path)
    for t in st["tables"]:
        assert t["sync"] == "in sync" and t["behind"] is False and t["last_status"] == rows[t["table"]]["status"]
        assert t["dest_rows"] == t["lake_rows"] == rows[t["table"]]["linhas_inseridas"]
        assert datetime.fromisoformat(t["last_run"]) == rows[t["table"]]["finalizado_em"]

    proc = run_nw(env, "verify", "--json")
    assert proc.returncode == 0, proc.stderr
    checks = _json(proc)
    assert checks["equal"] is True and [c["table"] for c in checks["tables"]] == list(SAMPLE)
    assert all(c["equal"] and c["missing"] == c["extra"] == 0 and c["dest_rows"] == rows[c["table"]]["linhas_inseridas"]
               for c in checks["tables"])

    # a difference: still one JSON document on stdout, the error one line on stderr, the documented code
    pg.execute(f'DELETE FROM "{settings.db_schema}".pagamentos WHERE id_pagamento IN '
               f'(SELECT id_pagamento FROM "{settings.db_schema}".pagamentos ORDER BY 1 LIMIT 2)')
    proc = run_nw(env, "verify", "--json", "--tables", "pagamentos")
    line = one_line_error(proc)
    checks = _json(proc)
    assert proc.returncode == 1 and "pagamentos" in line and checks["equal"] is False
    assert checks["tables"][0]["missing"] == 2 and len(checks["tables"][0]["sample_keys"]) == 2


def test_sync_json_of_a_dry_run_and_of_a_failure(settings, pg):
    _one_table_lake(settings)
    env = env_for(settings)
    plan = _json(run_nw(env, "sync", "--dry-run", "--json"))
    assert plan["dry_run"] is True and plan["tables"][0]["status"] == "planned" and plan["tables"][0]["inserted"] == 2
    assert pg.execute("SELECT to_regclass(%s)", [f'"{settings.db_schema}".controle_cargas']).fetchone()[0] is None   # wrote nothing
    assert run_nw(env, "sync", "--json").returncode == 0
    pg.execute(f'ALTER TABLE "{settings.db_schema}".t ADD CONSTRAINT v_short CHECK (length(v) < 3)')
    _lake(settings, "UPDATE t SET v = 'too long' WHERE id = 1")
    proc = run_nw(env, "sync", "--json")
    line = one_line_error(proc)
    report = _json(proc)
    assert proc.returncode == 1 and "'t' failed" in line and report["ok"] is False
    failed = report["tables"][0]
    assert failed["status"] == "failed" and "v_short" in failed["error"]
    assert _ledger(pg, settings, report["run_id"])[0]["erro"] == failed["error"]


def test_runs_lists_runs_newest_first_counting_distinct_tables(settings, pg):
    from nwlib.bootstrap import mutate

    _sample(settings)
    env = env_for(settings)
    ids = []
    for i in range(3):
        if i:
            mutate(settings.duckdb_path, 0.05, seed=i)
        proc = run_nw(env, "sync", "--json")
        assert proc.returncode == 0, proc.stderr
        ids.append(_json(proc)["run_id"])
    # a run may hold more than one row for a table (its deletes beside its load): it still counts as one table
    last = {r["tabela_nome"]: r for r in _ledger(pg, settings, ids[-1])}
    pg.execute(f'INSERT INTO "{settings.db_schema}".controle_cargas (run_id, tabela_nome, modo, status, linhas_excluidas, iniciado_em, '
               "finalizado_em) VALUES (%s, 'pedidos', 'merge deletes', 'ok', 7, %s, %s)",
               [ids[-1], last["pedidos"]["iniciado_em"], last["pedidos"]["iniciado_em"]])

    proc = run_nw(env, "runs", "--limit", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    runs = _json(proc)["runs"]
    assert [r["run_id"] for r in runs] == ids[::-1][:2]
    for r in runs:
        rows = _ledger(pg, settings, r["run_id"])
        assert r["tables"] == len({x["tabela_nome"] for x in rows}) == 4
        assert (r["inserted"], r["updated"], r["deleted"]) == tuple(sum(x[c] for x in rows) for c in
                                                                     ("linhas_inseridas", "linhas_atualizadas", "linhas_excluidas"))
        assert r["status"] == "ok" and r["seconds"] >= 0
        assert datetime.fromisoformat(r["started"]) == min(x["iniciado_em"] for x in rows)
        assert datetime.fromisoformat(r["finished"]) == max(x["finalizado_em"] for x in rows)
    assert len(_ledger(pg, settings)) == 13

    proc = run_nw({**env, "COLUMNS": "80"}, "runs")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if any(i in ln for i in ids)]
    assert [next(i for i in ids if i in ln) for ln in lines] == ids[::-1], proc.stdout       # one line per run, newest first
    assert all(" ok " in ln and " 4 " in ln for ln in lines)


def test_runs_on_an_empty_destination_and_with_a_bad_limit(settings):
    env = env_for(settings)
    proc = run_nw(env, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    assert _json(proc)["runs"] == []
    assert "no runs recorded" in run_nw(env, "runs").stdout
    assert run_nw(env, "runs", "--limit", "0").returncode == 2


@pytest.mark.parametrize("kind", ["DELTA", "S3"])
def test_runs_on_object_store_destinations(kind, request, tmp_path):
    from clirun import child_env_for, object_store_env

    env = child_env_for(object_store_env(kind, request, tmp_path))
    assert run_nw(env, "bootstrap", "--scale", "0.02").returncode == 0
    ids = []
    for args in (["sync"], ["sync", "--tables", "clientes"], ["sync"]):
        proc = run_nw(env, *args, "--json")
        assert proc.returncode == 0, proc.stderr
        ids.append(_json(proc)["run_id"])
    proc = run_nw(env, "runs", "--json", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    runs = _json(proc)["runs"]
    assert [r["run_id"] for r in runs] == [ids[2], ids[1]]
    assert [r["tables"] for r in runs] == [4, 1] and all(r["status"] == "ok" for r in runs)


def test_config_shows_where_each_setting_came_from_and_masks_secrets(settings, tmp_path):
    import json

    password = "pw-" + uuid.uuid4().hex[:10]
    token, secret = "dapi" + uuid.uuid4().hex, "aws-" + uuid.uuid4().hex
    env_file = tmp_path / "my.env"
    env_file.write_text(f"DB_SCHEMA=from_dotenv\nMAX_RETRIES=9\nDATABRICKS_TOKEN={token}\n")
    env = {k: v for k, v in env_for(settings, DATABASE_URL=f"postgresql://nw:{password}@db.example.com:6543/postgres",
                                    AWS_SECRET_ACCESS_KEY=secret).items() if k not in ("MAX_RETRIES", "DB_SCHEMA")}
    args = ["config", "--batch-size", "77", "--env-file", str(env_file)]
    proc = subprocess.run([sys.executable, "-m", "nwlib", *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    got = doc["settings"]
    assert doc["env_file"] == {"path": str(env_file), "found": True}
    assert got["DATABASE_URL"] == {"value": "postgresql://nw:***@db.example.com:6543/postgres", "source": "environment"}
    assert got["DB_SCHEMA"] == {"value": "from_dotenv", "source": ".env"} and got["MAX_RETRIES"] == {"value": 9, "source": ".env"}
    assert got["BATCH_SIZE"] == {"value": 77, "source": "flag"} and got["DB_PORT"] == {"value": 5432, "source": "default"}
    assert got["DATABRICKS_TOKEN"]["value"] == got["AWS_SECRET_ACCESS_KEY"]["value"] == "***"
    human = subprocess.run([sys.executable, "-m", "nwlib", *args], env={**env, "COLUMNS": "100"}, capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in human.stdout.splitlines() if ln.split()}
    assert rows["DB_SCHEMA"] == [".env", "from_dotenv"] and rows["BATCH_SIZE"] == ["flag", "77"]
    assert rows["DATABASE_URL"] == ["environment", "postgresql://nw:***@db.example.com:6543/postgres"]
    for out in (proc.stdout + proc.stderr, human.stdout + human.stderr):
        assert password not in out and token not in out and secret not in out and password[3:] not in out


def test_status_exit_codes_in_sync_behind_and_failed(settings, pg):
    from nwlib.errors import LastRunFailed, TablesBehind

    _one_table_lake(settings)
    env = env_for(settings)
    proc = run_nw(env, "status")                               # never synced: behind
    line = one_line_error(proc)
    assert proc.returncode == TablesBehind.exit_code == 7 and "t (never synced)" in line and "`nw sync`" in line
    assert run_nw(env, "sync", "--no-progress").returncode == 0
    proc = run_nw(env, "status")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert run_nw(env, "status", "--json").returncode == 0

    _lake(settings, "INSERT INTO t VALUES (3, 'c')")           # a change the destination does not have yet
    proc = run_nw(env, "status")
    line = one_line_error(proc)
    assert proc.returncode == 7 and "1 table(s) behind the lake: t (differs)" in line
    proc = run_nw(env, "status", "--json")
    assert proc.returncode == 7 and _json(proc)["behind"] == ["t"] and _json(proc)["tables"][0]["sync"] == "differs"

    pg.execute(f'ALTER TABLE "{settings.db_schema}".t ADD CONSTRAINT v_short CHECK (length(v) < 3)')
    _lake(settings, "UPDATE t SET v = 'too long' WHERE id = 1")
    assert run_nw(env, "sync", "--no-progress").returncode == 1
    proc = run_nw(env, "status")
    line = one_line_error(proc)
    assert proc.returncode == LastRunFailed.exit_code == 8 and "'t' failed in its last run" in line and "v_short" in line
    assert "t: last run failed" in proc.stdout
    st = _json(run_nw(env, "status", "--json"))
    assert st["failed"] == ["t"] and st["tables"][0]["last_status"] == "failed" and "v_short" in st["tables"][0]["last_error"]

    pg.execute(f'ALTER TABLE "{settings.db_schema}".t DROP CONSTRAINT v_short')
    assert run_nw(env, "sync", "--no-progress").returncode == 0
    assert run_nw(env, "status").returncode == 0


def test_output_fits_80_columns_with_errors_below_the_table_and_the_hint_said_once(settings, pg):
    _sample(settings)
    _lake(settings, "CREATE TABLE a_table_with_a_rather_long_name (id INTEGER PRIMARY KEY, descricao VARCHAR, "
                    "atualizado_em TIMESTAMP)",
          "INSERT INTO a_table_with_a_rather_long_name VALUES (1, 'um', TIMESTAMP '2024-05-01 10:00:00.123456')")
    env = env_for(settings, COLUMNS="80")
    outputs = [run_nw(env, "sync", "--dry-run"), run_nw(env, "sync", "--no-progress"), run_nw(env, "status"), run_nw(env, "verify")]
    pg.execute(f'ALTER TABLE "{settings.db_schema}".a_table_with_a_rather_long_name ADD CONSTRAINT descricao_curta '
               "CHECK (length(descricao) < 5)")
    _lake(settings, "UPDATE a_table_with_a_rather_long_name SET descricao = 'uma descrição longa demais' WHERE id = 1")
    failed = run_nw(env, "sync", "--no-progress")
    outputs += [failed, run_nw(env, "status"), run_nw(env, "runs")]
    assert [p.returncode for p in outputs] == [0, 0, 0, 0, 1, 8, 0], [p.stderr for p in outputs]
    for proc in outputs[:-1]:
        long = [ln for ln in proc.stdout.splitlines() if len(ln) > 80]
        assert not long, proc.stdout
    assert "a_table_with_a_rather_long_name" in outputs[2].stdout          # names are never cut

    # the error is below the table, not in a cell; the hint is said once, on the error line
    out, err = failed.stdout, failed.stderr
    table_rows = [ln for ln in out.splitlines() if ln.startswith("a_table_with_a_rather_long_name ")]
    assert table_rows and all("descricao_curta" not in ln for ln in table_rows)
    below = out[out.index("a_table_with_a_rather_long_name: failed:"):]
    assert "descricao_curta" in " ".join(below.split())
    line = one_line_error(failed)
    assert "descricao_curta" in line
    hint = line.rpartition(" — ")[2]
    assert hint and line.count(" — ") == 1 and line.count("rerun") == 1, line
    assert " ".join((out + err).split()).count(hint) == 1
    assert "fix the cause and rerun" not in out + err or "fix the data or schema" not in out + err


# --- transform, check, run (issue 13) ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _shop(settings):
    import duckdb

    con = duckdb.connect(str(settings.duckdb_path))
    con.execute("CREATE TABLE clientes (id INTEGER PRIMARY KEY, email VARCHAR)")
    con.execute("INSERT INTO clientes SELECT i, 'c' || i || '@x' FROM range(1, 9) r(i)")
    con.execute("UPDATE clientes SET email = 'same' WHERE id IN (2, 6)")
    con.close()


def test_check_alone_says_what_a_sync_would_hold_and_exits_9(settings, pg, tmp_path):
    _shop(settings)
    checks = tmp_path / "mine.yml"
    checks.write_text("tables:\n  clientes:\n    - unique: email\n    - not_null: email\n      severity: warn\n  mart_x:\n    - unique: id\n")
    env = env_for(settings, CHECKS_FILE=str(checks))
    done = run_nw(env, "check")
    line = one_line_error(done)
    assert done.returncode == 9 and "table 'clientes' would be held back" in line and "keys 2, 6" in line
    assert "mart_x: not in the lake" in done.stdout and all(len(x) <= 80 for x in done.stdout.splitlines())
    as_json = run_nw(env, "check", "--json")
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 9 and list(doc["held"]) == ["clientes"] and doc["not_run"] == ["mart_x"]
    assert [c["passed"] for c in doc["checks"]] == [False, True]
    # A sync holds it back, exit 9; nothing of clientes reaches the destination.
    synced = run_nw(env, "sync", "--no-progress")
    assert synced.returncode == 9 and "held back" in one_line_error(synced)
    assert "quality checks: 1 of 2 passed; 1 table(s) held back" in synced.stdout
    runs = json.loads(run_nw(env, "runs", "--json").stdout)["runs"]
    assert (runs[0]["status"], runs[0]["held"], runs[0]["failed"]) == ("held", 1, 0)
    # A mistyped CHECKS_FILE, or a table the lake lacks, does not switch the gate off unnoticed.
    missing = run_nw(env_for(settings, CHECKS_FILE=str(tmp_path / "typo.yml")), "sync", "--no-progress")
    assert f"nw: note: CHECKS_FILE={tmp_path / 'typo.yml'} does not exist: no quality checks ran" in missing.stderr
    checks.write_text("tables:\n  clientez:\n    - unique: email\n")
    absent = run_nw(env, "sync", "--no-progress")
    assert "names table(s) the lake does not have, whose checks did not run: clientez" in absent.stderr
    # A mistake in the file is one line naming it.
    checks.write_text("tables:\n  clientes:\n    - uniq: email\n")
    bad = run_nw(env, "check")
    assert bad.returncode == 2 and f"{checks}: table 'clientes', check #1: unknown key(s) uniq" in one_line_error(bad)


def test_transform_and_run_through_the_command_line(settings, pg, tmp_path):
    import shutil

    from nwlib.bootstrap import bootstrap

    bootstrap(settings.duckdb_path, scale=0.1, seed=4)
    env = env_for(settings, CHECKS_FILE=str(ROOT / "checks.yml"), DBT_PROJECT_DIR=str(ROOT / "transform"))
    done = run_nw(env, "run", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] and doc["transform"]["ok"] and {s["table"] for s in doc["steps"]} == {"dbt:cliente_valor", "dbt:pedidos_completos",
                                                                                         "dbt:vendas_diarias"}
    assert {"cliente_valor", "pedidos_completos", "vendas_diarias"} <= {t["table"] for t in doc["tables"]} and doc["checks"]
    again = run_nw(env, "transform", "--no-progress", timeout=300)
    assert again.returncode == 0 and "cliente_valor" in again.stdout
    broken = tmp_path / "transform"
    shutil.copytree(ROOT / "transform", broken, ignore=shutil.ignore_patterns("target", "logs"))
    (broken / "models" / "marts" / "vendas_diarias.sql").write_text("select nonsense from nowhere")
    failed = run_nw({**env, "DBT_PROJECT_DIR": str(broken)}, "transform", "--no-progress", timeout=300)
    assert failed.returncode == 10 and "vendas_diarias" in one_line_error(failed)
    # nw run --json on a failed dbt build: the report still comes out, the metrics say the run failed.
    prom = tmp_path / "nw.prom"
    ran = run_nw({**env, "DBT_PROJECT_DIR": str(broken), "METRICS_FILE": str(prom)}, "run", "--json", "--no-progress", timeout=300)
    assert ran.returncode == 10 and "vendas_diarias" in one_line_error(ran)
    doc = json.loads(ran.stdout)
    assert not doc["ok"] and doc["tables"] == [] and any(s["status"] == "failed" for s in doc["steps"]) and not doc["transform"]["ok"]
    assert "nw_run_ok 0.0" in prom.read_text() and "nw_run_failed_models 1.0" in prom.read_text()


def test_nw_timings_reports_the_start_up_to_the_first_sql(settings, pg):
    import re

    from nwlib.bootstrap import bootstrap

    bootstrap(settings.duckdb_path, scale=0.01)
    done = run_nw(env_for(settings, NW_TIMINGS="1"), "sync", "--no-progress")
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("nw: timings: "))
    # process start → each moment of the run, in order, then the total
    moments = [re.fullmatch(r"([a-zA-Z ]+) ([\d.]+) s", part).groups() for part in line.removeprefix("nw: timings: process start → ").split("; ")]
    names = [name for name, _ in moments]
    assert names == ["first SQL", "destination ready", "changes worked out", "rows sent", "deletes sent", "ledger written", "total"], line
    seconds = [float(v) for _, v in moments]
    assert 0 < seconds[0] and seconds == sorted(seconds), line
    assert "timings" not in run_nw(env_for(settings), "sync", "--no-progress").stderr
