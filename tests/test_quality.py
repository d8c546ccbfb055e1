"""nwlib.quality: each check kind fails and passes; the gate holds a table and its dependants back; bad files are one line.

Checks run on a real DuckDB lake; the gate's tests publish to a real PostgreSQL and read controle_cargas back.
"""
from __future__ import annotations

import pytest

from nwlib import lake as nwlake
from nwlib import quality
from nwlib.engine import raise_for_failures, sync
from nwlib.errors import ConfigError, QualityGateFailed
from nwlib.model import HELD, OK
from nwlib.quality.rules import parse_checks
from nwlib.verification import verify

from lakesql import lake_sql

T0 = "TIMESTAMP '2024-05-01 10:00:00'"


def shop(settings):
    lake_sql(settings,
             "CREATE TABLE clientes (id INTEGER PRIMARY KEY, email VARCHAR, estado VARCHAR, updated_at TIMESTAMP)",
             "CREATE TABLE pedidos (id INTEGER PRIMARY KEY, id_cliente INTEGER REFERENCES clientes (id), valor DECIMAL(10,2), "
             "status VARCHAR, updated_at TIMESTAMP)",
             "CREATE TABLE produtos (sku VARCHAR PRIMARY KEY, nome VARCHAR)",
             f"INSERT INTO clientes SELECT i, 'c' || i || '@x.br', 'SP', {T0} FROM range(1, 11) r(i)",
             f"INSERT INTO pedidos SELECT i, 1 + i % 10, i * 1.5, 'pago', {T0} FROM range(1, 31) r(i)",
             "INSERT INTO produtos VALUES ('a', 'Caneta'), ('b', 'Lápis')")


def results(settings, yaml_text: str, published=None):
    (settings.checks_file).write_text(yaml_text)
    checks = quality.load_checks(settings.checks_file)
    con = nwlake.connect(settings.duckdb_path)
    try:
        return quality.run_checks(con, nwlake.read_specs(con), checks, published=published)
    finally:
        con.close()


def one(settings, yaml_text: str, published=None) -> quality.CheckResult:
    (r,) = results(settings, yaml_text, published)
    return r


# --- each kind: a passing and a failing case ---------------------------------------------------

@pytest.mark.parametrize("check, breaks, bad, sample", [
    ("not_null: [email, estado]", "UPDATE clientes SET email = NULL WHERE id IN (3, 7)", 2, ("3", "7")),
    ("unique: email", "UPDATE clientes SET email = 'dup@x.br' WHERE id IN (2, 5, 9)", 3, ("2", "5", "9")),
    ("unique: [estado, email]", "UPDATE clientes SET email = 'same' WHERE id IN (4, 6)", 2, ("4", "6")),
    ("accepted_values: {column: estado, values: [SP, RJ, MG]}", "UPDATE clientes SET estado = 'XX' WHERE id = 8", 1, ("8",)),
    ("expression: {name: email_tem_arroba, sql: \"email LIKE '%@%'\"}", "UPDATE clientes SET email = 'sem-arroba' WHERE id = 1", 1, ("1",)),
])
def test_row_checks_pass_then_fail_with_count_and_keys(settings, check, breaks, bad, sample):
    shop(settings)
    doc = f"tables:\n  clientes:\n    - {check}\n"
    assert one(settings, doc).passed
    lake_sql(settings, breaks)
    r = one(settings, doc)
    assert (r.passed, r.bad_rows, r.sample) == (False, bad, sample)
    assert r.blocking and "failed" in r.line() and str(bad) in r.line()


def test_relationships_pass_then_fail_on_an_orphan(settings):
    shop(settings)
    doc = "tables:\n  pedidos:\n    - relationships: {column: id_cliente, to: clientes, field: id}\n"
    assert one(settings, doc).passed
    lake_sql(settings, "CREATE TABLE pedidos2 AS SELECT * FROM pedidos", "DROP TABLE pedidos",
             "CREATE TABLE pedidos (id INTEGER PRIMARY KEY, id_cliente INTEGER, valor DECIMAL(10,2), status VARCHAR, updated_at TIMESTAMP)",
             "INSERT INTO pedidos SELECT * FROM pedidos2", "DROP TABLE pedidos2",
             "UPDATE pedidos SET id_cliente = 99 WHERE id IN (4, 12)", "UPDATE pedidos SET id_cliente = NULL WHERE id = 5")
    r = one(settings, doc)
    assert (r.bad_rows, r.sample) == (2, ("4", "12"))     # NULL is not an orphan; keys in their own order


