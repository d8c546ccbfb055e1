"""Exact on lakes nobody here wrote: each case a new user met (issue 10, (a)–(g) and items 5–10).

Every test uses a real PostgreSQL and ends with ``verify`` equal, or checks the
one-line refusal that replaces a wrong result.
"""
from __future__ import annotations

import json

import duckdb
import pytest

from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync
from nwlib.model import FAILED, OK
from nwlib.verification import verify

from lakesql import lake_sql as lake

T0 = "TIMESTAMP '2024-05-01 10:00:00'"


def run(settings, ok=True, **kw):
    report = sync(settings, show_progress=False, **kw)
    if ok:
        assert report.ok, report.failed
    return {t.table: t for t in report.tables}


def counts(r):
    return (r.inserted, r.updated, r.deleted)


def equal(settings, tables=None) -> bool:
    checks = verify(settings, tables)
    return bool(checks) and all(c.ok for c in checks)


def ledger(pg, settings, run_id=None):
    rows = pg.execute(f'SELECT run_id, tabela_nome, status, erro, linhas_inseridas, linhas_atualizadas, linhas_excluidas, observacoes '
                      f'FROM "{settings.db_schema}".controle_cargas ORDER BY id').fetchall()
    return [r for r in rows if run_id is None or r[0] == run_id]


# --- (a) and item 5: the original project's metadata format ----------------------------------------

ORIGINAL = {
    "clientes": {"id_cliente": {"data_type": "INTEGER", "primary_key": True, "foreign_key": None},
                 "nome": {"data_type": "VARCHAR", "primary_key": False, "foreign_key": None},
                 "updated_at": {"data_type": "TIMESTAMP", "primary_key": False, "foreign_key": None}},
    "pedidos": {"id_pedido": {"data_type": "INTEGER", "primary_key": True, "foreign_key": None},
                "id_cliente": {"data_type": "INTEGER", "primary_key": False, "foreign_key": {"table": "clientes", "column": "id_cliente"}},
                "valor_total": {"data_type": "DECIMAL(10,2)", "primary_key": False, "foreign_key": None},
                "updated_at": {"data_type": "TIMESTAMP", "primary_key": False, "foreign_key": None}},
}


def original_lake(settings):
    """A lake in the original NW-Data style: no declared constraints, keys only in table_metadata (JSON)."""
    lake(settings,
         "CREATE TABLE clientes (id_cliente INTEGER, nome VARCHAR, updated_at TIMESTAMP)",
         "CREATE TABLE pedidos (id_pedido INTEGER, id_cliente INTEGER, valor_total DECIMAL(10,2), updated_at TIMESTAMP)",
         "CREATE TABLE table_metadata (table_name VARCHAR PRIMARY KEY, schema_json JSON)",
         *[f"INSERT INTO table_metadata VALUES ('{t}', '{json.dumps(m)}')" for t, m in ORIGINAL.items()],
         f"INSERT INTO clientes SELECT i, 'c' || i, {T0} FROM range(1, 11) r(i)",
         f"INSERT INTO pedidos SELECT i, 1 + i % 10, i * 1.5, {T0} FROM range(1, 51) r(i)")


def test_a_a_lake_in_the_original_metadata_format_syncs_with_its_keys(settings, pg):
    original_lake(settings)
    r = run(settings)
    assert counts(r["clientes"]) == (10, 0, 0) and counts(r["pedidos"]) == (50, 0, 0)
    fks = pg.execute("SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint c JOIN pg_namespace n "
                     "ON n.oid = c.connamespace WHERE n.nspname = %s AND contype = 'f'", [settings.db_schema]).fetchall()
    assert [(a.split(".")[-1], b.split(".")[-1]) for a, b in fks] == [("pedidos", "clientes")]
    lake(settings, "UPDATE pedidos SET valor_total = 0 WHERE id_pedido = 7", "DELETE FROM pedidos WHERE id_pedido = 8")
    assert counts(run(settings)["pedidos"]) == (0, 1, 1)
    assert equal(settings)


