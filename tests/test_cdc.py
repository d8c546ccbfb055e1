"""Exact CDC against a real PostgreSQL: cursor ties, late rows, updates, deletes, keys, modes, cycles, selection.

Keyed tables are compared by fingerprint (the contract in nwlib/cdc.py), so
every case the old timestamp cursor could not see on its own — a late row at
the watermark's instant with a smaller key, an update stamped in the past, a
late insert balanced by a delete — is exact with no ``CDC_LOOKBACK_SECONDS``.
Every test ends with ``verify`` equal.
"""
from __future__ import annotations

import duckdb
import pytest

from nwlib.engine import sync
from nwlib.errors import SourceModelError
from nwlib.verification import verify

from lakesql import lake_sql as lake

T0 = "TIMESTAMP '2024-05-01 10:00:00'"




def run(settings, **kw):
    report = sync(settings, show_progress=False, **kw)
    assert report.ok, report.failed
    return {t.table: t for t in report.tables}


def counts(r):
    return (r.inserted, r.updated, r.deleted)


def equal(settings) -> bool:
    return all(c.ok for c in verify(settings))


def dest(pg, settings, table, order="1"):
    """The destination's rows without nwlib's fingerprint column."""
    cols = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                                     "AND column_name <> 'nw_fingerprint' ORDER BY ordinal_position", [settings.db_schema, table]).fetchall()]
    return pg.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{settings.db_schema}"."{table}" ORDER BY {order}').fetchall()


def simple_table(settings, n=5, ts=T0):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
         f"INSERT INTO t SELECT i, 'v' || i, {ts} FROM range(1, {n + 1}) r(i)")


# --- the cursor -----------------------------------------------------------------------------

def test_rows_sharing_the_watermark_timestamp_with_a_larger_key_are_caught(settings):
    simple_table(settings)                                  # five rows, one shared timestamp
    first = run(settings)["t"]
    assert first.inserted == 5 and first.watermark_after.value == "2024-05-01 10:00:00" and first.watermark_after.key == ("5",)
    lake(settings, f"INSERT INTO t VALUES (6, 'same instant, later key', {T0})")
    assert counts(run(settings)["t"]) == (1, 0, 0)           # after the cursor (T0, 5): read once
    assert counts(run(settings)["t"]) == (0, 0, 0)           # and not again
    assert equal(settings)


def test_smaller_key_at_the_watermark_is_caught_without_a_lookback(settings):
    """A row written later with the watermark's timestamp and a smaller key — even when a delete in the
    same run hides the change of count — is compared, not trusted to the cursor."""
    simple_table(settings)
    run(settings)
    lake(settings, f"INSERT INTO t VALUES (0, 'same instant, smaller key', {T0})")
    assert counts(run(settings)["t"]) == (1, 0, 0)
    lake(settings, f"INSERT INTO t VALUES (-1, 'hidden by the delete', {T0})", "DELETE FROM t WHERE id = 3")
    assert counts(run(settings)["t"]) == (1, 0, 1)
    assert equal(settings)


def test_late_rows_with_older_timestamps_arrive_without_a_lookback(settings):
    simple_table(settings, 20, f"{T0} + to_seconds(i * 60)")  # one row a minute
    run(settings)
    # written late: an update and an insert stamped 30 minutes before the watermark, a delete hiding the count
    lake(settings, f"UPDATE t SET v = 'late update', updated_at = {T0} WHERE id = 4",
         f"INSERT INTO t VALUES (100, 'late insert', {T0})", "DELETE FROM t WHERE id = 1")
    assert counts(run(settings)["t"]) == (1, 1, 1)
    assert equal(settings)
    assert counts(run(settings)["t"]) == (0, 0, 0)
    lake(settings, "UPDATE t SET v = 'changed, stamp untouched' WHERE id = 5")
    assert counts(run(settings)["t"]) == (0, 1, 0)
    assert equal(settings)


@pytest.mark.routes("pooler", "pg15")
def test_updates_are_applied_with_exact_counts(settings, pg):
    simple_table(settings, 10)
    run(settings)
    lake(settings, f"UPDATE t SET v = v || '!', updated_at = {T0} + INTERVAL 1 HOUR WHERE id IN (2, 4, 6)",
         f"UPDATE t SET updated_at = {T0} + INTERVAL 2 HOUR WHERE id = 8",           # only the stamp moves: still a change
         f"INSERT INTO t VALUES (11, 'new', {T0} + INTERVAL 1 HOUR)")
    assert counts(run(settings)["t"]) == (1, 4, 0)
    assert [r[1] for r in dest(pg, settings, "t")[:4]] == ["v1", "v2!", "v3", "v4!"]
    assert counts(run(settings, full_refresh=True)["t"]) == (0, 0, 0)   # re-sending identical rows writes nothing
    assert equal(settings)


def test_a_table_empty_at_its_first_sync_gets_its_first_rows_later(settings, pg):
    """Found by the property test: an empty destination table (and an empty local copy) meant an empty change set."""
    simple_table(settings, 0)
    assert counts(run(settings)["t"]) == (0, 0, 0)
    lake(settings, f"INSERT INTO t VALUES (1, 'first', {T0})", f"INSERT INTO t VALUES (2, 'second', {T0})")
    assert counts(run(settings)["t"]) == (2, 0, 0)
    assert [r[1] for r in dest(pg, settings, "t")] == ["first", "second"]
    assert equal(settings)


def test_null_cursor_values_sync_and_their_updates_arrive(settings):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
         f"INSERT INTO t VALUES (1, 'a', {T0}), (2, 'b', NULL)")
    assert counts(run(settings)["t"]) == (2, 0, 0)
    lake(settings, "UPDATE t SET v = 'B' WHERE id = 2", "INSERT INTO t VALUES (3, 'c', NULL)")
    assert counts(run(settings)["t"]) == (1, 1, 0)
    assert equal(settings)


