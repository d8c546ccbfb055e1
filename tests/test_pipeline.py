"""nwlib.pipeline (`nw run`): transform → check → sync with one run id in controle_cargas; a dbt failure publishes nothing."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nwlib import pipeline
from nwlib.bootstrap import bootstrap
from nwlib.errors import TransformFailed
from nwlib.model import FAILED, OK, TRANSFORM

ROOT = Path(__file__).resolve().parents[1]


def ledger(pg, schema, run_id):
    return {r[0]: (r[1], r[2], r[3]) for r in pg.execute(
        f'SELECT tabela_nome, modo, status, coalesce(erro, observacoes) FROM "{schema}".controle_cargas WHERE run_id = %s', [run_id]).fetchall()}


def test_run_transforms_checks_and_publishes_under_one_run_id(make_settings, lake_path, pg, tmp_path):
    bootstrap(lake_path, scale=0.2, seed=5)
    settings = make_settings(CHECKS_FILE=ROOT / "checks.yml", DBT_PROJECT_DIR=ROOT / "transform")
    report = pipeline.run(settings, show_progress=False)
    assert report.ok and report.sync.run_id == report.run_id
    rows = ledger(pg, settings.db_schema, report.run_id)
    assert {k for k, v in rows.items() if v[0] == TRANSFORM} == {"dbt:cliente_valor", "dbt:pedidos_completos", "dbt:vendas_diarias"}
    assert rows["dbt:cliente_valor"][1] == OK and "tests passed" in rows["dbt:cliente_valor"][2]
    assert {"clientes", "pedidos", "cliente_valor", "pedidos_completos", "vendas_diarias"} <= set(rows)
    assert all(v[1] == OK for v in rows.values())

    # A model that fails: nothing is published, and the failure is in the ledger under its own run id.
    broken = tmp_path / "transform"
    shutil.copytree(ROOT / "transform", broken, ignore=shutil.ignore_patterns("target", "logs"))
    (broken / "models" / "marts" / "vendas_diarias.sql").write_text("select 1/0 as dia, 'x'::integer as pedidos")
    before = pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".controle_cargas').fetchone()[0]
    with pytest.raises(TransformFailed) as failed:
        pipeline.run(make_settings(CHECKS_FILE=ROOT / "checks.yml", DBT_PROJECT_DIR=broken), show_progress=False)
    after = pg.execute(f'SELECT tabela_nome, modo, status FROM "{settings.db_schema}".controle_cargas ORDER BY id').fetchall()[before:]
    assert ("dbt:vendas_diarias", TRANSFORM, FAILED) in after
    assert all(mode == TRANSFORM for _, mode, _ in after), "a failed transform must publish nothing"
    assert "vendas_diarias" in str(failed.value)