def test_a_a_null_in_a_key_declared_only_in_metadata_is_refused_naming_the_column(settings, pg):
    original_lake(settings)
    run(settings)
    lake(settings, f"INSERT INTO clientes VALUES (NULL, 'sem id', {T0})", "UPDATE pedidos SET valor_total = 1 WHERE id_pedido = 3")
    for full_refresh in (False, True):
        r = run(settings, ok=False, full_refresh=full_refresh)
        assert r["clientes"].status == FAILED, r["clientes"]          # it was dropped silently: ok, nothing sent, verify different
        assert "NULL in its primary key" in r["clientes"].error and "id_cliente (1 row)" in r["clientes"].error
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".clientes').fetchone() == (10,)   # what was loaded is kept
    lake(settings, "DELETE FROM clientes WHERE id_cliente IS NULL")
    run(settings)
    assert equal(settings)


def test_a_metadata_names_a_table_as_duckdb_would_ignoring_case_or_with_a_dot_in_its_name(settings, pg):
    key = json.dumps({"id": {"data_type": "INTEGER", "primary_key": True, "foreign_key": None}})
    child = json.dumps({"id": {"data_type": "INTEGER", "primary_key": True, "foreign_key": None},
                        "cliente": {"data_type": "INTEGER", "primary_key": False, "foreign_key": {"table": "CLIENTES", "column": "id"}}})
    lake(settings, "CREATE TABLE clientes (id INTEGER, nome VARCHAR)", "INSERT INTO clientes VALUES (1, 'a')",
         'CREATE TABLE "vendas.2024" (id INTEGER, cliente INTEGER)', 'INSERT INTO "vendas.2024" VALUES (1, 1)',
         "CREATE TABLE table_metadata (table_name VARCHAR PRIMARY KEY, schema_json JSON)",
         f"INSERT INTO table_metadata VALUES ('Clientes', '{key}'), ('vendas.2024', '{child}')")
    r = run(settings)     # both failed: "has no primary key", the key declared right there
    assert counts(r["clientes"]) == (1, 0, 0) and counts(r["vendas.2024"]) == (1, 0, 0)
    fks = pg.execute("SELECT confrelid::regclass::text FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                     "WHERE n.nspname = %s AND contype = 'f'", [settings.db_schema]).fetchall()
    assert [f[0].split(".")[-1] for f in fks] == ["clientes"]


def test_5_bootstrap_writes_the_original_form(settings):
    bootstrap(settings.duckdb_path, scale=0.01)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        rows = dict(con.execute("SELECT table_name, schema_json FROM table_metadata").fetchall())
        kinds = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'table_metadata'").fetchall())
    finally:
        con.close()
    assert kinds["schema_json"] == "JSON"
    pedidos = json.loads(rows["pedidos"])
    assert pedidos["id_pedido"] == {"data_type": "BIGINT", "primary_key": True, "foreign_key": None}
    assert pedidos["id_cliente"]["foreign_key"] == {"table": "clientes", "column": "id_cliente"}
    assert all(set(v) == {"data_type", "primary_key", "foreign_key"} for m in rows.values() for v in json.loads(m).values())


# --- (b) a new parent at the watermark's instant with a smaller key, and its child ------------------

def test_b_a_parent_at_the_watermark_with_a_smaller_key_arrives_before_its_child(settings):
    lake(settings,
         "CREATE TABLE pais (id INTEGER PRIMARY KEY, nome VARCHAR, updated_at TIMESTAMP)",
         "CREATE TABLE filhos (id INTEGER PRIMARY KEY, pai INTEGER REFERENCES pais (id), updated_at TIMESTAMP)",
         f"INSERT INTO pais SELECT i, 'p' || i, {T0} FROM range(5, 10) r(i)",
         f"INSERT INTO filhos SELECT i, 5 + i % 5, {T0} FROM range(1, 11) r(i)")
    run(settings)
    lake(settings, f"INSERT INTO pais VALUES (1, 'same instant, smaller key', {T0})",
         f"INSERT INTO filhos VALUES (100, 1, {T0} + INTERVAL 1 HOUR)")
    r = run(settings)
    assert counts(r["pais"]) == (1, 0, 0) and counts(r["filhos"]) == (1, 0, 0)
    assert equal(settings)


# --- (c) late inserts and more deletes in one run ------------------------------------------------------

@pytest.mark.routes("pooler")
def test_c_late_inserts_with_more_deletes_are_not_lost(settings, pg):
    from nwlib.status import IN_SYNC, status

    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
         f"INSERT INTO t SELECT i, 'v' || i, {T0} + to_seconds(i) FROM range(1, 21) r(i)")
    run(settings)
    lake(settings, "INSERT INTO t VALUES (100, 'late', TIMESTAMP '2020-01-01'), (101, 'late too', NULL)",
         "DELETE FROM t WHERE id IN (3, 4, 5)")
    assert counts(run(settings)["t"]) == (2, 0, 3)
    assert equal(settings)
    assert [s.sync for s in status(settings).tables] == [IN_SYNC]
    n = pg.execute(f'SELECT linhas FROM "{settings.db_schema}".nw_estado WHERE tabela_nome = %s', ["t"]).fetchone()[0]
    assert n == 19                                   # nw_estado's count is the destination's true count
    assert counts(run(settings)["t"]) == (0, 0, 0)