def test_a_future_timestamp_does_not_hide_later_rows(settings):
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMPTZ)",
         "INSERT INTO t VALUES (1, 'now', TIMESTAMPTZ '2024-01-01 00:00:00+00'), (2, 'future', TIMESTAMPTZ '9999-12-31 00:00:00+00')")
    first = run(settings)["t"]
    assert first.watermark_after.value.startswith("2024-01-01")  # capped at the run's time
    lake(settings, "INSERT INTO t VALUES (3, 'later', TIMESTAMPTZ '2024-02-01 00:00:00+00')",
         "UPDATE t SET v = 'changed', updated_at = TIMESTAMPTZ '2024-02-02 00:00:00+00' WHERE id = 1")
    assert counts(run(settings)["t"]) == (1, 1, 0)
    assert equal(settings)


def test_integer_cursor_version_column(make_settings):
    settings = make_settings(INCREMENTAL_COLUMNS="t=versao")
    lake(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, versao BIGINT)",
         "INSERT INTO t SELECT i, 'x', 1 FROM range(1, 6) r(i)")
    assert run(settings)["t"].watermark_after.value == "1"
    lake(settings, "UPDATE t SET v = 'y', versao = 2 WHERE id = 5", "INSERT INTO t VALUES (6, 'z', 1)")
    assert counts(run(settings)["t"]) == (1, 1, 0)           # (1, 6) is after the cursor (1, 5)
    assert equal(settings)


# --- deletes, keys and foreign keys ------------------------------------------------------------

FAMILY = [
    "CREATE TABLE pais (id INTEGER PRIMARY KEY, nome VARCHAR, updated_at TIMESTAMP)",
    "CREATE TABLE filho (id INTEGER PRIMARY KEY, pai INTEGER REFERENCES pais (id), nome VARCHAR, updated_at TIMESTAMP)",
    "CREATE TABLE neto (id INTEGER PRIMARY KEY, filho INTEGER REFERENCES filho (id), updated_at TIMESTAMP)",
    f"INSERT INTO pais SELECT i, 'p' || i, {T0} FROM range(1, 11) r(i)",
    f"INSERT INTO filho SELECT i, 1 + i % 10, 'f' || i, {T0} FROM range(1, 31) r(i)",
    f"INSERT INTO neto SELECT i, 1 + i % 30, {T0} FROM range(1, 61) r(i)",
]


def fk_constraints(pg, settings):
    return pg.execute(
        "SELECT cl.relname, con.condeferrable, array_length(con.conkey, 1) FROM pg_constraint con "
        "JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
        "WHERE con.contype = 'f' AND n.nspname = %s ORDER BY 1", [settings.db_schema]).fetchall()


@pytest.mark.routes("pooler", "pg15")
def test_deletes_are_reconciled_children_first_with_the_fks_in_place(settings, pg):
    lake(settings, *FAMILY)
    r = run(settings)
    assert list(r) == ["pais", "filho", "neto"]
    assert fk_constraints(pg, settings) == [("filho", True, 1), ("neto", True, 1)]
    # delete parent 3 with its whole subtree (children first in the lake too), and a few leaves
    lake(settings, "DELETE FROM neto WHERE filho IN (SELECT id FROM filho WHERE pai = 3) OR id IN (1, 2)",
         "DELETE FROM filho WHERE pai = 3", "DELETE FROM pais WHERE id = 3")
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    expected = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("pais", "filho", "neto")}
    con.close()
    r = run(settings)
    assert (r["pais"].deleted, r["filho"].deleted, r["neto"].deleted) == (1, 30 - expected["filho"], 60 - expected["neto"])
    assert r["neto"].deleted > 2
    for t, n in expected.items():
        assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".{t}').fetchone()[0] == n
    # children were deleted before their parents: each delete committed in its own transaction, in that order
    ends = dict(pg.execute(f'SELECT tabela_nome, finalizado_em FROM "{settings.db_schema}".controle_cargas '
                           "WHERE run_id = (SELECT run_id FROM " f'"{settings.db_schema}".controle_cargas ORDER BY id DESC LIMIT 1)').fetchall())
    assert ends["neto"] < ends["filho"] < ends["pais"]
    assert fk_constraints(pg, settings) == [("filho", True, 1), ("neto", True, 1)]
    assert equal(settings)


@pytest.mark.routes("pooler", "pg15")
def test_composite_primary_and_foreign_keys(settings, pg):
    lake(settings,
         "CREATE TABLE lojas (pais VARCHAR, codigo INTEGER, nome VARCHAR, updated_at TIMESTAMP, PRIMARY KEY (pais, codigo))",
         "CREATE TABLE vendas (pais VARCHAR, loja INTEGER, n INTEGER, valor DECIMAL(10,2), updated_at TIMESTAMP, PRIMARY KEY (pais, loja, n))",
         "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
         "INSERT INTO fk_metadata VALUES ('vendas', 'pais', 'lojas', 'pais'), ('vendas', 'loja', 'lojas', 'codigo')",
         f"INSERT INTO lojas SELECT p, c, p || c, {T0} FROM (VALUES ('BR'), ('PT')) a(p), range(1, 4) b(c)",
         f"INSERT INTO vendas SELECT p, c, n, n * 1.5, {T0} FROM (VALUES ('BR'), ('PT')) a(p), range(1, 4) b(c), range(1, 5) d(n)")
    r = run(settings)
    assert (r["lojas"].inserted, r["vendas"].inserted) == (6, 24)
    assert fk_constraints(pg, settings) == [("vendas", True, 2)]
    lake(settings, f"UPDATE vendas SET valor = 0, updated_at = {T0} + INTERVAL 1 DAY WHERE pais = 'PT' AND loja = 2",
         f"INSERT INTO vendas VALUES ('BR', 1, 99, 1, {T0} + INTERVAL 1 DAY)",
         "DELETE FROM vendas WHERE pais = 'BR' AND loja = 3", "DELETE FROM lojas WHERE pais = 'BR' AND codigo = 3")
    r = run(settings)
    assert counts(r["vendas"]) == (1, 4, 4) and counts(r["lojas"]) == (0, 0, 1)
    assert equal(settings)


