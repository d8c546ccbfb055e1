"""nwlib.transform: a real dbt build (dbt-core + dbt-duckdb, offline) of transform/ on the sample lake, then published.

The marts' contracts declare primary keys (DuckDB constraints nw reads) and pedidos_completos' foreign key
(fk_metadata, by a post-hook); the repository's checks.yml gates them before they are published.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from nwlib import lake as nwlake
from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync
from nwlib.errors import ConfigError, TransformFailed
from nwlib.model import HELD, OK
from nwlib.transform import last_run, transform
from nwlib.verification import verify

from lakesql import lake_sql

ROOT = Path(__file__).resolve().parents[1]
MARTS = ("cliente_valor", "pedidos_completos", "vendas_diarias")


@pytest.fixture
def project(make_settings, lake_path):
    bootstrap(lake_path, scale=0.2, seed=11)
    return make_settings(CHECKS_FILE=ROOT / "checks.yml", DBT_PROJECT_DIR=ROOT / "transform")


def test_dbt_builds_the_marts_offline_and_nw_publishes_them_exactly(project, pg):
    lines = []
    result = transform(project, echo=lines.append)
    assert result.ok and {m.name for m in result.models} == set(MARTS)
    assert len(result.tests) >= 9 and all(t.status == "pass" for t in result.tests)
    assert any("Completed successfully" in ln for ln in lines)          # dbt's own lines stream as progress
    assert last_run(project).nodes == result.nodes                     # what the dashboard shows
    con = nwlake.connect(project.duckdb_path)
    specs = nwlake.read_specs(con)
    con.close()
    assert specs["cliente_valor"].primary_key == ("id_cliente",) and specs["cliente_valor"].primary_key_enforced
    assert [(fk.columns, fk.ref_table) for fk in specs["pedidos_completos"].foreign_keys] == [(("id_cliente",), "cliente_valor")]

    report = sync(project, show_progress=False)
    assert report.ok, report.failed or report.held
    assert {t.table for t in report.tables} >= set(MARTS)
    assert all(r.passed for r in report.checks) and len(report.checks) >= 10
    assert all(c.ok for c in verify(project))
    # The FK between marts exists in PostgreSQL too.
    assert pg.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass",
                      [f'"{project.db_schema}".pedidos_completos']).fetchone()[0] == 1

    # Rebuilt the next night after a few changes: only the mart rows that changed are sent.
    mutate(project.duckdb_path, 0.01, 3)
    assert transform(project).ok
    again = {t.table: t for t in sync(project, show_progress=False).tables}
    total = pg.execute(f'SELECT count(*) FROM "{project.db_schema}".pedidos_completos').fetchone()[0]
    moved = again["pedidos_completos"].moved
    assert 0 < moved < total / 5, (moved, total)
    assert all(c.ok for c in verify(project))


def test_a_broken_mart_is_held_back_with_its_dependants_the_rest_publishes(project, pg):
    assert transform(project).ok
    assert sync(project, show_progress=False).ok
    # Two customers now share an email: the mart cliente_valor breaks `unique: email` (an error check).
    lake_sql(project, "UPDATE clientes SET email = 'mesmo@exemplo.com', updated_at = updated_at + INTERVAL 1 DAY WHERE id_cliente IN (3, 4)",
             "UPDATE pedidos SET status = 'entregue', updated_at = updated_at + INTERVAL 1 DAY WHERE id_pedido = 1")
    assert transform(project).ok
    report = sync(project, show_progress=False)
    by = {t.table: t for t in report.tables}
    assert by["cliente_valor"].status == HELD and "unique(email) [error] failed: 2 bad rows (keys 3, 4)" in by["cliente_valor"].error
    assert by["pedidos_completos"].status == HELD and "depends on 'cliente_valor'" in by["pedidos_completos"].error
    assert by["clientes"].status == OK and any("unique(email) [warn] failed" in n for n in by["clientes"].notes)
    assert by["pedidos"].status == OK and by["pedidos"].updated == 1 and by["vendas_diarias"].status == OK
    held = pg.execute(f'SELECT status, erro FROM "{project.db_schema}".controle_cargas WHERE run_id = %s AND tabela_nome = %s',
                      [report.run_id, "cliente_valor"]).fetchone()
    assert held[0] == HELD and "keys 3, 4" in held[1]
    assert pg.execute(f"SELECT count(*) FROM \"{project.db_schema}\".cliente_valor WHERE email = 'mesmo@exemplo.com'").fetchone()[0] == 0


def test_a_failing_model_or_test_is_one_line_and_changes_nothing(project, tmp_path):
    assert transform(project).ok                     # the marts as they were last good
    broken = tmp_path / "transform"
    shutil.copytree(ROOT / "transform", broken, ignore=shutil.ignore_patterns("target", "logs"))
    settings = project.__class__(**{**project.__dict__, "dbt_project_dir": broken})
    # A test that fails: a customer with negative lifetime value is impossible, so declare it so and break it.
    (broken / "models" / "marts" / "cliente_valor.sql").write_text(
        (broken / "models" / "marts" / "cliente_valor.sql").read_text().replace("c.id_cliente,", "c.id_cliente % 50 AS id_cliente,", 1))
    with pytest.raises(TransformFailed) as failed:
        transform(settings)
    assert "\n" not in str(failed.value) and "cliente_valor" in str(failed.value)
    assert "Constraint Error" in str(failed.value) or "constraint" in str(failed.value).lower(), str(failed.value)  # the cause, not a heading
    # Until dbt passes again, a plain sync holds the failed mart and the mart that depends on it.
    report = sync(settings, show_progress=False)
    by = {t.table: t for t in report.tables}
    assert by["cliente_valor"].status == HELD and "last dbt build failed" in by["cliente_valor"].error
    assert by["pedidos_completos"].status == HELD and by["clientes"].status == OK
    # A --select that matches nothing is said, not a silent "0 models".
    with pytest.raises(ConfigError, match="matched no model"):
        transform(settings, select="no_such_model")
    con = duckdb.connect(str(project.duckdb_path), read_only=True)
    days = con.execute("SELECT count(*), sum(valor_total) FROM vendas_diarias").fetchone()
    con.close()
    # A model that does not compile: one line naming it; the last good table stays as it was.
    (broken / "models" / "marts" / "vendas_diarias.sql").write_text("select from where")
    with pytest.raises(TransformFailed, match="vendas_diarias") as failed:
        transform(settings, select="vendas_diarias")
    assert "\n" not in str(failed.value)
    con = duckdb.connect(str(project.duckdb_path), read_only=True)
    assert con.execute("SELECT count(*), sum(valor_total) FROM vendas_diarias").fetchone() == days
    con.close()


def test_a_relative_destination_path_as_in_a_fresh_clone(make_settings, lake_path, tmp_path, monkeypatch):
    """The README's order (make demo, then nw run) runs with DESTINATION_PATH=data, relative to the current folder:
    dbt's results land there, not under the dbt project."""
    monkeypatch.chdir(tmp_path)
    bootstrap(lake_path, scale=0.02, seed=1)
    project = tmp_path / "transform"
    shutil.copytree(ROOT / "transform", project, ignore=shutil.ignore_patterns("target", "logs", "data"))
    settings = make_settings(DESTINATION_PATH="data", DBT_PROJECT_DIR="transform")
    assert transform(settings).ok
    assert (tmp_path / "data" / ".nw" / "dbt" / "target" / "run_results.json").is_file()
    assert not (project / "data").exists()
    assert last_run(settings).ok