# --- (d) the lake rebuilt from scratch, older timestamps ----------------------------------------------

def test_d_a_lake_rebuilt_at_another_scale_syncs_without_a_full_refresh(settings):
    bootstrap(settings.duckdb_path, scale=0.2, seed=42)
    run(settings)
    bootstrap(settings.duckdb_path, scale=0.1, seed=42)        # as re-running bootstrap.ipynb does
    r = run(settings)
    assert all(t.status == OK for t in r.values())
    assert r["clientes"].deleted == 100 and r["pedidos"].deleted == 1000
    assert equal(settings)
    assert all(counts(t) == (0, 0, 0) for t in run(settings).values())


# --- (e) --tables naming parents but not their children --------------------------------------------------

@pytest.mark.routes("pooler")
def test_e_a_partial_full_refresh_holds_back_deletes_a_child_still_references(settings, pg):
    bootstrap(settings.duckdb_path, scale=0.1, seed=42)
    run(settings)
    mutate(settings.duckdb_path, 0.05, seed=3)                  # deletes orders with their items and payments
    r = run(settings, tables=["pedidos", "clientes"], full_refresh=True)
    assert r["pedidos"].status == OK and r["pedidos"].deleted == 0
    assert any("held back" in n and "itens_pedido" in n for n in r["pedidos"].notes)
    assert equal(settings, ["clientes"])
    row = [x for x in ledger(pg, settings) if x[1] == "pedidos"][-1]
    assert row[2] == OK and "held back" in row[7]
    r = run(settings)                                           # the whole lake: children first, then the held-back parents
    assert r["pedidos"].deleted > 0 and r["itens_pedido"].deleted > 0
    assert equal(settings)


# --- (f) and item 6: a keyless table stops only itself ---------------------------------------------------

def test_f_a_table_without_a_key_fails_alone(settings, pg):
    lake(settings, "CREATE TABLE bom (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO bom VALUES (1, 'a'), (2, 'b')",
         "CREATE TABLE sem_chave (v VARCHAR)", "INSERT INTO sem_chave VALUES ('x')")
    report = sync(settings, show_progress=False)
    r = {t.table: t for t in report.tables}
    assert r["bom"].status == OK and r["bom"].inserted == 2
    assert r["sem_chave"].status == FAILED and "has no primary key" in r["sem_chave"].error and "\n" not in r["sem_chave"].error
    rows = {x[1]: x for x in ledger(pg, settings, report.run_id)}
    assert rows["sem_chave"][2] == FAILED and "APPEND_ONLY_TABLES" in rows["sem_chave"][3]
    assert equal(settings, ["bom"])