def test_key_columns_named_like_nwlib_internal_names_sync_exactly(settings, pg):
    """Changed rows are found by a semi-join on their keys: names that the join itself uses must not confuse it."""
    lake(settings,
         "CREATE TABLE nw_lake (nw_k0 INTEGER, nw_k1 VARCHAR, nw_lake VARCHAR, k0 INTEGER, updated_at TIMESTAMP, PRIMARY KEY (nw_k0, nw_k1))",
         f"INSERT INTO nw_lake SELECT i, 'x' || (i % 3), 'v' || i, i, {T0} FROM range(1, 21) r(i)")
    assert run(settings)["nw_lake"].inserted == 20
    lake(settings, "UPDATE nw_lake SET nw_lake = 'changed', k0 = -k0 WHERE nw_k0 IN (3, 4)",
         "INSERT INTO nw_lake VALUES (99, 'x0', 'new', 0, NULL)", "DELETE FROM nw_lake WHERE nw_k0 = 7")
    assert counts(run(settings)["nw_lake"]) == (1, 2, 1)
    rows = dest(pg, settings, "nw_lake", "1, 2")
    assert [(r[0], r[2], r[3]) for r in rows if r[0] in (3, 4, 7, 99)] == [(3, "changed", -3), (4, "changed", -4), (99, "new", 0)]
    assert equal(settings)


# --- load modes ---------------------------------------------------------------------------------

def test_full_refresh_repairs_a_destination_edited_by_hand(settings, pg):
    simple_table(settings)
    run(settings)
    pg.execute(f"UPDATE \"{settings.db_schema}\".t SET v = 'edited' WHERE id = 2")
    assert counts(run(settings)["t"]) == (0, 0, 0)           # nothing changed in the lake
    assert not equal(settings)
    r = run(settings, full_refresh=True)["t"]
    assert counts(r) == (0, 1, 0) and r.mode == "merge full"
    assert equal(settings)


def test_append_only_and_full_replace_tables(make_settings, pg):
    settings = make_settings(APPEND_ONLY_TABLES="eventos", FULL_REPLACE_TABLES="cotacoes")
    lake(settings, "CREATE TABLE eventos (quando TIMESTAMP, tipo VARCHAR, updated_at TIMESTAMP)",
         "CREATE TABLE cotacoes (moeda VARCHAR, valor DOUBLE)",
         f"INSERT INTO eventos SELECT {T0}, 'e' || i, {T0} + to_seconds(i) FROM range(10) r(i)",
         "INSERT INTO cotacoes VALUES ('USD', 5.1), ('EUR', 5.5)")
    r = run(settings)
    assert (r["eventos"].mode, r["cotacoes"].mode) == ("append full", "replace full")
    assert counts(r["eventos"]) == (10, 0, 0) and counts(r["cotacoes"]) == (2, 0, 0)
    lake(settings, f"INSERT INTO eventos SELECT {T0}, 'new' || i, {T0} + INTERVAL 1 HOUR + to_seconds(i) FROM range(3) r(i)",
         "DELETE FROM cotacoes WHERE moeda = 'EUR'", "UPDATE cotacoes SET valor = 5.2", "INSERT INTO cotacoes VALUES ('GBP', 6.4)")
    r = run(settings)
    assert counts(r["eventos"]) == (3, 0, 0)                  # only rows past the watermark are appended
    assert counts(r["cotacoes"]) == (2, 0, 0)                 # the whole table replaced
    assert sorted(dest(pg, settings, "cotacoes")) == [("GBP", 6.4), ("USD", 5.2)]
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".eventos').fetchone()[0] == 13
    assert counts(run(settings)["eventos"]) == (0, 0, 0)
    assert equal(settings)


# --- self-reference and cycles ------------------------------------------------------------------

@pytest.mark.routes("pooler", "pg15")
def test_self_referencing_table_loads_and_updates(settings, pg):
    lake(settings,
         "CREATE TABLE employees (id INTEGER PRIMARY KEY, nome VARCHAR, reports_to INTEGER, updated_at TIMESTAMP)",
         "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
         "INSERT INTO fk_metadata VALUES ('employees', 'reports_to', 'employees', 'id')",
         # managers have larger ids than their reports, so a row-by-row load in key order would break the FK
         f"INSERT INTO employees SELECT i, 'e' || i, CASE WHEN i < 50 THEN i + 1 + i % 3 END, {T0} FROM range(1, 51) r(i)",
         "UPDATE employees SET reports_to = 50 WHERE reports_to > 50")
    r = run(settings)["employees"]
    assert r.inserted == 50
    assert fk_constraints(pg, settings) == [("employees", True, 1)]
    # a new boss above the old one, a re-org, and a manager leaving (their reports move first)
    lake(settings, f"INSERT INTO employees VALUES (100, 'new ceo', NULL, {T0} + INTERVAL 1 DAY)",
         f"UPDATE employees SET reports_to = 100, updated_at = {T0} + INTERVAL 1 DAY WHERE id = 50",
         f"UPDATE employees SET reports_to = 100, updated_at = {T0} + INTERVAL 1 DAY WHERE reports_to = 10",
         "DELETE FROM employees WHERE id = 10")
    r = run(settings)["employees"]
    assert r.inserted == 1 and r.deleted == 1 and r.updated >= 2
    assert pg.execute(f'SELECT reports_to FROM "{settings.db_schema}".employees WHERE id = 50').fetchone() == (100,)
    assert equal(settings)


