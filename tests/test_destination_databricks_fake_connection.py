"""DATABRICKS: the Delta data path for real; the SQL layer against a RECORDING FAKE connection.

No SQL warehouse can run here, so the connection is a fake that records each
statement and its parameters.  Each statement must parse as Databricks SQL
(sqlglot, dialect "databricks") and carry no literal value; the staged tables
are real Delta tables that deltalake reads back equal to the lake.
"""
from __future__ import annotations

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from nwlib.bootstrap import PER_SCALE, bootstrap, mutate
from nwlib.destinations import REGISTRY
from nwlib.destinations.databricks import DatabricksDestination
from nwlib.destinations.delta import read_table
from nwlib.engine import sync
from nwlib.errors import ConfigError, DestinationError
from nwlib.settings import load_settings
from nwlib.verification import verify


class RecordingFakeConnection:
    """Stands in for databricks.sql.connect(...): records (statement, parameters)."""

    def __init__(self, fail: Exception | None = None):
        self.statements: list[tuple[str, dict | None]] = []
        self.fail = fail
        self.closed = False

    def cursor(self):
        conn = self

        class Cursor:
            description = None

            def execute(self, statement, parameters=None):
                if conn.fail:
                    raise conn.fail
                conn.statements.append((statement, parameters))
                self.description = [("1",)] if statement.startswith("SELECT") else None

            def fetchall(self):
                return [(1,)]

            def close(self):
                pass
        return Cursor()

    def close(self):
        self.closed = True


@pytest.fixture
def dbx_settings(tmp_path):
    env = {"DESTINATION_TYPE": "DATABRICKS", "DATABRICKS_HOST": "https://adb-123.azuredatabricks.net", "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/abc",
           "DATABRICKS_TOKEN": "dapi-secret-token", "DATABRICKS_CATALOG": "main", "DATABRICKS_SCHEMA": "nw raw",
           "DELTA_URI": str(tmp_path / "staging"), "DUCKDB_PATH": str(tmp_path / "lake.duckdb"), "DESTINATION_PATH": str(tmp_path),
           "MAX_RETRIES": "0"}
    return load_settings(env=env, dotenv=None)


def test_registry_knows_databricks(dbx_settings):
    assert REGISTRY["DATABRICKS"] is DatabricksDestination and dbx_settings.destination_type == "DATABRICKS"


def test_fake_connection_statements_parse_and_bind_every_value(dbx_settings):
    bootstrap(dbx_settings.duckdb_path, scale=0.05, seed=4)
    fake = RecordingFakeConnection()
    dest = DatabricksDestination(dbx_settings, connect=lambda s: fake)
    report = sync(dbx_settings, show_progress=False, destination=dest)
    assert report.ok, report.failed
    mutate(dbx_settings.duckdb_path, 0.05)
    assert sync(dbx_settings, show_progress=False, destination=dest).ok

    texts = [s for s, _ in fake.statements]
    assert texts[0] == "CREATE SCHEMA IF NOT EXISTS `main`.`nw raw`"
    registered = {}
    for statement, params in fake.statements:
        tree = sqlglot.parse_one(statement, read="databricks")
        assert not list(tree.find_all(exp.Literal)), statement                 # no spliced values
        assert "dapi-secret-token" not in statement and str(dbx_settings.delta_uri) not in statement
        if statement.startswith("CREATE TABLE"):
            assert isinstance(tree, exp.Create) and "USING DELTA LOCATION :location" in statement
            registered[tree.this.name] = params["location"]
    assert set(registered) == set(PER_SCALE) | {"controle_cargas"}
    assert registered["pedidos"] == dest.uri("pedidos")
    # Registration happens once per run, not per step.
    assert len(texts) == 2 * (1 + len(registered))

    # The staged data is a real Delta table deltalake reads back equal to the lake.
    lake = duckdb.connect(str(dbx_settings.duckdb_path), read_only=True)
    for table in PER_SCALE:
        staged = read_table(dbx_settings, table)
        got = staged.select(lake.execute(f"SELECT * FROM {table} LIMIT 0").arrow().schema.names)
        con = duckdb.connect()
        con.register("staged", got)
        con.execute(f"ATTACH '{dbx_settings.duckdb_path}' AS l (READ_ONLY)")
        diff = con.execute(f"SELECT count(*) FROM (SELECT * FROM staged EXCEPT ALL SELECT * FROM l.{table}) "
                           f"UNION ALL SELECT count(*) FROM (SELECT * FROM l.{table} EXCEPT ALL SELECT * FROM staged)").fetchall()
        assert diff == [(0,), (0,)], table
    assert all(c.ok for c in verify(dbx_settings, destination=dest))
    assert dest.ping() >= 0 and fake.statements[-1][0] == "SELECT 1"


def test_fake_connection_failure_is_one_line_without_token(dbx_settings):
    bootstrap(dbx_settings.duckdb_path, scale=0.01, seed=4)
    fake = RecordingFakeConnection(fail=RuntimeError("HTTP 401 Unauthorized: token dapi-secret-token rejected\nstack..."))
    dest = DatabricksDestination(dbx_settings, connect=lambda s: fake)
    with pytest.raises(DestinationError, match="refused the token") as err:
        dest.ping()
    assert "dapi-secret-token" not in str(err.value) and "\n" not in str(err.value)


def test_missing_databricks_settings_name_the_variables(tmp_path):
    settings = load_settings(env={"DESTINATION_TYPE": "DATABRICKS", "DELTA_URI": str(tmp_path)}, dotenv=None)
    with pytest.raises(ConfigError, match="DATABRICKS_HOST, DATABRICKS_HTTP_PATH, DATABRICKS_TOKEN not set"):
        DatabricksDestination(settings)