# --- (g) and item 7: columns dropped or renamed, the schema-change policy ----------------------------------

def test_g_a_dropped_and_a_renamed_column_keep_scheduled_runs_going(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR, b INTEGER, c VARCHAR)",
         "INSERT INTO t SELECT i, 'a' || i, i, 'c' || i FROM range(1, 6) r(i)",
         "CREATE TABLE u (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO u VALUES (1, 'x')")
    run(settings)
    lake(settings, "ALTER TABLE t DROP COLUMN b", "ALTER TABLE t RENAME COLUMN c TO c2", "INSERT INTO t VALUES (9, 'new', 'c9')")
    r = run(settings)["t"]
    assert r.status == OK and counts(r) == (1, 5, 0)            # every row gets c2
    assert any("no longer in the lake: kept" in n for n in r.schema_changes) and any("added column c2" in n for n in r.schema_changes)
    kept = pg.execute(f'SELECT id, b, c, c2 FROM "{settings.db_schema}".t ORDER BY id').fetchall()
    assert kept[0] == (1, 1, "c1", "c1") and kept[-1] == (9, None, None, "c9")   # old values kept, new rows leave them empty
    assert equal(settings)
    assert counts(run(settings)["t"]) == (0, 0, 0)


@pytest.mark.parametrize("before, values, after", [
    ("INTEGER", "(1, 150), (2, 1999)", "CAST(preco / 100 AS DECIMAL(10,2))"),        # cents become units: 150 and 1.50 hash alike
    ("DECIMAL(10,2)", "(1, 1.50), (2, 19.99)", "CAST(preco / 100 AS DECIMAL(12,4))"),  # a percent becomes a fraction: 1.50 and 0.0150 too
])
def test_g_a_retyped_column_whose_values_hash_alike_is_sent_again(settings, pg, before, values, after):
    lake(settings, f"CREATE TABLE precos (id INTEGER PRIMARY KEY, preco {before})", f"INSERT INTO precos VALUES {values}")
    run(settings)
    lake(settings, f"CREATE TABLE p2 AS SELECT id, {after} AS preco FROM precos", "DROP TABLE precos",
         "ALTER TABLE p2 RENAME TO precos", "ALTER TABLE precos ADD PRIMARY KEY (id)")
    assert counts(run(settings)["precos"]) == (0, 2, 0)
    assert equal(settings)
    assert counts(run(settings)["precos"]) == (0, 0, 0)


def test_g_a_label_added_to_an_enum_changes_no_row(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, e ENUM('a', 'b'))", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    run(settings)
    lake(settings, "ALTER TABLE t ALTER e TYPE ENUM('a', 'b', 'c')", "INSERT INTO t VALUES (3, 'c')")
    assert counts(run(settings)["t"]) == (1, 0, 0)      # its values travel as text: the same rows, the same fingerprints
    assert equal(settings)


def test_7_freeze_stops_only_that_table_and_discard_ignores_new_columns(make_settings, pg):
    settings = make_settings()
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR)", "INSERT INTO t VALUES (1, 'a')",
         "CREATE TABLE u (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO u VALUES (1, 'x')")
    run(settings)
    lake(settings, "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 7", "UPDATE u SET v = 'y'")
    frozen = run(make_settings(SCHEMA_CHANGES="evolve,t=freeze"), ok=False)
    assert frozen["t"].status == FAILED and "SCHEMA_CHANGES=freeze" in frozen["t"].error and "extra" in frozen["t"].error
    assert frozen["u"].status == OK and frozen["u"].updated == 1
    discarded = run(make_settings(SCHEMA_CHANGES="discard"))
    assert discarded["t"].status == OK and counts(discarded["t"]) == (0, 0, 0)
    cols = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 't'",
                                     [settings.db_schema]).fetchall()]
    assert "extra" not in cols
    evolved = run(make_settings(SCHEMA_CHANGES="evolve"))
    assert counts(evolved["t"]) == (0, 1, 0) and equal(settings)