@pytest.mark.routes("pooler", "pg15")
def test_two_table_cycle_loads_in_one_step_and_updates(settings, pg):
    lake(settings,
         "CREATE TABLE departamentos (id INTEGER PRIMARY KEY, nome VARCHAR, gerente INTEGER, updated_at TIMESTAMP)",
         "CREATE TABLE funcionarios (id INTEGER PRIMARY KEY, nome VARCHAR, departamento INTEGER, updated_at TIMESTAMP)",
         "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
         "INSERT INTO fk_metadata VALUES ('departamentos', 'gerente', 'funcionarios', 'id'), ('funcionarios', 'departamento', 'departamentos', 'id')",
         f"INSERT INTO departamentos SELECT i, 'd' || i, i * 10, {T0} FROM range(1, 6) r(i)",
         f"INSERT INTO funcionarios SELECT i, 'f' || i, 1 + i % 5, {T0} FROM range(1, 51) r(i)")
    plan = sync(settings, dry_run=True, show_progress=False)
    assert [t.table for t in plan.tables] == ["departamentos", "funcionarios"]
    r = run(settings)
    assert (r["departamentos"].inserted, r["funcionarios"].inserted) == (5, 50)
    assert fk_constraints(pg, settings) == [("departamentos", True, 1), ("funcionarios", True, 1)]
    # one transaction: both tables' states were written by the same transaction id
    state = pg.execute(f'SELECT tabela_nome, xmin::text FROM "{settings.db_schema}".nw_estado ORDER BY 1').fetchall()
    assert len(state) == 2 and state[0][1] == state[1][1]
    # a new department managed by a new employee who works in it (each row needs the other)
    lake(settings, f"INSERT INTO funcionarios VALUES (51, 'f51', 6, {T0} + INTERVAL 1 DAY)",
         f"INSERT INTO departamentos VALUES (6, 'd6', 51, {T0} + INTERVAL 1 DAY)",
         f"UPDATE departamentos SET gerente = 1, updated_at = {T0} + INTERVAL 1 DAY WHERE id = 1",
         "DELETE FROM funcionarios WHERE id = 49")
    r = run(settings)
    assert counts(r["funcionarios"]) == (1, 0, 1) and counts(r["departamentos"]) == (1, 1, 0)
    assert equal(settings)
    # the department and its manager leave together: neither delete can commit without the other
    lake(settings, "DELETE FROM departamentos WHERE id = 6", "DELETE FROM funcionarios WHERE id = 51")
    r = run(settings)
    assert counts(r["funcionarios"]) == (0, 0, 1) and counts(r["departamentos"]) == (0, 0, 1)
    assert equal(settings)
    # a lake that breaks its own FK (a manager deleted, the department still points at them): found before
    # anything is written, the cycle's step stops with the orphan named, and fixing the lake lets the next run finish
    lake(settings, "DELETE FROM funcionarios WHERE id = 20")
    report = sync(settings, show_progress=False)
    failed = {t.table: t.error for t in report.tables if t.status == "failed"}
    assert set(failed) == {"departamentos", "funcionarios"}
    assert "column gerente" in failed["departamentos"] and "gerente = 20" in failed["departamentos"]
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".funcionarios WHERE id = 20').fetchone() == (1,)
    lake(settings, f"UPDATE departamentos SET gerente = 1, updated_at = {T0} + INTERVAL 2 DAY WHERE id = 2")
    r = run(settings)
    assert counts(r["funcionarios"]) == (0, 0, 1) and counts(r["departamentos"]) == (0, 1, 0)
    assert equal(settings)


# --- dry run and table selection ---------------------------------------------------------------

def test_dry_run_shows_the_order_and_changes_nothing(settings, pg):
    lake(settings, *FAMILY)
    plan = sync(settings, dry_run=True, show_progress=False)
    assert plan.dry_run and [t.table for t in plan.tables] == ["pais", "filho", "neto"]
    assert [t.inserted for t in plan.tables] == [10, 30, 60]       # rows it would send
    assert [t.mode for t in plan.tables] == ["merge full"] * 3
    tables = {r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                       [settings.db_schema]).fetchall()}
    assert not tables                                             # not even the bookkeeping tables or the schema
    assert pg.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [settings.db_schema]).fetchone() is None
    run(settings)
    lake(settings, f"UPDATE neto SET updated_at = {T0} + INTERVAL 1 DAY WHERE id <= 7")
    before = pg.execute(f'SELECT count(*), max(id) FROM "{settings.db_schema}".controle_cargas').fetchone()
    lake(settings, "DELETE FROM neto WHERE id = 60", f"INSERT INTO neto VALUES (61, 1, {T0})")
    plan = sync(settings, dry_run=True, show_progress=False)
    assert [(t.table, t.inserted, t.updated, t.deleted, t.mode) for t in plan.tables] == [
        ("pais", 0, 0, 0, "merge incremental"), ("filho", 0, 0, 0, "merge incremental"), ("neto", 1, 7, 1, "merge incremental")]
    assert pg.execute(f'SELECT count(*), max(id) FROM "{settings.db_schema}".controle_cargas').fetchone() == before
    assert counts(run(settings)["neto"]) == (1, 7, 1)          # the dry run changed nothing


def test_tables_option_syncs_only_those(settings, pg):
    lake(settings, *FAMILY, "CREATE TABLE outra (id INTEGER PRIMARY KEY)", "INSERT INTO outra VALUES (1)")
    r = run(settings, tables=["filho", "pais"])
    assert list(r) == ["pais", "filho"]
    names = {x[0] for x in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                      [settings.db_schema]).fetchall()}
    assert {"pais", "filho"} <= names and not names & {"neto", "outra"}
    assert all(c.ok for c in verify(settings, tables=["pais", "filho"]))
    with pytest.raises(SourceModelError, match="nope"):
        sync(settings, tables=["pais", "nope"], show_progress=False)


@pytest.mark.parametrize("cursor_type, t0, later", [
    ("TIMESTAMPTZ", "TIMESTAMPTZ '2024-05-01 10:00:00-03'", "TIMESTAMPTZ '2024-05-01 13:00:00+00' + INTERVAL 1 SECOND"),
    ("DATE", "DATE '2024-05-01'", "DATE '2024-05-02'"),
    ("TIMESTAMP_MS", "TIMESTAMP_MS '2024-05-01 10:00:00.123'", "TIMESTAMP_MS '2024-05-01 10:00:00.124'"),
])
@pytest.mark.parametrize("key_type, keys", [("VARCHAR", ("b", "c,'\"d", "a")), ("UUID", (
    "'00000000-0000-0000-0000-00000000000b'", "'00000000-0000-0000-0000-00000000000c'", "'00000000-0000-0000-0000-00000000000a'"))])
