"""Hostile and bad input: an exact sync or one clear line — never a traceback, never a silent skip."""
from __future__ import annotations

import duckdb
import pytest
from clirun import env_for, one_line_error, run_nw

from nwlib.engine import sync
from nwlib.verification import verify

from lakesql import lake_sql

T0 = "TIMESTAMP '2025-01-01 00:00:00'"




def synced_exactly(settings):
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    checks = verify(settings)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    return report, checks


# --- names ------------------------------------------------------------------------------

HOSTILE_TABLE = 'we"ird; DROP TABLE x;--'
HOSTILE_CHILD = "Pedidos ção 名前 select"
COLUMNS = ['id "q"', "semi;colon", "with space", "ção ünï 名前", "select", "order", "updated_at"]


def test_hostile_table_and_column_names_sync_exactly(settings, pg):
    q = lambda n: '"' + n.replace('"', '""') + '"'
    cols = ", ".join(f"{q(c)} {t}" for c, t in zip(COLUMNS, ["INTEGER PRIMARY KEY", "VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "TIMESTAMP", "TIMESTAMP"]))
    lake_sql(settings,
             f"CREATE TABLE {q(HOSTILE_TABLE)} ({cols})",
             f"INSERT INTO {q(HOSTILE_TABLE)} SELECT i, 'a;b', 'x y', 'ü' || i, i, {T0}, {T0} + INTERVAL (i) SECOND FROM range(1, 21) t(i)",
             f'CREATE TABLE {q(HOSTILE_CHILD)} ("key" INTEGER PRIMARY KEY, "from" INTEGER, "updated_at" TIMESTAMP)',
             f"INSERT INTO {q(HOSTILE_CHILD)} SELECT i, 1 + i % 20, {T0} FROM range(50) t(i)",
             "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)")
    lake_sql(settings, "INSERT INTO fk_metadata VALUES (?, ?, ?, ?)", params=[HOSTILE_CHILD, "from", HOSTILE_TABLE, 'id "q"'])
    report, _ = synced_exactly(settings)
    assert [t.table for t in report.tables] == [HOSTILE_TABLE, HOSTILE_CHILD]
    assert pg.execute("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s AND contype = 'f'",
                      [settings.db_schema]).fetchone()[0] == 1
    lake_sql(settings,
             f"UPDATE {q(HOSTILE_TABLE)} SET {q('semi;colon')} = '''; DROP TABLE x; --', updated_at = {T0} + INTERVAL 1 DAY WHERE {q(COLUMNS[0])} = 3",
             f"DELETE FROM {q(HOSTILE_CHILD)} WHERE {q('key')} < 5")
    report, _ = synced_exactly(settings)
    by = {t.table: t for t in report.tables}
    assert by[HOSTILE_TABLE].updated == 1 and by[HOSTILE_CHILD].deleted == 5
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}"."Pedidos ção 名前 select"').fetchone()[0] == 45


# --- values -------------------------------------------------------------------------------

CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f\\'\"" + "\u2028\ufeff"


def test_extreme_values_round_trip_exactly(settings):
    lake_sql(settings, """CREATE TABLE vals (id INTEGER PRIMARY KEY, t VARCHAR, d DOUBLE, r REAL, big HUGEINT, ub UBIGINT,
                          dec DECIMAL(38,10), ts TIMESTAMP, tstz TIMESTAMPTZ, dt DATE, updated_at TIMESTAMP)""")
    rows = [
        (1, CONTROL, "nan", "nan", "0", "0", "0", "0001-01-01 00:00:00", "0001-01-01 00:00:00+00", "0001-01-01"),
        (2, "é" * 524_288, "inf", "-inf", "170141183460469231731687303715884105727", "18446744073709551615",
         "9999999999999999999999999999.9999999999", "9999-12-31 23:59:59.999999", "9999-12-31 23:59:59.999999+00", "9999-12-31"),
        (3, "", "-inf", "inf", "-170141183460469231731687303715884105728", "1", "-9999999999999999999999999999.9999999999",
         "2024-03-10 02:30:00", "2024-03-10 02:30:00-05", "2000-02-29"),
        (4, " ", "1.7976931348623157e308", "3.4028235e38", "-1", "9223372036854775808", "0.0000000001",
         "1970-01-01 00:00:00", "2024-06-01 12:00:00+14", "1970-01-01"),
        (5, "\t\n\r", "5e-324", "1.4e-45", "1", "2", "-0.0000000001", "2000-01-01 00:00:00", "1999-12-31 23:59:59.999999-03", "2000-01-01"),
        (6, None, None, None, None, None, None, None, None, None),
    ]
    with duckdb.connect(str(settings.duckdb_path)) as con:
        for r in rows:
            con.execute("INSERT INTO vals VALUES (?, ?, CAST(? AS DOUBLE), CAST(? AS REAL), CAST(? AS HUGEINT), CAST(? AS UBIGINT), "
                        "CAST(? AS DECIMAL(38,10)), CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMPTZ), CAST(? AS DATE), " + T0 + ")", list(r))
    report, checks = synced_exactly(settings)
    assert checks[0].lake_rows == 6 and report.tables[0].inserted == 6
    # Change the 1 MB value and a NaN: the merge sees them as different and writes them.
    lake_sql(settings, f"UPDATE vals SET t = t || '!', d = 0, updated_at = {T0} + INTERVAL 1 DAY WHERE id IN (1, 2)")
    report, _ = synced_exactly(settings)
    assert report.tables[0].updated == 2


def test_text_that_looks_like_null_stays_text_in_keys_and_values(settings, pg):
    # Keys and values read back from PostgreSQL (verify, delete reconciliation) must not turn "NA" or "NaN" into NULL.
    words = ["NA", "N/A", "NULL", "null", "NaN", "nan", "#N/A", "", " ", '""', "\\N"]
    lake_sql(settings, "CREATE TABLE words (k VARCHAR PRIMARY KEY, v VARCHAR)")
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.executemany("INSERT INTO words VALUES (?, ?)", [[w, w] for w in words])
    synced_exactly(settings)
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".words WHERE v IS NULL').fetchone()[0] == 0
    for hint in (settings.destination_path / ".nw").glob("keys-*"):
        hint.unlink()  # no remembered keys: the deletes are found by reading every key back from PostgreSQL
    lake_sql(settings, "DELETE FROM words WHERE k IN ('NA', 'NULL', 'nan', '')")   # found by the full key comparison
    report, _ = synced_exactly(settings)
    assert report.tables[0].deleted == 4


@pytest.mark.parametrize("column, value", [("ts", "infinity"), ("ts", "-infinity"), ("dt", "-infinity"), ("tstz", "infinity")])
def test_infinite_timestamps_are_one_clear_line(settings, pg, column, value):
    # PostgreSQL has infinity too, but binary COPY from Arrow cannot carry it: refused, not sent as a wrong date.
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, ts TIMESTAMP, tstz TIMESTAMPTZ, dt DATE)",
             "INSERT INTO t VALUES (1, TIMESTAMP '2020-01-01', TIMESTAMPTZ '2020-01-01', DATE '2020-01-01')",
             f"INSERT INTO t (id, {column}) VALUES (2, '{value}')")
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert f"table 't' column '{column}' holds an infinite date/timestamp" in line, line
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".t').fetchone()[0] == 0