def test_7_under_discard_verify_and_status_compare_what_was_sent(make_settings, pg):
    from nwlib.status import status

    settings = make_settings(SCHEMA_CHANGES="discard")
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER)", "INSERT INTO t VALUES (1, 1), (2, 2)")
    run(settings)
    lake(settings, "ALTER TABLE t ADD COLUMN x VARCHAR DEFAULT 'new'", "UPDATE t SET a = 5 WHERE id = 1")
    assert counts(run(settings)["t"]) == (0, 1, 0)
    assert equal(settings)              # verify stopped: column "x" does not exist (S3/Delta: every row different)
    assert [t.sync for t in status(settings).tables] == ["in sync"]      # "differs", on every run
    pg.execute(f'UPDATE "{settings.db_schema}".t SET a = 9 WHERE id = 2')
    assert not equal(settings)          # and still sees a difference in what was sent


def test_7_discard_leaves_the_local_copy_with_what_was_sent(make_settings, pg):
    """Under SCHEMA_CHANGES=discard, a table sent whole (most of a large table changed) leaves the local copy
    holding the fingerprints the destination holds (of the columns sent, not the lake's new one), so the next run
    does not take every row for changed and send it again."""
    settings = make_settings()
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR)", "INSERT INTO t SELECT i, 'a' || i FROM range(120000) r(i)")
    run(settings)
    lake(settings, "ALTER TABLE t ADD COLUMN extra INTEGER DEFAULT 7", "UPDATE t SET a = a || '!'")
    assert counts(run(make_settings(SCHEMA_CHANGES="discard"))["t"]) == (0, 120000, 0)
    (copy,) = (settings.destination_path / ".nw").glob("holdings-*.duckdb")
    con = duckdb.connect(str(copy), read_only=True)
    held = dict(con.execute('SELECT id, nw_fingerprint FROM "t"').fetchall())
    con.close()
    dest = dict(pg.execute(f'SELECT id, nw_fingerprint FROM "{settings.db_schema}".t').fetchall())
    assert held == dest


def test_7_a_type_that_no_longer_fits_gets_a_type_holding_both(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, n DECIMAL(10,2), s VARCHAR)", "INSERT INTO t VALUES (1, 12.34, '5')")
    run(settings)
    lake(settings, "ALTER TABLE t ALTER COLUMN n TYPE DECIMAL(10,4)", "UPDATE t SET n = 1.2345",
         "ALTER TABLE t ALTER COLUMN s TYPE INTEGER")
    r = run(settings)["t"]
    assert r.status == OK and counts(r) == (0, 1, 0)
    types = dict(pg.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = 't'",
                            [settings.db_schema]).fetchall())
    assert types["n"] == "numeric" and types["s"] == "text"
    assert equal(settings)


# --- item 8: values that do not arrive exactly ---------------------------------------------------------

@pytest.mark.parametrize("column, value, expected", [
    ("STRUCT(x DOUBLE)", "{'x': 'nan'::DOUBLE}", "NaN or Infinity"),
    ("JSON", """'{"a": "\\u0000"}'""", "\\u0000"),
    ("JSON", """'{"a": 1, "a": 2}'""", "repeat a key"),
])
def test_8_a_value_jsonb_cannot_hold_is_refused_naming_table_and_column(settings, pg, column, value, expected):
    lake(settings, f"CREATE TABLE t (id INTEGER PRIMARY KEY, j {column})", f"INSERT INTO t VALUES (1, {value})",
         "CREATE TABLE ok (id INTEGER PRIMARY KEY)", "INSERT INTO ok VALUES (1)")
    r = run(settings, ok=False)
    assert r["ok"].status == OK
    assert r["t"].status == FAILED and expected in r["t"].error and "'t' column 'j'" in r["t"].error
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".t').fetchone()[0] == 0    # nothing of it written