def test_cursor_ties_and_late_updates_for_other_cursor_and_key_types(make_settings, cursor_type, t0, later, key_type, keys):
    settings = make_settings()
    quote = (lambda k: "'" + k.replace("'", "''") + "'") if key_type == "VARCHAR" else (lambda k: k)
    first, bigger, smaller = (quote(k) for k in keys)
    lake(settings, f"CREATE TABLE t (k {key_type} PRIMARY KEY, v INTEGER, updated_at {cursor_type})",
         f"INSERT INTO t VALUES ({first}, 1, {t0})")
    run(settings)
    lake(settings, f"INSERT INTO t VALUES ({bigger}, 2, {t0})")            # same instant, larger key: after the cursor
    assert counts(run(settings)["t"]) == (1, 0, 0)
    lake(settings, f"UPDATE t SET v = 9 WHERE k = {first}")                # a late update at the cursor's instant, smaller key
    assert counts(run(settings)["t"]) == (0, 1, 0) and equal(settings)
    lake(settings, f"INSERT INTO t VALUES ({smaller}, 3, {later})", f"UPDATE t SET v = 8, updated_at = {later} WHERE k = {bigger}")
    assert counts(run(settings)["t"]) == (1, 1, 0)
    assert equal(settings)


def test_append_only_rows_appended_later_at_the_watermark_value_and_full_refresh(make_settings, pg):
    settings = make_settings(APPEND_ONLY_TABLES="ev")
    lake(settings, "CREATE TABLE ev (o_que VARCHAR, updated_at TIMESTAMP)", f"INSERT INTO ev VALUES ('a', {T0}), ('b', {T0})")
    run(settings)
    # same instant as the watermark: no key to tell them apart, so the destination replaces its rows from that instant on
    lake(settings, f"INSERT INTO ev VALUES ('c', {T0}), ('d', {T0} + INTERVAL 1 SECOND)")
    assert counts(run(settings)["ev"]) == (2, 0, 0)                # net: 4 re-sent, 2 replaced
    assert counts(run(settings)["ev"]) == (0, 0, 0)
    assert equal(settings)
    # a full refresh (or TRUNCATE_BEFORE_LOAD) re-sends the table: it must not double it
    r = run(settings, full_refresh=True)["ev"]
    assert r.mode == "append full" and r.inserted == 4
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".ev').fetchone() == (4,)
    assert pg.execute(f'SELECT linhas FROM "{settings.db_schema}".nw_estado').fetchone() == (4,)
    assert equal(settings)


def test_two_fks_to_the_same_parent_are_both_created(settings, pg):
    lake(settings,
         "CREATE TABLE clientes (id INTEGER PRIMARY KEY, updated_at TIMESTAMP)",
         "CREATE TABLE transferencias (id INTEGER PRIMARY KEY, origem INTEGER, destino INTEGER, updated_at TIMESTAMP)",
         "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
         "INSERT INTO fk_metadata VALUES ('transferencias', 'origem', 'clientes', 'id'), ('transferencias', 'destino', 'clientes', 'id')",
         f"INSERT INTO clientes SELECT i, {T0} FROM range(1, 4) r(i)",
         f"INSERT INTO transferencias VALUES (1, 1, 2, {T0}), (2, 3, 1, {T0})")
    run(settings)
    assert fk_constraints(pg, settings) == [("transferencias", True, 1), ("transferencias", True, 1)]
    assert equal(settings)


# --- the comparison in buckets ----------------------------------------------------------------

def _lake_with_copy(tmp_path, table_sql: str, rows_sql: str, held_sql):
    """A lake file with the table ``t`` (``table_sql``, ``rows_sql``) and a current local copy of what the
    destination holds, filled by ``held_sql(spec)`` (a SELECT of key columns and fingerprint)."""
    from nwlib import fingerprint
    from nwlib.holdings import Holdings
    from nwlib.lake import read_specs
    from nwlib.model import TableState

    con = duckdb.connect(str(tmp_path / "lake.duckdb"))
    con.execute(table_sql)
    con.execute(rows_sql)
    spec = read_specs(con)["t"]
    holdings = Holdings(con, tmp_path / "holdings.duckdb")
    holdings.empty(spec, TableState(revision="r1", fingerprint_version=fingerprint.version(), loaded=True))
    con.execute(f"INSERT INTO {holdings.table(spec)} {held_sql(spec)}")
    return con, spec, holdings


def test_a_comparison_in_passes_finds_what_one_pass_finds(tmp_path):
    """A table larger than one pass is compared bucket by bucket (by a hash of the fingerprint): the rows to send
    and the keys to delete are the same as one pass finds, composite keys, unknown (NULL) fingerprints, new,
    changed, deleted and unchanged rows alike."""
    from nwlib import cdc, fingerprint

    con, spec, holdings = _lake_with_copy(tmp_path, "CREATE TABLE t (a INTEGER, b VARCHAR, v DOUBLE, PRIMARY KEY (a, b))",
                                          "INSERT INTO t SELECT i % 97, 'k' || (i // 97), i * 1.5 FROM range(2000) r(i)",
                                          lambda spec: f"SELECT a, b, {fingerprint.of(spec)} FROM t")
    held = holdings.table(spec)
    con.execute(f"UPDATE {held} SET nw_fingerprint = NULL WHERE a = 5")                 # written by an older nwlib: unknown
    con.execute(f"INSERT INTO {held} VALUES (500, 'gone', 1), (501, 'gone', NULL)")       # keys the lake no longer has
    con.execute("UPDATE t SET v = -v WHERE a % 10 = 3")                                   # changed rows
    con.execute("DELETE FROM t WHERE a = 7")                                              # deleted keys
    con.execute("INSERT INTO t VALUES (1000, 'new', 0), (1001, 'new', NULL)")             # new keys
    n = con.execute("SELECT count(*) FROM t").fetchone()[0]

    def found(bucket_rows):
        up, gone = cdc.compare(con, spec, holdings, False, n, bucket_rows=bucket_rows)
        return (con.execute(f"SELECT * FROM {up} ORDER BY ALL").fetchall(), con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall())

    one_pass = found(10_000)
    assert found(150) == one_pass                 # 14 passes
    sent, deleted = one_pass
    changed = con.execute("SELECT count(*) FROM t WHERE a % 10 = 3 OR a = 5 OR a >= 1000").fetchone()[0]
    assert len(sent) == changed
    assert {(a, b) for a, b, _ in deleted} == {(500, "gone"), (501, "gone")} | {(7, f"k{j}") for j in range(21) if 7 + 97 * j < 2000}

    def refresh_deletes(bucket_rows):             # --full-refresh: every row is sent; deleted keys found in passes
        up, gone = cdc.compare(con, spec, holdings, True, n, bucket_rows=bucket_rows)
        assert up is None
        return con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall()

    assert refresh_deletes(150) == refresh_deletes(10_000) == deleted
    con.close()



