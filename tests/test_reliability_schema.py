"""Schema evolution on a real PostgreSQL: what the destination follows by itself, and what it refuses in one line."""
from __future__ import annotations

import duckdb
import pytest
from clirun import env_for, one_line_error, run_nw
from lakesql import lake_sql

from nwlib.engine import sync
from nwlib.verification import verify

T0 = "TIMESTAMP '2025-01-01 00:00:00'"


@pytest.fixture
def lake(settings):
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR, amount DECIMAL(10,2), n INTEGER, big BIGINT, updated_at TIMESTAMP)")
        con.execute(f"INSERT INTO parent SELECT i, 'p' || i, i * 1.25, i, i * 1000, {T0} + INTERVAL (i) SECOND FROM range(1, 41) t(i)")
        con.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER, note VARCHAR, updated_at TIMESTAMP)")
        con.execute(f"INSERT INTO child SELECT i, 1 + i % 40, 'c' || i, {T0} + INTERVAL (i) SECOND FROM range(1, 101) t(i)")
        con.execute("CREATE TABLE other (k VARCHAR PRIMARY KEY, v DOUBLE, updated_at TIMESTAMP)")
        con.execute(f"INSERT INTO other SELECT 'k' || i, i / 3, {T0} FROM range(10) t(i)")
        con.execute("CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)")
        con.execute("INSERT INTO fk_metadata VALUES ('child', 'parent_id', 'parent', 'id')")
    first = sync(settings, show_progress=False)
    assert first.ok, first.failed
    return settings