@pytest.mark.parametrize("column, value", [
    ("TIMESTAMP[]", "['infinity'::TIMESTAMP]"),       # was stored as 294247-01-10 04:00:54.775807, status ok
    ("TIMESTAMP[]", "[NULL, '-infinity'::TIMESTAMP]"),   # failed with pgpq's "Underflow", naming no column
    ("DATE[]", "['infinity'::DATE]"),                 # failed with "date out of range", naming no column
    ("TIMESTAMPTZ[]", "['infinity'::TIMESTAMPTZ]"),
])
def test_8_an_infinite_date_inside_an_array_is_refused_naming_table_and_column(settings, pg, column, value):
    lake(settings, f"CREATE TABLE t (id INTEGER PRIMARY KEY, a {column})", f"INSERT INTO t VALUES (1, {value}), (2, [])",
         "CREATE TABLE ok (id INTEGER PRIMARY KEY)", "INSERT INTO ok VALUES (1)")
    r = run(settings, ok=False)
    assert r["ok"].status == OK
    assert r["t"].status == FAILED and "'t' column 'a' holds an infinite date/timestamp" in r["t"].error, r["t"].error
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".t').fetchone()[0] == 0    # nothing of it written


def test_8_an_array_of_zoned_timestamps_arrives_exactly(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, a TIMESTAMPTZ[])",
         "INSERT INTO t VALUES (1, [TIMESTAMPTZ '2024-06-01 12:00:00.123456+00', NULL, TIMESTAMPTZ '1999-12-31 23:00:00-03']), (2, [])")
    run(settings)       # PostgreSQL refused the load: binary data has array element type 1114 instead of 1184
    pg.execute("SET TimeZone = 'Asia/Kolkata'")
    assert pg.execute(f'SELECT a[1]::text FROM "{settings.db_schema}".t WHERE id = 1').fetchone() == ("2024-06-01 17:30:00.123456+05:30",)
    assert equal(settings)
    lake(settings, "UPDATE t SET a = list_append(a, TIMESTAMPTZ '2000-01-01 00:00:00+00') WHERE id = 2",
         "INSERT INTO t VALUES (3, [TIMESTAMPTZ '0044-03-15 10:00:00+00' - INTERVAL 100 YEAR, TIMESTAMPTZ '0001-01-01 00:00:00+00' - INTERVAL 1 DAY])")
    assert counts(run(settings)["t"]) == (1, 1, 0)
    pg.execute("SET TimeZone = 'UTC'")
    assert pg.execute(f'SELECT a::text[] FROM "{settings.db_schema}".t WHERE id = 3').fetchone() == (
        ["0057-03-15 10:00:00+00 BC", "0001-12-31 00:00:00+00 BC"],)      # years before 1, as PostgreSQL writes them


def test_8_a_list_that_becomes_empty_or_null_is_a_change(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, tags VARCHAR[], n INTEGER[])",
         "INSERT INTO t VALUES (1, NULL, []), (2, [], NULL), (3, ['a'], [1])")
    run(settings)
    lake(settings, "UPDATE t SET tags = [] WHERE id = 1", "UPDATE t SET tags = NULL, n = [] WHERE id = 2")
    assert counts(run(settings)["t"]) == (0, 2, 0)      # DuckDB hashes a NULL list and an empty one alike: 0 sent
    assert pg.execute(f'SELECT tags, n FROM "{settings.db_schema}".t ORDER BY id').fetchall()[:2] == [([], []), (None, [])]
    assert equal(settings)