def test_nul_character_in_text_is_one_clear_line(settings):
    lake_sql(settings, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR)", "INSERT INTO notes VALUES (1, 'ok'), (2, 'a' || chr(0) || 'b')")
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert "notes" in line and "0x00" in line, line


# --- the incremental column -------------------------------------------------------------------

def test_null_incremental_values_still_sync_and_updates_to_them_arrive(settings):
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
             f"INSERT INTO t VALUES (1, 'a', {T0}), (2, 'b', NULL), (3, 'c', NULL)")
    report, _ = synced_exactly(settings)
    assert report.tables[0].inserted == 3
    lake_sql(settings, "UPDATE t SET v = 'B' WHERE id = 2", "INSERT INTO t VALUES (4, 'd', NULL)")
    report, _ = synced_exactly(settings)
    assert (report.tables[0].inserted, report.tables[0].updated) == (1, 1)
    report, _ = synced_exactly(settings)
    assert report.tables[0].moved == 0  # re-sent, but nothing differs: nothing written


def test_future_incremental_value_does_not_hide_later_rows(settings):
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, updated_at TIMESTAMP)",
             f"INSERT INTO t VALUES (1, 'a', {T0}), (2, 'from the future', TIMESTAMP '9999-01-01 00:00:00')")
    report, _ = synced_exactly(settings)
    assert report.tables[0].watermark_after.value.startswith("2025-01-01")  # capped at the run's time, not 9999
    lake_sql(settings, f"INSERT INTO t VALUES (3, 'later', {T0} + INTERVAL 30 DAY)", f"UPDATE t SET v = 'A', updated_at = {T0} + INTERVAL 31 DAY WHERE id = 1")
    report, _ = synced_exactly(settings)
    assert (report.tables[0].inserted, report.tables[0].updated) == (1, 1)