def pg_types(pg, schema, table):
    return dict(pg.execute("SELECT column_name, CASE WHEN data_type = 'numeric' THEN format('numeric(%%s,%%s)', numeric_precision, numeric_scale) "
                           "ELSE data_type END FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                           [schema, table]).fetchall())


def notes(pg, schema, table):
    rows = pg.execute(f'SELECT mudancas_schema FROM "{schema}".controle_cargas WHERE tabela_nome = %s AND mudancas_schema IS NOT NULL ORDER BY id',
                      [table]).fetchall()
    return [r[0] for r in rows]


def all_equal(settings):
    bad = [c for c in verify(settings) if not c.ok]
    assert not bad, bad


def fks(pg, schema):
    return {r[0] for r in pg.execute("SELECT conrelid::regclass::text || '->' || confrelid::regclass::text FROM pg_constraint c "
                                     "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s AND contype = 'f'", [schema]).fetchall()}


def test_first_sync_records_created_tables(lake, pg):
    assert notes(pg, lake.db_schema, "parent") == ["created table parent"]
    assert fks(pg, lake.db_schema) == {f"{lake.db_schema}.child->{lake.db_schema}.parent"}
    assert any("added foreign key" in n for n in notes(pg, lake.db_schema, "child"))


def test_added_column_appears_with_backfilled_values(lake, pg):
    # No updated_at change: the existing rows still get the new column's values (a full re-send).
    lake_sql(lake, "ALTER TABLE parent ADD COLUMN score INTEGER DEFAULT 3", "UPDATE parent SET score = id * 10 WHERE id <= 20")
    report = sync(lake, show_progress=False)
    assert report.ok, report.failed
    by = {t.table: t for t in report.tables}
    assert by["parent"].schema_changes == ("added column score integer",)
    assert by["parent"].updated == 40 and by["child"].moved == 0
    got = dict(pg.execute(f'SELECT id, score FROM "{lake.db_schema}".parent').fetchall())
    assert got == {i: (i * 10 if i <= 20 else 3) for i in range(1, 41)}
    assert notes(pg, lake.db_schema, "parent")[-1] == "added column score integer"
    all_equal(lake)


def test_widened_types_are_widened(lake, pg):
    lake_sql(lake, "ALTER TABLE parent ALTER n TYPE BIGINT", "ALTER TABLE parent ALTER amount TYPE DECIMAL(18,2)",
             f"UPDATE parent SET n = 5000000000, amount = 1234567890123456.78, updated_at = {T0} + INTERVAL 1 DAY WHERE id = 7")
    report = sync(lake, show_progress=False)
    assert report.ok, report.failed
    assert pg_types(pg, lake.db_schema, "parent")["n"] == "bigint"
    assert pg_types(pg, lake.db_schema, "parent")["amount"] == "numeric(18,2)"
    assert pg.execute(f'SELECT n, amount::text FROM "{lake.db_schema}".parent WHERE id = 7').fetchone() == (5000000000, "1234567890123456.78")
    recorded = notes(pg, lake.db_schema, "parent")[-1]
    assert "widened column n from integer to bigint" in recorded and "widened column amount from numeric(10,2) to numeric(18,2)" in recorded
    all_equal(lake)


def test_array_columns_of_types_postgresql_spells_otherwise_are_left_alone(make_settings, pg):
    """format_type says ``timestamp without time zone[]`` where nw says ``timestamp[]``: no change, under any policy."""
    settings = make_settings(SCHEMA_CHANGES="freeze")
    lake_sql(settings, "CREATE TABLE ev (id INTEGER PRIMARY KEY, ts TIMESTAMP[], ms TIMESTAMP_MS[], t TIME[], b BIT[])",
             "INSERT INTO ev VALUES (1, [TIMESTAMP '2024-01-01 10:00:00'], [TIMESTAMP_MS '2024-01-01 10:00:00.123'], [TIME '01:02:03'], "
             "['101'::BIT])")
    for _ in range(2):
        report = sync(settings, show_progress=False)
        assert report.ok, report.failed        # the second run turned each into text (freeze: refused it)
    assert set(pg_types(pg, settings.db_schema, "ev").values()) == {"integer", "ARRAY", "bigint"}     # not text
    assert notes(pg, settings.db_schema, "ev") == ["created table ev"]
    all_equal(settings)


def test_a_table_postgresql_refuses_to_create_fails_alone_naming_the_limit(lake, pg):
    lake_sql(lake, "CREATE TABLE wide (id INTEGER PRIMARY KEY, " + ", ".join(f"c{i} INTEGER" for i in range(1700)) + ")",
             "INSERT INTO wide (id) VALUES (1)", f"UPDATE other SET v = -1, updated_at = {T0} + INTERVAL 1 DAY WHERE k = 'k1'")
    report = sync(lake, show_progress=False)
    r = {t.table: t for t in report.tables}
    assert r["other"].status == "ok" and r["other"].updated == 1      # the whole run stopped at "prepare tables"
    assert r["wide"].status == "failed" and "at most 1600 columns" in r["wide"].error
    assert "PostgreSQL limit" in r["wide"].error and "DB_HOST" not in r["wide"].error          # not a network matter
    assert pg.execute("SELECT to_regclass(%s)", [f'"{lake.db_schema}".wide']).fetchone() == (None,)


def test_varchar_destination_column_is_widened_to_text(lake, pg):
    # DuckDB keeps no VARCHAR length (VARCHAR(5) is VARCHAR), so nw makes text columns; a destination
    # column made by another tool as varchar(5) is widened when longer values arrive.
    pg.execute(f'ALTER TABLE "{lake.db_schema}".parent ALTER COLUMN name TYPE varchar(5)')
    lake_sql(lake, f"UPDATE parent SET name = repeat('x', 500), updated_at = {T0} + INTERVAL 1 DAY WHERE id = 3")
    report = sync(lake, show_progress=False)
    assert report.ok, report.failed
    assert pg_types(pg, lake.db_schema, "parent")["name"] == "text"
    assert "widened column name from character varying(5) to text" in notes(pg, lake.db_schema, "parent")[-1]
    all_equal(lake)


CHANGES = [  # (lake change, what SCHEMA_CHANGES=evolve notes, what SCHEMA_CHANGES=freeze says)
    ("ALTER TABLE parent DROP COLUMN big", "column big is no longer in the lake: kept",
     "column parent.big (BIGINT) is no longer in the lake (dropped or renamed)"),
    ("ALTER TABLE parent RENAME COLUMN big TO grande", "added column grande bigint",
     "column parent.grande BIGINT was added in the lake; column parent.big (BIGINT) is no longer in the lake"),
    ("ALTER TABLE parent ALTER big TYPE INTEGER", "column big is INTEGER in the lake: kept bigint",
     "column parent.big changed type from BIGINT to INTEGER"),
    ("ALTER TABLE parent ALTER amount TYPE DECIMAL(10,4)", "column amount changed from numeric(10,2) to numeric(10,4): now numeric",
     "column parent.amount changed type from DECIMAL(10,2) to DECIMAL(10,4)"),
    ("ALTER TABLE parent ALTER name TYPE INTEGER USING length(name)", "column name is INTEGER in the lake: kept text",
     "column parent.name changed type from VARCHAR to INTEGER"),
]


@pytest.mark.parametrize("change, evolved, _", CHANGES)
def test_by_default_a_dropped_renamed_or_retyped_column_keeps_runs_going(lake, pg, change, evolved, _):
    lake_sql(lake, change, f"UPDATE other SET v = -1, updated_at = {T0} + INTERVAL 1 DAY WHERE k = 'k1'")
    proc = run_nw(env_for(lake), "sync", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert any(evolved in n for n in notes(pg, lake.db_schema, "parent")), notes(pg, lake.db_schema, "parent")
    assert pg.execute(f'SELECT v FROM "{lake.db_schema}".other WHERE k = %s', ["k1"]).fetchone()[0] == -1
    all_equal(lake)
    again = run_nw(env_for(lake), "sync", "--no-progress")              # noted once, not on every run
    assert again.returncode == 0 and sum(evolved in n for n in notes(pg, lake.db_schema, "parent")) == 1


@pytest.mark.parametrize("change, _, message", CHANGES)
def test_freeze_stops_that_table_with_one_line_and_full_refresh_resolves(lake, pg, change, _, message):
    lake_sql(lake, change, f"UPDATE other SET v = -1, updated_at = {T0} + INTERVAL 1 DAY WHERE k = 'k1'")
    env = env_for(lake, SCHEMA_CHANGES="freeze")
    proc = run_nw(env, "sync", "--no-progress")
    line = one_line_error(proc)
    assert message in line, line
    assert "SCHEMA_CHANGES=freeze" in line and "nw sync --full-refresh --tables parent" in line, line
    # Only that table (and its child, which depends on it) stopped; the independent table loaded.
    assert pg.execute(f'SELECT v FROM "{lake.db_schema}".other WHERE k = %s', ["k1"]).fetchone()[0] == -1
    failed = pg.execute(f'SELECT tabela_nome, erro FROM "{lake.db_schema}".controle_cargas WHERE status = %s', ["failed"]).fetchall()
    assert [f[0] for f in failed] == ["parent"] and message in failed[0][1]
    assert pg_types(pg, lake.db_schema, "parent")  # untouched: still there
    fixed = run_nw(env, "sync", "--no-progress", "--full-refresh", "--tables", "parent")
    assert fixed.returncode == 0, fixed.stderr
    again = run_nw(env, "sync", "--no-progress")
    assert again.returncode == 0, again.stderr
    all_equal(lake)
    assert fks(pg, lake.db_schema) == {f"{lake.db_schema}.child->{lake.db_schema}.parent"}


def test_new_table_and_new_foreign_key_are_picked_up(lake, pg):
    lake_sql(lake,
             "CREATE TABLE grandchild (id INTEGER PRIMARY KEY, child_id INTEGER, other_k VARCHAR, updated_at TIMESTAMP)",
             f"INSERT INTO grandchild SELECT i, 1 + i % 100, 'k' || (i % 10), {T0} FROM range(1, 51) t(i)",
             "INSERT INTO fk_metadata VALUES ('grandchild', 'child_id', 'child', 'id'), ('grandchild', 'other_k', 'other', 'k')")
    report = sync(lake, show_progress=False)
    assert report.ok, report.failed
    assert [t.table for t in report.tables].index("grandchild") > [t.table for t in report.tables].index("child")
    s = lake.db_schema
    assert fks(pg, s) == {f"{s}.child->{s}.parent", f"{s}.grandchild->{s}.child", f"{s}.grandchild->{s}.other"}
    recorded = "; ".join(notes(pg, s, "grandchild"))
    assert "created table grandchild" in recorded and recorded.count("added foreign key") == 2
    all_equal(lake)