def test_8_map_key_order_is_the_same_value(settings):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, m MAP(VARCHAR, INTEGER))",
         "INSERT INTO t VALUES (1, MAP {'b': 2, 'a': 1, 'zz': 3}), (2, MAP {'x': 1})")
    run(settings)
    assert equal(settings)
    lake(settings, "UPDATE t SET m = MAP {'zz': 3, 'a': 1, 'b': 2} WHERE id = 1")
    assert counts(run(settings)["t"]) == (0, 0, 0)
    assert equal(settings)


def test_8_timestamp_ns_keys_that_collide_at_microseconds_are_refused(settings, pg):
    lake(settings, "CREATE TABLE t (ts TIMESTAMP_NS PRIMARY KEY, v VARCHAR)",
         "INSERT INTO t VALUES ('2024-01-01 00:00:00.000000001', 'a'), ('2024-01-01 00:00:00.000000002', 'b'), "
         "('2024-01-01 00:00:01.000001', 'c')")
    r = run(settings, ok=False)["t"]
    assert r.status == FAILED and "duplicate primary keys" in r.error and "microseconds" in r.error and "2024-01-01" in r.error


# --- item 9: nw verify -------------------------------------------------------------------------------

def test_9_verify_names_missing_keys_sees_a_29th_digit_and_ignores_map_order(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, j JSON)",
         """INSERT INTO t VALUES (1, '{"n": 1.0000000000000000000000000001}'), (2, '{"n": 2}'), (3, '{"n": 3}')""")
    run(settings)
    s = f'"{settings.db_schema}".t'
    pg.execute(f"DELETE FROM {s} WHERE id = 3")
    pg.execute(f"""UPDATE {s} SET j = '{{"n": 1.0000000000000000000000000002}}' WHERE id = 1""")
    check = verify(settings)[0]
    assert (check.missing, check.extra) == (2, 1)
    assert set(check.sample) == {(1,), (3,)}


def test_9_verify_is_exact_on_nested_values_and_arrays_json_cannot_carry(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, s STRUCT(b BLOB, d DECIMAL(38,10), m MAP(VARCHAR, INTEGER)), "
         "lm MAP(VARCHAR, INTEGER)[], ld DECIMAL(38,10)[], bits BIT[])",
         "INSERT INTO t VALUES (1, {'b': '\\x00\\xFF'::BLOB, 'd': 1234567890123456789012345678.0123456789, 'm': MAP {'b': 1, 'a': 2}}, "
         "[MAP {'z': 1, 'y': 2}], [9999999999999999999999999999.9999999999, NULL], ['0101'::BIT]), (2, NULL, [], [], [])")
    run(settings)
    assert equal(settings)     # each of these read as different forever, or stopped verify with a conversion error
    s = f'"{settings.db_schema}".t'
    pg.execute(f"UPDATE {s} SET s = jsonb_set(s, '{{d}}', '1234567890123456789012345678.0123456788') WHERE id = 1")
    pg.execute(f"UPDATE {s} SET ld = '{{1}}', bits = '{{1}}' WHERE id = 2")
    check = verify(settings)[0]
    assert (check.missing, check.extra) == (2, 2) and set(check.sample) == {(1,), (2,)}


def test_9_verify_tells_a_number_from_the_same_digits_as_text(settings, pg):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, j JSON, s STRUCT(a VARCHAR))",
         """INSERT INTO t VALUES (1, '{"a": 1, "z": -0.0}', {'a': '1'}), (2, '{"a": 2}', {'a': '2'})""")
    run(settings)
    assert equal(settings)          # -0.0 is 0 to jsonb
    s = f'"{settings.db_schema}".t'
    pg.execute(f"""UPDATE {s} SET j = '{{"a": "1", "z": 0}}' WHERE id = 1""")
    pg.execute(f"""UPDATE {s} SET s = '{{"a": 2}}' WHERE id = 2""")
    check = verify(settings)[0]     # both read as equal: the canonical form wrote numbers as text
    assert (check.missing, check.extra) == (2, 2) and set(check.sample) == {(1,), (2,)}