def test_row_count_change_against_the_last_published_count(settings):
    shop(settings)
    doc = "tables:\n  pedidos:\n    - row_count_change: {max_drop_pct: 20, max_growth_pct: 50}\n"
    assert one(settings, doc, published={}).passed                 # never published: nothing to compare
    assert one(settings, doc, published={"pedidos": 28}).passed    # 30 vs 28
    dropped = one(settings, doc, published={"pedidos": 100})       # 30 is 70 % below: 50 rows under the bound of 80
    assert (dropped.passed, dropped.bad_rows) == (False, 50) and "published 100" in dropped.line()
    grown = one(settings, doc, published={"pedidos": 10})          # 30 is 200 % above: 15 rows over the bound of 15
    assert (grown.passed, grown.bad_rows) == (False, 15)
    assert one(settings, doc, published={"pedidos": 0}).passed     # an empty table published is no baseline


def test_freshness_of_a_timestamp_column(settings):
    shop(settings)
    doc = "tables:\n  pedidos:\n    - freshness: {column: updated_at, max_age: 36 hours}\n      severity: warn\n"
    stale = one(settings, doc)
    assert not stale.passed and not stale.blocking and "newest 2024-05-01" in stale.line()
    lake_sql(settings, "UPDATE pedidos SET updated_at = CAST(now() AS TIMESTAMP) - INTERVAL 2 HOUR WHERE id = 3")
    assert one(settings, doc).passed


# --- the gate in a sync ---------------------------------------------------------------------------

def ledger(pg, settings):
    return {r[0]: r[1:] for r in pg.execute(
        f'SELECT tabela_nome, status, erro, observacoes FROM "{settings.db_schema}".controle_cargas').fetchall()}


def test_an_error_check_holds_the_table_and_its_dependants_back_the_rest_publishes(settings, pg):
    shop(settings)
    settings.checks_file.write_text("tables:\n  clientes:\n    - unique: email\n")
    assert sync(settings, show_progress=False).ok
    lake_sql(settings, "UPDATE clientes SET email = 'dup@x.br', updated_at = updated_at + INTERVAL 1 DAY WHERE id IN (2, 5)",
             "UPDATE pedidos SET valor = 0 WHERE id = 1", "UPDATE produtos SET nome = 'Borracha' WHERE sku = 'b'")
    report = sync(settings, show_progress=False)
    by = {t.table: t for t in report.tables}
    assert by["clientes"].status == HELD, by["clientes"]
    assert "unique(email) [error] failed: 2 bad rows (keys 2, 5)" in by["clientes"].error
    assert by["pedidos"].status == HELD and "depends on 'clientes'" in by["pedidos"].error
    assert by["produtos"].status == OK and by["produtos"].updated == 1
    assert not report.ok and report.held == (by["clientes"], by["pedidos"])
    # The destination keeps its last good state for the held tables; the ledger says why.
    assert pg.execute(f'SELECT count(DISTINCT email) FROM "{settings.db_schema}".clientes').fetchone()[0] == 10
    assert pg.execute(f'SELECT valor FROM "{settings.db_schema}".pedidos WHERE id = 1').fetchone()[0] == 1.5
    rows = ledger(pg, settings)
    assert rows["clientes"][0] == HELD and "keys 2, 5" in rows["clientes"][1]
    assert rows["pedidos"][0] == HELD
    with pytest.raises(QualityGateFailed, match="table 'clientes' was held back"):
        raise_for_failures(report)
    # Fixed in the lake: the next sync publishes everything.
    lake_sql(settings, "UPDATE clientes SET email = 'c' || id || '@x.br' WHERE id IN (2, 5)")
    assert sync(settings, show_progress=False).ok
    assert all(c.ok for c in verify(settings))


def test_a_warn_check_publishes_and_records(settings, pg):
    shop(settings)
    settings.checks_file.write_text("tables:\n  pedidos:\n    - expression: {name: valor_positivo, sql: \"valor > 2\"}\n      severity: warn\n")
    report = sync(settings, show_progress=False)
    assert report.ok
    pedidos = next(t for t in report.tables if t.table == "pedidos")
    assert pedidos.status == OK and pedidos.inserted == 30
    assert any("valor_positivo [warn] failed: 1 bad rows (keys 1)" in n for n in pedidos.notes)
    assert "valor_positivo [warn] failed" in (ledger(pg, settings)["pedidos"][2] or "")


def test_a_dry_run_shows_what_the_gate_would_hold(settings, pg):
    shop(settings)
    lake_sql(settings, "UPDATE clientes SET estado = NULL WHERE id = 4")
    settings.checks_file.write_text("tables:\n  clientes:\n    - not_null: estado\n")
    plan = sync(settings, dry_run=True, show_progress=False)
    assert {t.table: t.status for t in plan.tables} == {"clientes": HELD, "pedidos": HELD, "produtos": "planned"}
    assert "not_null(estado) [error] failed: 1 bad rows (keys 4)" in plan.tables[0].error


# --- the file: one clear line per mistake ---------------------------------------------------------