@pytest.mark.parametrize("key, ranged", [("BIGINT", True), ("DATE", True), ("TIMESTAMP", True), ("VARCHAR", False),
                                         ("TIMESTAMP_NS", False)])
def test_a_comparison_in_passes_over_key_ranges_finds_what_one_pass_finds(tmp_path, monkeypatch, key, ranged):
    """A single integer, date or timestamp key is split into ranges (other keys, and one sent in another form,
    into hash buckets): keys the copy holds below and above every lake key, new keys above them, unknown (NULL)
    fingerprints, changed, deleted and unchanged rows all come out as one pass finds them."""
    from nwlib import cdc, fingerprint

    value = {"BIGINT": "i", "DATE": "DATE '2000-01-01' + CAST(i AS INTEGER)", "VARCHAR": "printf('%06d', i)",
             "TIMESTAMP": "TIMESTAMP '2000-01-01' + INTERVAL (i) SECOND", "TIMESTAMP_NS": "CAST(TIMESTAMP '2000-01-01' + INTERVAL (i) SECOND AS TIMESTAMP_NS)"}[key]
    con, spec, holdings = _lake_with_copy(tmp_path, f"CREATE TABLE t (k {key} PRIMARY KEY, v DOUBLE)",
                                          f"INSERT INTO t SELECT {value}, i * 1.5 FROM range(100, 2100) r(i)",
                                          lambda spec: f"SELECT {cdc.sent_keys(spec)}, {fingerprint.of(spec)} FROM t")
    held = holdings.table(spec)
    typ = cdc.key_type(spec, "k")
    con.execute(f"INSERT INTO {held} SELECT CAST({value} AS {typ}), 7 FROM range(0, 10) r(i)")            # below every lake key
    con.execute(f"INSERT INTO {held} SELECT CAST({value} AS {typ}), NULL FROM range(5000, 5010) r(i)")    # above, fingerprint unknown
    con.execute(f"UPDATE {held} SET nw_fingerprint = NULL WHERE nw_fingerprint % 7 = 0")
    con.execute("UPDATE t SET v = -v WHERE v % 9 = 0")                                                  # changed
    con.execute("DELETE FROM t WHERE v % 11 = 0")                                                       # deleted
    con.execute(f"INSERT INTO t SELECT {value}, 0 FROM range(9000, 9050) r(i)")                          # new, above all
    n = con.execute("SELECT count(*) FROM t").fetchone()[0]
    assert (cdc.key_ranges(con, spec, 4, (spec.source, holdings.table(spec))) is not None) == ranged

    def found(full, bucket_rows):
        up, gone = cdc.compare(con, spec, holdings, full, n, bucket_rows=bucket_rows)
        return (None if up is None else con.execute(f"SELECT * FROM {up} ORDER BY ALL").fetchall(),
                con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall())

    for full in (False, True):
        one_pass = found(full, 10_000)
        assert found(full, 150) == one_pass           # 14 passes
        assert found(full, 1_000) == one_pass         # 3
    # Sized by itself, a table whose key splits is compared in passes of RANGE_PASS_ROWS at most (the memory a
    # large join frees stays with the process); others in one pass while memory allows.
    split_into = []
    monkeypatch.setattr(cdc, "RANGE_PASS_ROWS", 300)
    monkeypatch.setattr(cdc, "key_ranges", lambda con, spec, parts, sides, real=cdc.key_ranges: split_into.append(parts) or real(con, spec, parts, sides))
    assert found(False, None) == found(False, 10_000)
    assert split_into == ([-(-max(n, holdings.totals(spec)[0]) // 300)] if ranged else [])
    sent, deleted = found(False, 10_000)
    assert len(deleted) == 20 + con.execute("SELECT count(*) FROM range(100, 2100) r(i) WHERE (i * 1.5) % 11 = 0").fetchone()[0]
    assert len(sent) >= 50 + con.execute("SELECT count(*) FROM t WHERE v % 9 = 0 AND v <> 0").fetchone()[0]
    con.close()


def test_key_ranges_span_both_sides_and_any_year(tmp_path):
    """Range bounds come from the lake's keys and the copy's together (a lake rebuilt with new keys does not land
    in one pass) and go through DuckDB as text (a timestamp past year 9999 comes back to Python as a string, which
    would sort as text): the passes find what one pass finds."""
    from nwlib import cdc, fingerprint

    value = "CASE WHEN i % 2 = 0 THEN TIMESTAMP '2000-01-01' ELSE TIMESTAMP '12000-01-01' END + INTERVAL (i) MINUTE"
    con, spec, holdings = _lake_with_copy(tmp_path, "CREATE TABLE t (k TIMESTAMP PRIMARY KEY, v INTEGER)",
                                          f"INSERT INTO t SELECT {value}, i FROM range(1000) r(i)",
                                          lambda spec: f"SELECT k + INTERVAL 1 DAY * 400000, {fingerprint.of(spec)} + 1 FROM t")  # the copy: other keys
    bounds = cdc.key_ranges(con, spec, 4, (spec.source, holdings.table(spec)))
    assert bounds is not None and bounds[0] < "3000" and bounds[-1].startswith("1")      # both eras, sorted by DuckDB
    con.execute("UPDATE t SET v = -v WHERE v % 3 = 0")

    def found(bucket_rows):
        up, gone = cdc.compare(con, spec, holdings, False, 1000, bucket_rows=bucket_rows)
        return con.execute(f"SELECT * FROM {up} ORDER BY ALL").fetchall(), con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall()

    one_pass = found(10_000)
    assert len(one_pass[0]) == len(one_pass[1]) == 1000
    assert found(100) == one_pass
    con.close()


def test_a_comparison_that_runs_out_of_memory_starts_again_in_more_passes(tmp_path, caplog):
    """DuckDB's joins can need more than the passes were sized for.  A real out-of-memory (32 MB, no spilling, a
    1M-row table whose one-pass join needs more) makes the comparison start again in twice as many passes until
    it fits, and find what an unbounded one finds; for a full send's deletes too."""
    import logging

    from nwlib import cdc, fingerprint

    con, spec, holdings = _lake_with_copy(tmp_path, "CREATE TABLE t (id BIGINT PRIMARY KEY, v DOUBLE)",
                                          "INSERT INTO t SELECT i, i * 1.5 FROM range(1000000) r(i)",
                                          lambda spec: f"SELECT id, {fingerprint.of(spec)} FROM t")
    con.execute("UPDATE t SET v = -v WHERE id % 1000 = 3")
    con.execute("DELETE FROM t WHERE id % 1000 = 7")
    con.execute("INSERT INTO t VALUES (2000000, 1)")
    con.execute("CHECKPOINT")
    n = con.execute("SELECT count(*) FROM t").fetchone()[0]

    def found(full):
        up, gone = cdc.compare(con, spec, holdings, full, n, bucket_rows=10**9)      # one pass, as sized
        return (None if up is None else con.execute(f"SELECT * FROM {up} ORDER BY ALL").fetchall(),
                con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall())

    unbounded = found(False)
    assert (len(unbounded[0]), len(unbounded[1])) == (1001, 1000)
    con.execute("SET memory_limit = '32MB'")
    con.execute("SET temp_directory = ''")            # nothing may spill: what does not fit fails
    con.execute("SET threads = 2")
    with caplog.at_level(logging.WARNING, logger="nwlib.cdc"):
        assert found(False) == unbounded
        assert found(True) == (None, unbounded[1])
    again = [r.getMessage() for r in caplog.records if "starting again in" in r.getMessage()]
    assert len(again) >= 2 and all("'t'" in m and "DUCKDB_MEMORY_LIMIT" in m for m in again), again
    con.close()

def _session(path):
    """A lake session as open_lake makes it: in memory, the lake attached (pairs live in the memory catalog)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{path}' AS lake")
    con.execute("USE lake")
    return con


def _memory_tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory'").fetchall()}


def test_pairs_kept_from_hashing_give_the_comparison_it_would_find_alone(tmp_path):
    """The (key, fingerprint) pairs LakeTotals keeps from its hashing are the lake's: a comparison reading them
    finds the rows to send and the keys to delete that one hashing the lake again finds, in one pass and in
    passes, and in a --full-refresh; released or left over, they are dropped."""
    from nwlib import cdc, fingerprint
    from nwlib.holdings import Holdings
    from nwlib.lake import read_specs
    from nwlib.model import TableState

    con = _session(tmp_path / "lake.duckdb")
    con.execute("CREATE TABLE t (a INTEGER, b BIGINT, v DOUBLE, PRIMARY KEY (a, b))")
    con.execute("INSERT INTO t SELECT i % 97, i // 97, i * 1.5 FROM range(2000) r(i)")
    con.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO u SELECT i, 'v' || i FROM range(50) r(i)")
    specs = read_specs(con)
    spec = specs["t"]
    holdings = Holdings(con, tmp_path / "holdings.duckdb")
    holdings.empty(spec, TableState(revision="r1", fingerprint_version=fingerprint.version(), loaded=True))
    held = holdings.table(spec)
    con.execute(f"INSERT INTO {held} SELECT a, b, {fingerprint.of(spec)} FROM t")
    con.execute(f"UPDATE {held} SET nw_fingerprint = NULL WHERE a = 5")
    con.execute(f"INSERT INTO {held} VALUES (500, 999, 1)")
    con.execute("UPDATE t SET v = -v WHERE a % 10 = 3")
    con.execute("DELETE FROM t WHERE a = 7")
    con.execute("INSERT INTO t VALUES (1000, 0, 0)")

    totals = cdc.LakeTotals(con, [spec, specs["u"]])
    n, total = totals.get(con, spec)
    assert (n, total) == cdc.lake_totals(con, spec)
    pairs = totals.pairs(spec)
    assert pairs is not None
    assert con.execute(f"SELECT * FROM {pairs} ORDER BY ALL").fetchall() == \
        con.execute(f"SELECT a, b, {fingerprint.of(spec)} FROM t ORDER BY ALL").fetchall()

    def found(full, bucket_rows, kept):
        up, gone = cdc.compare(con, spec, holdings, full, n, bucket_rows=bucket_rows, pairs=kept)
        return (None if up is None else con.execute(f"SELECT * FROM {up} ORDER BY ALL").fetchall(),
                con.execute(f"SELECT * FROM {gone} ORDER BY ALL").fetchall())

    for full in (False, True):
        alone = found(full, 10_000, None)
        assert found(full, 10_000, pairs) == alone
        assert found(full, 150, pairs) == alone
    assert len(alone[1]) == 22       # (500, 999) and the 21 keys of a = 7
    assert pairs.rpartition(".")[2] in _memory_tables(con)

    totals.release(con, spec)
    assert totals.pairs(spec) is None and pairs.rpartition(".")[2] not in _memory_tables(con)
    totals.close()                   # u's pairs were never asked for: dropped too
    assert not {t for t in _memory_tables(con) if t.startswith("nw_pairs_")}
    con.close()


def test_pairs_are_kept_only_where_a_one_pass_comparison_still_fits(tmp_path):
    """Under a small DUCKDB_MEMORY_LIMIT the pairs are not kept (the comparison hashes the lake again), and
    keeping them never takes more than the limit across tables."""
    from nwlib import cdc
    from nwlib.lake import read_specs

    con = _session(tmp_path / "lake.duckdb")
    for name in ("a", "b", "c"):
        con.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, v VARCHAR)")
        con.execute(f"INSERT INTO {name} SELECT i, 'v' || i FROM range(400000) r(i)")
    specs = read_specs(con)
    con.execute("SET memory_limit = '100MB'")       # one table's pass (23 MB) and pairs (10 MB) fit beside the reserve; three do not
    totals = cdc.LakeTotals(con, specs.values())
    for s in specs.values():
        totals.get(con, s)
    kept = [s for s in specs.values() if totals.pairs(s)]
    assert 1 <= len(kept) < 3
    totals.close()
    con.execute("SET memory_limit = '64MB'")
    totals = cdc.LakeTotals(con, [specs["a"]])
    assert totals.get(con, specs["a"]) == cdc.lake_totals(con, specs["a"])
    assert totals.pairs(specs["a"]) is None
    totals.close()
    con.close()


def test_pairs_are_kept_when_the_lake_was_written_since_the_local_copy(settings, pg):
    """Keeping the pairs costs a no-change sync time, so the engine keeps them when changes are likely: on the
    first sync (no local copy) and after the lake was written, not on a sync right after another."""
    from nwlib import cdc
    from nwlib.bootstrap import bootstrap, mutate

    bootstrap(settings.duckdb_path, scale=0.01)
    seen = []
    real = cdc.LakeTotals.__init__

    def spy(self, con, specs, keep_pairs=True):
        seen.append(keep_pairs)
        real(self, con, specs, keep_pairs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cdc.LakeTotals, "__init__", spy)
        run(settings)
        run(settings)
        mutate(settings.duckdb_path, seed=5)
        run(settings)
    assert seen == [True, False, True]
    assert equal(settings)


def test_pairs_are_sized_from_the_key_and_not_kept_for_keys_of_variable_width(tmp_path):
    """A pair's memory is told from its key's types (measured 22 bytes for BIGINT, 29 for INTEGER + BIGINT);
    a text or UUID key's cannot be, so its table keeps no pairs (its comparison hashes the lake again)."""
    from nwlib import cdc
    from nwlib.lake import read_specs

    con = _session(tmp_path / "lake.duckdb")
    con.execute("CREATE TABLE b (id BIGINT PRIMARY KEY, v VARCHAR)")
    con.execute("CREATE TABLE c (a INTEGER, b BIGINT, v VARCHAR, PRIMARY KEY (a, b))")
    con.execute("CREATE TABLE d (id DECIMAL(18, 2) PRIMARY KEY, t TIMESTAMP)")
    con.execute("CREATE TABLE s (id VARCHAR PRIMARY KEY, v INTEGER)")
    con.execute("CREATE TABLE u (id UUID PRIMARY KEY, v INTEGER)")
    for t in ("b", "c", "d", "s", "u"):
        con.execute(f"INSERT INTO {t} SELECT * FROM {t} LIMIT 0")
    con.execute("INSERT INTO s SELECT 'k' || i, i FROM range(100) r(i)")
    specs = read_specs(con)
    assert [cdc.pair_bytes(specs[t]) for t in ("b", "c", "d", "s", "u")] == [24, 32, 32, None, None]
    totals = cdc.LakeTotals(con, [specs["s"]])
    assert totals.get(con, specs["s"]) == cdc.lake_totals(con, specs["s"]) and totals.pairs(specs["s"]) is None
    totals.close()
    con.close()


def test_totals_hashed_over_other_columns_are_dropped_and_their_error_ignored(tmp_path, monkeypatch):
    """The schema-change policy may send fewer columns than were hashed: those totals (and a failure while
    hashing them) are not needed; the table is hashed again over the columns sent."""
    from dataclasses import replace

    from nwlib import cdc
    from nwlib.lake import read_specs

    con = _session(tmp_path / "lake.duckdb")
    con.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR, extra INTEGER)")
    con.execute("INSERT INTO t SELECT i, 'v' || i, i FROM range(1000) r(i)")
    spec = read_specs(con)["t"]
    sent = replace(spec, columns=spec.columns[:2])
    totals = cdc.LakeTotals(con, [spec])
    assert totals.get(con, sent) == cdc.lake_totals(con, sent) != cdc.lake_totals(con, spec)
    assert totals.pairs(sent) is None and totals.held == 0
    assert not {t for t in _memory_tables(con) if t.startswith("nw_pairs_")}
    totals.close()

    def broken(self, spec):
        raise duckdb.IOException("IO Error: a block did not read back")

    monkeypatch.setattr(cdc.LakeTotals, "_hash", broken)
    totals = cdc.LakeTotals(con, [spec])
    assert totals.get(con, sent) == cdc.lake_totals(con, sent)
    totals.close()
    con.close()


def test_rows_sharing_a_fingerprint_by_chance_are_both_compared(tmp_path, monkeypatch):
    """Two new rows whose fingerprints collide (odds about 2^-64 each, forced here) are two changes, not one."""
    from nwlib import cdc

    con, spec, holdings = _lake_with_copy(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)",
                                          "INSERT INTO t SELECT i, 'v' || i FROM range(10) r(i)",
                                          lambda spec: "SELECT id, id FROM t")                # fingerprint = id
    con.execute("INSERT INTO t VALUES (100, 'new'), (101, 'new too')")
    monkeypatch.setattr(cdc.fingerprint, "of", lambda spec, alias="": "CAST(CASE WHEN id >= 100 THEN 1000 ELSE id END AS BIGINT)")
    up, gone = cdc.compare(con, spec, holdings, False, 12, bucket_rows=5)
    assert con.execute(f"SELECT id FROM {up} ORDER BY id").fetchall() == [(100,), (101,)]
    assert con.execute(f"SELECT count(*) FROM {gone}").fetchone()[0] == 0
    con.close()


def test_passes_are_sized_by_the_memory_limit_and_the_table():
    from nwlib import cdc
    from nwlib.lake import memory_limit

    assert cdc.pass_rows(192 << 20, 2_200_000) == cdc.COMPARE_BUCKET_ROWS       # a 2M-row table: one pass
    assert 500_000 < cdc.pass_rows(192 << 20, 10_000_000) < 2_000_000             # 10M rows beside their key index
    assert cdc.pass_rows(64 << 20, 50_000_000) == cdc.MIN_PASS_ROWS
    con = duckdb.connect()
    con.execute("SET memory_limit = '192MB'")
    assert 170 << 20 < memory_limit(con) <= 192 << 20
    con.close()