def test_9_verify_has_memory_for_a_wide_table_under_auto(settings):
    lake(settings, "CREATE TABLE wide (id INTEGER PRIMARY KEY, " + ", ".join(f"c{i} INTEGER" for i in range(1200)) + ")",
         "INSERT INTO wide SELECT i, " + ", ".join(f"i + {k}" for k in range(1200)) + " FROM range(300) r(i)")
    run(settings)
    assert equal(settings)      # DUCKDB_MEMORY_LIMIT=auto gave it 160 MB: "DuckDB needed more memory"


# --- item 10: DuckDB schemas other than main ---------------------------------------------------------

def test_10_tables_of_other_lake_schemas_are_synced_under_schema__table(make_settings, pg):
    settings = make_settings()
    lake(settings, "CREATE SCHEMA marts", "CREATE TABLE marts.ltv (id INTEGER PRIMARY KEY, v DOUBLE)",
         "INSERT INTO marts.ltv VALUES (1, 1.5)", "CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    r = run(settings)
    assert set(r) == {"t", "marts__ltv"} and r["marts__ltv"].inserted == 1
    assert pg.execute(f'SELECT v FROM "{settings.db_schema}".marts__ltv').fetchone() == (1.5,)
    assert equal(settings)
    only_main = run(make_settings(LAKE_SCHEMAS="main"))
    assert set(only_main) == {"t"}


def test_10_two_lake_tables_published_under_one_name_stop_that_name_only(settings, pg):
    lake(settings, "CREATE SCHEMA s", "CREATE TABLE s.t (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO s.t VALUES (1, 's.t')",
         "CREATE TABLE s__t (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO s__t VALUES (1, 'main.s__t'), (2, 'main.s__t')",
         "CREATE TABLE u (id INTEGER PRIMARY KEY)", "INSERT INTO u VALUES (1)")
    r = run(settings, ok=False)
    assert r["u"].status == OK
    assert r["s__t"].status == FAILED and "main.s__t and s.t are both published as 's__t'" in r["s__t"].error   # one was dropped silently
    assert pg.execute("SELECT to_regclass(%s)", [f'"{settings.db_schema}".s__t']).fetchone() == (None,)


# --- item 2: recoverable from the destination; the fingerprint function recorded ----------------------------

@pytest.mark.routes("pooler", "pg15")
def test_2_without_the_local_state_folder_a_sync_sends_only_what_changed(settings, pg):
    import shutil

    bootstrap(settings.duckdb_path, scale=0.1, seed=5)
    run(settings)
    changed = mutate(settings.duckdb_path, 0.05, seed=9)
    shutil.rmtree(settings.destination_path / ".nw")               # a fresh machine: only the lake and the destination
    report = sync(settings, show_progress=False)
    assert report.ok
    rows = {x[1]: x for x in ledger(pg, settings, report.run_id)}
    for table, c in changed.items():
        assert tuple(rows[table][4:7]) == (c["inserted"], c["updated"], c["deleted"]), (table, rows[table], c)
    assert equal(settings)


def test_2_a_new_fingerprint_function_compares_every_row_once_and_says_so(settings, pg, monkeypatch):
    from nwlib import fingerprint

    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO t SELECT i, 'v' || i FROM range(1, 21) r(i)")
    run(settings)
    monkeypatch.setattr(fingerprint, "_FORMAT", "nw-test-next")
    fingerprint.version.cache_clear()
    try:
        r = run(settings)["t"]
        assert counts(r) == (0, 20, 0) and any("fingerprint function changed" in n for n in r.notes)
        assert "fingerprint function changed" in ledger(pg, settings)[-1][7]
        assert counts(run(settings)["t"]) == (0, 0, 0)
        assert equal(settings)
    finally:
        fingerprint.version.cache_clear()