@pytest.mark.parametrize("doc, says", [
    ("tables:\n  t:\n    - nonsense: x\n", "table 't', check #1: unknown key(s) nonsense"),
    ("tables:\n  t:\n    - unique: a\n      severity: fatal\n", "table 't', check #1 (unique): severity 'fatal'"),
    ("tables:\n  t:\n    - accepted_values: {column: a}\n", "table 't', check #1 (accepted_values): missing values"),
    ("tables:\n  t:\n    - freshness: {column: a, max_age: soon}\n", "max_age 'soon' is not a duration"),
    ("tables:\n  t:\n    - expression: {sql: 'a > 0; DROP TABLE t'}\n", "one boolean expression (no ';')"),
    ("tables:\n  t: [{unique: a}, {unique: a}]\n", "two checks named 'unique(a)'"),
    ("tabels:\n  t: []\n", "unknown top-level key(s) tabels"),
])
def test_a_bad_checks_file_is_one_line_naming_file_table_and_check(doc, says):
    with pytest.raises(ConfigError) as err:
        parse_checks(__import__("yaml").safe_load(doc), "checks.yml")
    assert says in str(err.value) and str(err.value).startswith("checks.yml: ") and "\n" not in str(err.value)


def test_checks_naming_what_the_lake_lacks_are_one_line(settings):
    shop(settings)
    with pytest.raises(ConfigError, match=r"checks.yml: table 'clientes', check not_null\(telefone\): column 'telefone' is not in the lake table"):
        results(settings, "tables:\n  clientes:\n    - not_null: telefone\n")
    with pytest.raises(ConfigError, match="DuckDB cannot run it"):
        results(settings, "tables:\n  clientes:\n    - expression: {sql: \"no_such_column > 1\"}\n")
    settings.checks_file.write_text("tables:\n  clientes: [{unique: email]\n")
    with pytest.raises(ConfigError, match="checks.yml: not valid YAML at line 2"):
        quality.load_checks(settings.checks_file)
    # A table the lake does not have yet (a mart not built): its checks are named, not run.
    assert results(settings, "tables:\n  mart_futuro:\n    - unique: id\n") == ()
    assert quality.absent_tables({}, parse_checks({"tables": {"mart_futuro": [{"unique": "id"}]}})) == ("mart_futuro",)


def test_identifiers_are_quoted_and_values_bound(settings):
    lake_sql(settings, 'CREATE TABLE "Tabela Estranha" ("id x" INTEGER PRIMARY KEY, "sel""ect" VARCHAR)',
             """INSERT INTO "Tabela Estranha" VALUES (1, 'a'), (2, 'it''s'), (3, 'b')""")
    r = one(settings, 'tables:\n  "Tabela Estranha":\n    - accepted_values: {column: "sel\\"ect", values: [a, "it\'s"]}\n')
    assert (r.bad_rows, r.sample) == (1, ("3",))


def test_accepted_values_compare_in_the_columns_own_type(settings):
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, ativo BOOLEAN, preco DECIMAL(10,2))",
             "INSERT INTO t VALUES (1, true, 1.50), (2, false, 2.00), (3, true, -1), (4, NULL, 9.99)")
    assert one(settings, "tables:\n  t:\n    - accepted_values: {column: ativo, values: [true, false]}\n").passed
    r = one(settings, "tables:\n  t:\n    - accepted_values: {column: preco, values: [1.5, 2.0, -1]}\n")
    assert (r.bad_rows, r.sample) == (1, ("4",))
    with pytest.raises(ConfigError, match="DuckDB cannot run it"):
        one(settings, "tables:\n  t:\n    - accepted_values: {column: preco, values: [cheap]}\n")


def test_parents_checks_hold_children_back_when_only_the_children_are_synced(settings, pg):
    shop(settings)
    assert sync(settings, show_progress=False).ok
    settings.checks_file.write_text("tables:\n  clientes:\n    - not_null: email\n")
    lake_sql(settings, "UPDATE clientes SET email = NULL WHERE id = 2", "UPDATE pedidos SET valor = 7 WHERE id = 3")
    report = sync(settings, ["pedidos"], show_progress=False)
    (pedidos,) = report.tables
    assert pedidos.status == HELD and "depends on 'clientes'" in pedidos.error
    assert pedidos.watermark_after == pedidos.watermark_before and pedidos.watermark_after.value is not None


def test_sample_keys_of_a_composite_key_are_unambiguous(settings):
    lake_sql(settings, "CREATE TABLE v (pais VARCHAR, n INTEGER, x INTEGER, PRIMARY KEY (pais, n))",
             "INSERT INTO v VALUES ('BR', 10, NULL), ('BR', 9, NULL), ('PT', 1, 1), ('1,x', 2, NULL)")
    r = one(settings, "tables:\n  v:\n    - not_null: x\n")
    assert r.sample == ("(1,x, 2)", "(BR, 9)", "(BR, 10)")
