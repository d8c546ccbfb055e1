"""controle_cargas: one row per table per run, the seed's columns plus a full history; failures and skips recorded."""
from __future__ import annotations

import json

import pytest

from nwlib.engine import sync
from nwlib.errors import SyncFailed
from nwlib.engine import raise_for_failures
from nwlib.verification import verify

from lakesql import lake_sql as lake

T0 = "TIMESTAMP '2024-05-01 10:00:00'"




def ledger(pg, settings, run_id):
    cur = pg.execute(f'SELECT * FROM "{settings.db_schema}".controle_cargas WHERE run_id = %s ORDER BY id', [run_id])
    names = [d.name for d in cur.description]
    return {r["tabela_nome"]: r for r in (dict(zip(names, row)) for row in cur.fetchall())}


def rows_per_table(pg, settings, run_id):
    return dict(pg.execute(f'SELECT tabela_nome, count(*) FROM "{settings.db_schema}".controle_cargas WHERE run_id = %s '
                           "GROUP BY 1", [run_id]).fetchall())


@pytest.fixture
def three_tables(settings):
    lake(settings,
         "CREATE TABLE a (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
         "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a (id), updated_at TIMESTAMP)",
         "CREATE TABLE c (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
         f"INSERT INTO a SELECT i, 'a' || i, {T0} + to_seconds(i) FROM range(1, 11) r(i)",
         f"INSERT INTO b SELECT i, 1 + i % 10, {T0} + to_seconds(i) FROM range(1, 21) r(i)",
         f"INSERT INTO c SELECT i, 'c' || i, {T0} + to_seconds(i) FROM range(1, 31) r(i)")
    return settings


def test_one_row_per_table_per_run_with_the_full_history(three_tables, pg):
    settings = three_tables
    first = sync(settings, show_progress=False)
    assert first.ok
    rows = ledger(pg, settings, first.run_id)
    assert set(rows) == {"a", "b", "c"} and rows_per_table(pg, settings, first.run_id) == {"a": 1, "b": 1, "c": 1}
    for name, n in (("a", 10), ("b", 20), ("c", 30)):
        r = rows[name]
        assert (r["status"], r["modo"], r["erro"]) == ("ok", "merge full", None)
        assert (r["linhas_inseridas"], r["linhas_atualizadas"], r["linhas_excluidas"], r["linhas_carregadas"]) == (n, 0, 0, n)
        assert r["watermark_antes"] == {"value": None, "key": []}
        assert r["watermark_depois"] == {"value": f"2024-05-01 10:00:{n:02d}", "key": [str(n)]}
        assert r["iniciado_em"] <= r["finalizado_em"] and r["ultima_carga"] is not None   # the seed's columns are kept

    lake(settings, f"UPDATE c SET v = 'x', updated_at = {T0} + INTERVAL 1 DAY WHERE id <= 3", "DELETE FROM c WHERE id > 28",
         f"INSERT INTO a VALUES (11, 'new', {T0} + INTERVAL 1 DAY)")
    second = sync(settings, show_progress=False)
    assert second.ok and second.run_id != first.run_id
    assert rows_per_table(pg, settings, second.run_id) == {"a": 1, "b": 1, "c": 1}   # deletes land on the table's row
    rows = ledger(pg, settings, second.run_id)
    assert (rows["c"]["linhas_inseridas"], rows["c"]["linhas_atualizadas"], rows["c"]["linhas_excluidas"]) == (0, 3, 2)
    assert rows["c"]["linhas_carregadas"] == 3
    assert rows["c"]["watermark_antes"] == {"value": "2024-05-01 10:00:30", "key": ["30"]}
    assert rows["c"]["watermark_depois"] == {"value": "2024-05-02 10:00:00", "key": ["3"]}
    assert rows["c"]["modo"] == "merge incremental"
    assert (rows["a"]["linhas_inseridas"], rows["b"]["linhas_carregadas"]) == (1, 0)
    # the report the CLI prints says the same as the ledger
    by = {t.table: t for t in second.tables}
    assert (by["c"].inserted, by["c"].updated, by["c"].deleted) == (0, 3, 2)


def test_failed_table_is_recorded_independent_tables_load_dependents_are_skipped(three_tables, pg):
    settings = three_tables
    assert sync(settings, show_progress=False).ok
    pg.execute(f'ALTER TABLE "{settings.db_schema}".a ADD CONSTRAINT v_short CHECK (length(v) < 5)')
    lake(settings, f"UPDATE a SET v = 'far too long', updated_at = {T0} + INTERVAL 1 DAY WHERE id = 1",
         f"INSERT INTO b VALUES (21, 1, {T0} + INTERVAL 1 DAY)",
         f"UPDATE c SET v = 'ok', updated_at = {T0} + INTERVAL 1 DAY WHERE id = 1")
    report = sync(settings, show_progress=False)
    assert not report.ok
    by = {t.table: t for t in report.tables}
    assert by["a"].status == "failed" and "v_short" in by["a"].error
    assert by["b"].status == "skipped" and "a" in by["b"].error
    assert by["c"].status == "ok" and by["c"].updated == 1          # an independent table still loads
    with pytest.raises(SyncFailed, match="'a' failed"):
        raise_for_failures(report)

    rows = ledger(pg, settings, report.run_id)
    assert rows["a"]["status"] == "failed" and "v_short" in rows["a"]["erro"] and rows["a"]["finalizado_em"] is not None
    assert rows["b"]["status"] == "skipped" and "parent table a" in rows["b"]["erro"]
    assert rows["c"]["status"] == "ok" and rows["c"]["linhas_atualizadas"] == 1
    # nothing of the failed step was kept: the watermark did not move and the row is unchanged
    state = pg.execute(f'SELECT watermark FROM "{settings.db_schema}".nw_estado WHERE tabela_nome = %s', ["a"]).fetchone()[0]
    assert state == {"value": "2024-05-01 10:00:10", "key": ["10"]}
    assert pg.execute(f'SELECT v FROM "{settings.db_schema}".a WHERE id = 1').fetchone() == ("a1",)

    # once the cause is fixed the next run catches up, and every table is equal
    pg.execute(f'ALTER TABLE "{settings.db_schema}".a DROP CONSTRAINT v_short')
    again = sync(settings, show_progress=False)
    assert again.ok
    assert {t.table: (t.updated, t.inserted) for t in again.tables} == {"a": (1, 0), "b": (0, 1), "c": (0, 0)}
    assert all(c.ok for c in verify(settings))
    assert {r["status"] for r in ledger(pg, settings, again.run_id).values()} == {"ok"}


def test_watermarks_in_the_ledger_are_json(three_tables, pg):
    settings = three_tables
    report = sync(settings, show_progress=False)
    kinds = pg.execute(f'SELECT DISTINCT jsonb_typeof(watermark_depois) FROM "{settings.db_schema}".controle_cargas '
                       "WHERE run_id = %s", [report.run_id]).fetchall()
    assert kinds == [("object",)]
    state = pg.execute(f'SELECT tabela_nome, watermark, linhas FROM "{settings.db_schema}".nw_estado ORDER BY 1').fetchall()
    assert [(t, n) for t, _, n in state] == [("a", 10), ("b", 20), ("c", 30)]
    assert json.loads(json.dumps(state[0][1])) == {"value": "2024-05-01 10:00:10", "key": ["10"]}
