"""nwlib.flow: the Prefect flow end to end under Prefect's test harness (a local API on SQLite), into PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import pytest

from nwlib.bootstrap import bootstrap
from nwlib.errors import QualityGateFailed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def prefect_env(monkeypatch, tmp_path, pg_url, pg_schema, lake_path, pushgateway):
    env = {"DATABASE_URL": pg_url, "DB_SCHEMA": pg_schema, "DUCKDB_PATH": str(lake_path), "DESTINATION_PATH": str(tmp_path),
           "CHECKS_FILE": str(ROOT / "checks.yml"), "DBT_PROJECT_DIR": str(ROOT / "transform"), "PUSHGATEWAY_URL": pushgateway.url,
           "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)         # no .env of the repository
    return env


def test_the_flow_transforms_checks_syncs_and_reports_to_prefect(prefect_env, lake_path, pg, pg_schema, pushgateway):
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from nwlib.flow import build
    from nwlib.model import TRANSFORM

    bootstrap(lake_path, scale=0.1, seed=2)
    nw_pipeline = build()
    with prefect_test_harness(server_startup_timeout=120):
        result = nw_pipeline()
        assert result["ok"] and result["rows"] > 0
        runs = pg.execute(f'SELECT count(DISTINCT run_id), count(*) FILTER (WHERE modo = %s) FROM "{pg_schema}".controle_cargas',
                          [TRANSFORM]).fetchone()
        assert runs == (1, 3)

        import asyncio

        async def read():
            async with get_client() as client:
                flows = await client.read_flow_runs()
                tasks = await client.read_task_runs()
                artifacts = await client.read_artifacts()
                return flows, tasks, artifacts

        flows, tasks, artifacts = asyncio.run(read())
        assert [f.state_type.value for f in flows] == ["COMPLETED"]
        assert {t.name.split("-")[0] for t in tasks} == {"transform", "check", "sync"}
        assert all(t.empirical_policy.retries in (0, None) for t in tasks)
        report = next(a for a in artifacts if a.key == "nw-run-report")
        assert "cliente_valor" in str(report.data) and "dbt:cliente_valor" in str(report.data)

        # A quality check that holds a table back fails the flow (Prefect alerts), the rest is published.
        import duckdb
        con = duckdb.connect(str(lake_path))
        con.execute("UPDATE clientes SET email = 'igual@x.br' WHERE id_cliente IN (1, 2)")
        con.close()
        with pytest.raises(QualityGateFailed):
            nw_pipeline(transform=True)
    series = pushgateway.series()
    assert any(n == "nw_table_held" and dict(lab).get("table") == "cliente_valor" and v == 1 for (n, lab), v in series.items())