# --- model errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["first load", "later merge"])
def test_duplicate_primary_keys_are_refused_with_the_keys_named(settings, pg, when):
    lake_sql(settings, "CREATE TABLE dup (id INTEGER, v VARCHAR, updated_at TIMESTAMP)",
             "CREATE TABLE table_metadata (table_name VARCHAR, schema_json VARCHAR)",
             """INSERT INTO table_metadata VALUES ('dup', '{"primary_key": ["id"]}')""",
             f"INSERT INTO dup SELECT i, 'v', {T0} FROM range(1, 6) t(i)")
    if when == "later merge":
        synced_exactly(settings)
    lake_sql(settings, f"INSERT INTO dup VALUES (2, 'again', {T0} + INTERVAL 1 DAY), (4, 'again', {T0} + INTERVAL 1 DAY)")
    before = pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".dup').fetchone()[0] if when == "later merge" else 0
    proc = run_nw(env_for(settings), "sync", "--no-progress")
    line = one_line_error(proc)
    assert "table 'dup' has duplicate primary keys in the lake (id = 2; 4)" in line, line
    assert pg.execute(f'SELECT count(*) FROM "{settings.db_schema}".dup').fetchone()[0] == before  # nothing half-merged


@pytest.mark.parametrize("setup, message", [
    (["INSERT INTO fk_metadata VALUES ('child', 'parent_id', 'ghost', 'id')"],
     "fk_metadata: child.parent_id references table 'ghost', which is not in the lake"),
    (["INSERT INTO fk_metadata VALUES ('child', 'nope', 'parent', 'id')"], "fk_metadata: column child.nope does not exist"),
    (["INSERT INTO fk_metadata VALUES ('child', 'parent_id', 'parent', NULL)"], "fk_metadata has an incomplete row"),
    (["""INSERT INTO table_metadata VALUES ('parent', '{"primary_key": ["id"')"""], "table_metadata.schema_json for table 'parent' is not valid JSON"),
    (["INSERT INTO table_metadata VALUES ('parent', '42')"], "table_metadata.schema_json for table 'parent' must be a JSON object"),
    (["""INSERT INTO table_metadata VALUES ('parent', '{"primary_key": ["pk"]}')"""], "primary key column parent.pk does not exist"),
    (["""INSERT INTO table_metadata VALUES ('parent', '{"mode": "upsert"}')"""], "table_metadata for 'parent' has mode 'upsert'"),
])
def test_bad_metadata_is_one_clear_line(settings, setup, message):
    lake_sql(settings,
             "CREATE TABLE parent (id INTEGER PRIMARY KEY, updated_at TIMESTAMP)",
             "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER, updated_at TIMESTAMP)",
             "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
             "CREATE TABLE table_metadata (table_name VARCHAR, schema_json VARCHAR)", *setup)
    for command in (["sync", "--no-progress"], ["verify"], ["sync", "--dry-run"]):
        proc = run_nw(env_for(settings), *command)
        line = one_line_error(proc)
        assert proc.returncode == 3, line
        assert message in line, line
