"""The password never shows: not on stdout/stderr, not in errors, not in controle_cargas, not in logs.

A server of the test's own requires a password (scram-sha-256) from a role;
nw syncs with it through DATABASE_URL and through DB_HOST/DB_PASSWORD, then
meets a wrong password and an unreachable host.  Every byte each run printed,
logged or stored is searched for the password (raw and URL-encoded).
"""
from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

import psycopg
import pytest
from clirun import env_for, one_line_error, run_nw
from private_pg import PrivatePg
from tcp_proxy import TcpProxy

from nwlib.bootstrap import bootstrap
from nwlib.engine import sync
from nwlib.errors import NwError
from nwlib.settings import describe, load_settings
from nwlib.status import status
from nwlib.verification import verify

PASSWORD = "Tr0ub4dor&3-" + uuid.uuid4().hex[:8] + "!x"
WRONG = "Wr0ng-" + uuid.uuid4().hex[:8]
FORMS = (PASSWORD, quote(PASSWORD, safe=""), WRONG)


def clean(text: str, where: str) -> None:
    for secret in FORMS:
        assert secret not in text, f"a password appeared in {where}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pg = PrivatePg(tmp_path_factory.mktemp("pgsecret"))
    role = f"nw_secret_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s".replace("%s", "'" + PASSWORD.replace("'", "''") + "'"))
        c.execute(f"CREATE SCHEMA s AUTHORIZATION {role}")
    pg.require_password_for(role)
    pg.role = role
    yield pg
    pg.close()


def test_password_is_required_by_the_server(server):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(server.url_for(server.role, WRONG)).close()
    psycopg.connect(server.url_for(server.role, quote(PASSWORD, safe=""))).close()


def test_password_never_in_outputs_ledger_or_logs(server, tmp_path, caplog):
    lake = tmp_path / "lake.duckdb"
    bootstrap(lake, scale=0.05)
    good_url = server.url_for(server.role, quote(PASSWORD, safe=""))
    base = {"DB_SCHEMA": "s", "DUCKDB_PATH": str(lake), "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "1", "RETRY_BASE_SECONDS": "0.05"}
    settings = load_settings(env={**base, "DATABASE_URL": good_url}, dotenv=None)
    env = env_for(settings)
    seen = []

    # The CLI with the right password: sync (with its progress bar), status, verify, dry run.
    for args in (["sync"], ["status"], ["verify"], ["sync", "--dry-run"]):
        proc = run_nw(env, *args)
        assert proc.returncode == 0, proc.stderr
        seen.append((f"nw {' '.join(args)}", proc.stdout + proc.stderr))

    # DB_HOST / DB_PASSWORD (through a loopback proxy to the server's socket).
    proxy = TcpProxy(server.socket_path)
    try:
        host_env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
        host_env.update(DB_HOST="127.0.0.1", DB_PORT=str(proxy.port), DB_USER=server.role, DB_NAME="postgres", DB_PASSWORD=PASSWORD)
        proc = run_nw(host_env, "sync", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        seen.append(("nw sync with DB_PASSWORD", proc.stdout + proc.stderr))
        wrong_env = {**host_env, "DB_PASSWORD": WRONG}
        proc = run_nw(wrong_env, "sync", "--no-progress")
        line = one_line_error(proc)
        assert "refused the password" in line, line
        seen.append(("wrong DB_PASSWORD", proc.stdout + proc.stderr))
    finally:
        proxy.close()

    # Wrong password in DATABASE_URL; an unreachable host with the right password.
    failures = {
        "wrong password in DATABASE_URL": server.url_for(server.role, WRONG),
        "unreachable host": f"postgresql://{server.role}:{quote(PASSWORD, safe='')}@127.0.0.1:9/postgres?connect_timeout=2",
    }
    for what, url in failures.items():
        for args in (["sync", "--no-progress"], ["status"], ["verify"]):
            proc = run_nw({**env, "DATABASE_URL": url}, *args)
            one_line_error(proc)
            seen.append((f"{what}: nw {args[0]}", proc.stdout + proc.stderr))

    # In process, with every logger at DEBUG (psycopg's included).
    caplog.set_level(logging.DEBUG)
    report = sync(settings, show_progress=False)
    assert report.ok
    assert all(c.ok for c in verify(settings))
    st = status(settings)
    seen.append(("status()", repr(st)))
    seen.append(("settings", repr(settings) + repr(describe(settings))))
    for what, url in failures.items():
        with pytest.raises(NwError) as err:
            sync(load_settings(env={**base, "DATABASE_URL": url}, dotenv=None), show_progress=False)
        seen.append((f"{what}: exception", str(err.value) + repr(err.value.args)))
    seen.append(("logging", caplog.text))

    # Everything the destination stores about the runs.
    with psycopg.connect(server.url, autocommit=True) as c:
        ledger = c.execute("SELECT * FROM s.controle_cargas").fetchall()
        state = c.execute("SELECT * FROM s.nw_estado").fetchall()
        roles = c.execute("SELECT application_name FROM pg_stat_activity").fetchall()
    assert ledger
    seen.append(("controle_cargas", repr(ledger)))
    seen.append(("nw_estado", repr(state) + repr(roles)))
    for where, text in seen:
        clean(text, where)
    # The files nw leaves beside the lake (key record, spill dir) carry no password either.
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".duckdb":
            clean(path.read_bytes().decode("latin-1"), str(path))
