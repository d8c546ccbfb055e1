"""Every DuckDB type of issue item 8 round-trips exactly into a real PostgreSQL.

Each value is checked twice: by ``verify`` (the product's own comparison) and
directly, reading the destination with psycopg and comparing with what DuckDB
returns for the lake.  Hostile identifiers get the same treatment.
"""
from __future__ import annotations

import json
import math
import struct
from decimal import Decimal

import duckdb
import pytest

from nwlib.engine import sync
from nwlib.sql import ident, idents, qualified
from nwlib.typemap import pg_type
from nwlib.verification import verify

# column → DuckDB type, in table order (id and updated_at are added around them)
TYPES = {
    "ti": "TINYINT", "si": "SMALLINT", "i4": "INTEGER", "i8": "BIGINT",
    "ut": "UTINYINT", "us": "USMALLINT", "ui": "UINTEGER", "ub": "UBIGINT",
    "hi": "HUGEINT", "uh": "UHUGEINT",
    "d41": "DECIMAL(4,1)", "d183": "DECIMAL(18,3)", "d3810": "DECIMAL(38,10)",
    "f8": "DOUBLE", "f4": "REAL",
    "txt": "VARCHAR", "b": "BOOLEAN",
    "dt": "DATE", "tm": "TIME", "ts": "TIMESTAMP", "tz": "TIMESTAMPTZ", "iv": "INTERVAL",
    "uu": "UUID", "bl": "BLOB", "js": "JSON", "mood": "mood",
    "li": "INTEGER[]", "lu": "UUID[]", "lv": "VARCHAR[]", "lb": "BLOB[]",
    "st": "STRUCT(a INTEGER, b VARCHAR, c DOUBLE[])", "mp": "MAP(VARCHAR, INTEGER)",
}
D38 = "9999999999999999999999999999.9999999999"

# One row per line: id, then the TYPES columns in order (SQL literals; NULL where a row has nothing to say).
ROWS = [
    # 1: minimums
    ["-128", "-32768", "-2147483648", "-9223372036854775808", "0", "0", "0", "0",
     "-170141183460469231731687303715884105728", "0", "-999.9", "-999999999999999.999", f"-{D38}",
     "'-infinity'::DOUBLE", "'-infinity'::REAL", "'it''s \"quoted\"'", "false",
     "DATE '0001-01-01'", "TIME '00:00:00'", "TIMESTAMP '0001-01-01 00:00:00'", "TIMESTAMPTZ '0001-01-01 00:00:00+00'",
     "to_years(-1) + to_months(2) + to_days(-3) + to_microseconds(14706789000)",
     "'00000000-0000-0000-0000-000000000000'", "''::BLOB", "'{}'", "'sad'",
     "[]", "[]", "[]", "[]", "{'a': -1, 'b': '', 'c': []}", "MAP {}"],
    # 2: maximums
    ["127", "32767", "2147483647", "9223372036854775807", "255", "65535", "4294967295", "18446744073709551615",
     "170141183460469231731687303715884105727", "340282366920938463463374607431768211455", "999.9", "999999999999999.999", D38,
     "'infinity'::DOUBLE", "'infinity'::REAL", "E'tab\\there\\nnew line\\r\\ncrlf back\\\\slash \\\\N'", "true",
     "DATE '9999-12-31'", "TIME '23:59:59.999999'", "TIMESTAMP '9999-12-31 23:59:59.999999'",
     "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'",
     "to_days(5) - to_hours(2) - to_microseconds(1)",
     "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'\\x00\\xFF\\x00'::BLOB", "'[1, 2.5, \"x\", null, {\"k\": [true]}]'", "'happy 😀'",
     "[2147483647, NULL, -2147483648]",
     "['00000000-0000-0000-0000-000000000001'::UUID, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::UUID]",
     "['a,b', 'say \"hi\"', '{brace}', 'back\\slash', NULL, '', 'NULL', 'ç,\"ã\"']", "['\\x00\\xFF'::BLOB, NULL, ''::BLOB]",
     "{'a': 2147483647, 'b': 'aspas \"duplas\" e ''simples''', 'c': [1.5, NULL]}", "MAP {'k1': 1, 'com, vírgula': NULL}"],
    # 3: ordinary values, NaN, non-Latin text, a time zone that must not shift
    ["7", "-7", "42", "-42", "1", "2", "3", "4", "0", "1", "12.3", "-0.001", "0.0000000001",
     "'NaN'::DOUBLE", "'NaN'::REAL", "'Ñandú 中文 русский العربية עברית'", "NULL",
     "DATE '2024-02-29'", "TIME '12:34:56.000001'", "TIMESTAMP '2024-02-29 12:34:56.123456'",
     "TIMESTAMPTZ '2024-06-01 12:34:56.123456+05:30'", "- to_years(2) - to_days(1) - to_microseconds(1)",
     "'b7e1c2a4-3d5f-4e6a-8b9c-0d1e2f3a4b5c'", "'abc\\x00def'::BLOB",
     "'{\"a\": [1, 2, {\"b\": null}], \"ç\": \"ã\\\"q\", \"n\": 1.25e2}'", "'ok'",
     "[1]", "['b7e1c2a4-3d5f-4e6a-8b9c-0d1e2f3a4b5c'::UUID]", "['plain']", "['a,]['::BLOB]", "{'a': NULL, 'b': NULL, 'c': NULL}", "MAP {'x': 0}"],
    # 4: NULL in every column
    ["NULL"] * len(TYPES),
    # 5: more floats and text
    ["0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0.0", "0.000", "0.0000000000",
     "1.7976931348623157e308", "3.4028235e38", "'👩\u200d👩\u200d👧 🙂 emoji'", "true",
     "DATE '1970-01-01'", "TIME '00:00:00.5'", "TIMESTAMP '1970-01-01 00:00:00'", "TIMESTAMPTZ '1969-12-31 23:59:59.999999-03'",
     "to_microseconds(0)", "gen_random_uuid()", "'\\xDE\\xAD\\xBE\\xEF'::BLOB", "'\"just a string\"'", "'sad'",
     "[NULL]", "[NULL]", "[NULL, NULL]", "[NULL]", "{'a': 0, 'b': E'\\t', 'c': [0.1]}", "MAP {'': 1}"],
    # 6: the smallest doubles and the empty string (which must stay '' and not become NULL)
    ["1", "1", "1", "1", "1", "1", "1", "1", "-1", "1", "-0.1", "0.001", "-0.0000000001",
     "5e-324", "1.4e-45", "''", "false",
     "DATE '2000-01-01'", "TIME '00:00:00.000001'", "TIMESTAMP '2000-01-01 00:00:00.000001'", "TIMESTAMPTZ '2000-01-01 00:00:00+14'",
     "to_months(-13)", "gen_random_uuid()", "'NULL'::BLOB", "'0'", "'ok'",
     "[0]", "[gen_random_uuid()]", "['\\N']", "NULL", "NULL", "NULL"],
]

TABLE = "todos_os_tipos"


def build_lake(path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀')")
    cols = ", ".join(f"{c} {t}" for c, t in TYPES.items())
    con.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, {cols}, updated_at TIMESTAMP)")
    for i, row in enumerate(ROWS, 1):
        assert len(row) == len(TYPES), i
        con.execute(f"INSERT INTO {TABLE} VALUES ({i}, {', '.join(row)}, TIMESTAMP '2024-01-01' + to_minutes({i}))")
    con.close()


def lake_rows(path, table=TABLE, key="id"):
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    try:
        cur = con.execute(f"SELECT * FROM {ident(table)} ORDER BY {ident(key)}")
        names = [d[0] for d in cur.description]
        return names, cur.fetchall()
    finally:
        con.close()


def dest_rows(pg, schema, names, table=TABLE, key="id"):
    return pg.execute(f"SELECT {idents(names)} FROM {qualified(schema, table)} ORDER BY {ident(key)}").fetchall()


def same(column_type: str, lake_value, dest_value) -> bool:
    if lake_value is None or dest_value is None:
        return lake_value is None and dest_value is None
    t = column_type.upper()
    if t == "REAL":
        return struct.pack("<f", lake_value) == struct.pack("<f", dest_value) or (math.isnan(lake_value) and math.isnan(dest_value))
    if t == "DOUBLE":
        return lake_value == dest_value or (math.isnan(lake_value) and math.isnan(dest_value))
    if t in ("UBIGINT", "HUGEINT", "UHUGEINT"):
        return isinstance(dest_value, Decimal) and dest_value == Decimal(lake_value) and dest_value.as_tuple().exponent == 0
    if t.startswith("DECIMAL"):
        scale = int(t.split(",")[1].rstrip(")"))
        return dest_value == lake_value and -dest_value.as_tuple().exponent == scale
    if t == "JSON":
        return dest_value == json.loads(lake_value)
    if t.startswith(("STRUCT", "MAP")):
        return dest_value == lake_value
    if t == "TIMESTAMPTZ":
        return dest_value == lake_value and dest_value.utcoffset() is not None
    if t == "INTERVAL":
        return True  # compared component by component in interval_parts()
    return dest_value == lake_value and type(dest_value) is type(lake_value)


def interval_parts_lake(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"""SELECT id, datepart('year', iv) * 12 + datepart('month', iv), datepart('day', iv),
            datepart('hour', iv) * 3600000000 + datepart('minute', iv) * 60000000 + datepart('microseconds', iv)
            FROM {TABLE} ORDER BY id""").fetchall()
    finally:
        con.close()


def interval_parts_dest(pg, schema):
    return pg.execute(f"""SELECT id, (extract(year FROM iv) * 12 + extract(month FROM iv))::int, extract(day FROM iv)::int,
        (extract(hour FROM iv) * 3600000000 + extract(minute FROM iv) * 60000000 + extract(microsecond FROM iv))::bigint
        FROM "{schema}".{TABLE} ORDER BY id""").fetchall()


def assert_destination_equals_lake(settings, pg):
    names, expected = lake_rows(settings.duckdb_path)
    got = dest_rows(pg, settings.db_schema, names)
    assert len(got) == len(expected)
    types = {"id": "INTEGER", "updated_at": "TIMESTAMP", **TYPES}
    for lrow, drow in zip(expected, got):
        for name, lv, dv in zip(names, lrow, drow):
            assert same(types[name].replace("mood", "VARCHAR"), lv, dv), (lrow[0], name, lv, dv)
    assert interval_parts_dest(pg, settings.db_schema) == interval_parts_lake(settings.duckdb_path)


def test_every_type_round_trips_exactly(settings, pg):
    build_lake(settings.duckdb_path)
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert report.tables[0].inserted == len(ROWS)
    assert [c.ok for c in verify(settings)] == [True]
    assert_destination_equals_lake(settings, pg)

    # destination column types are the faithful ones of item 8
    dest_types = dict(pg.execute(
        "SELECT column_name, CASE WHEN data_type = 'ARRAY' THEN udt_name ELSE data_type END FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s", [settings.db_schema, TABLE]).fetchall())
    assert dest_types["ub"] == dest_types["hi"] == dest_types["uh"] == "numeric"
    assert dest_types["bl"] == "bytea" and dest_types["js"] == dest_types["st"] == dest_types["mp"] == "jsonb"
    assert dest_types["mood"] == "text" and dest_types["uu"] == "uuid" and dest_types["tz"] == "timestamp with time zone"
    assert (dest_types["li"], dest_types["lu"], dest_types["lv"]) == ("_int4", "_uuid", "_text")
    assert dest_types["f4"] == "real" and dest_types["f8"] == "double precision" and dest_types["iv"] == "interval"
    assert pg.execute('SELECT numeric_precision, numeric_scale FROM information_schema.columns WHERE table_schema = %s '
                      "AND table_name = %s AND column_name = 'd3810'", [settings.db_schema, TABLE]).fetchone() == (38, 10)

    # verify is not blind: one changed value in a NaN row, or in a JSON document, is a difference
    for change in ("f4 = 0 WHERE id = 3", """js = '{"a": [1, 2, {"b": null}], "n": 126, "ç": "ã\\"q"}' WHERE id = 3""",
                   "iv = iv + interval '1 microsecond' WHERE id = 1"):
        pg.execute(f'UPDATE "{settings.db_schema}".{TABLE} SET {change}')
        assert [(c.missing, c.extra) for c in verify(settings)] == [(1, 1)], change
        restored = sync(settings, full_refresh=True, show_progress=False)
        assert restored.tables[0].updated == 1 and [c.ok for c in verify(settings)] == [True]

    # the instant of a TIMESTAMPTZ is kept whatever the session's time zone (no shift)
    pg.execute("SET TimeZone = 'America/Sao_Paulo'")
    assert pg.execute(f'SELECT tz = %s FROM "{settings.db_schema}".{TABLE} WHERE id = 3',
                      ["2024-06-01 07:04:56.123456+00"]).fetchone() == (True,)


def test_updates_of_every_type_round_trip(settings, pg):
    build_lake(settings.duckdb_path)
    assert sync(settings, show_progress=False).ok
    con = duckdb.connect(str(settings.duckdb_path))
    # swap rows 1 and 2's values (every column changes), blank row 3, fill the NULL row
    con.execute(f"CREATE TEMP TABLE keep AS SELECT * FROM {TABLE}")
    cols = [c for c in TYPES]
    sets = ", ".join(f"{c} = k.{c}" for c in cols)
    con.execute(f"UPDATE {TABLE} t SET {sets}, updated_at = TIMESTAMP '2024-02-01' FROM keep k WHERE (t.id, k.id) IN ((1, 2), (2, 1), (4, 5))")
    con.execute(f"UPDATE {TABLE} SET {', '.join(f'{c} = NULL' for c in cols)}, updated_at = TIMESTAMP '2024-02-01' WHERE id = 3")
    con.close()
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert (report.tables[0].inserted, report.tables[0].updated) == (0, 4)
    assert [c.ok for c in verify(settings)] == [True]
    assert_destination_equals_lake(settings, pg)


HOSTILE_TABLE = 'Pedidos "Especiais"; DROP TABLE x; --'
HOSTILE_COLUMNS = {"ID Maiúsculo": "INTEGER", "with space": "VARCHAR", 'quo"te': "BIGINT", "semi;colon": "DATE",
                   "select": "VARCHAR", "order": "INTEGER", "日本語": "VARCHAR", "émoji🙂": "DOUBLE", "updated_at": "TIMESTAMP"}


def test_hostile_table_and_column_names(settings, pg):
    con = duckdb.connect(str(settings.duckdb_path))
    q = ident
    con.execute(f"CREATE TABLE {q(HOSTILE_TABLE)} ({', '.join(f'{q(c)} {t}' for c, t in HOSTILE_COLUMNS.items())}, PRIMARY KEY ({q('ID Maiúsculo')}))")
    con.execute(f"INSERT INTO {q(HOSTILE_TABLE)} SELECT i, 'v' || i, i * 10, DATE '2024-01-01' + i::INTEGER, 'from', i, '値' || i, i / 3, "
                "TIMESTAMP '2024-01-01' + to_seconds(i) FROM range(1, 51) r(i)")
    con.close()
    assert sync(settings, show_progress=False).ok
    con = duckdb.connect(str(settings.duckdb_path))
    con.execute(f"UPDATE {q(HOSTILE_TABLE)} SET {q('select')} = 'where', updated_at = TIMESTAMP '2025-01-01' WHERE {q('ID Maiúsculo')} <= 5")
    con.execute(f"DELETE FROM {q(HOSTILE_TABLE)} WHERE {q('ID Maiúsculo')} > 45")
    con.close()
    report = sync(settings, show_progress=False)
    assert report.ok, report.failed
    assert (report.tables[0].updated, report.tables[0].deleted) == (5, 5)
    assert [c.ok for c in verify(settings)] == [True]
    names, expected = lake_rows(settings.duckdb_path, HOSTILE_TABLE, "ID Maiúsculo")
    assert names == list(HOSTILE_COLUMNS)
    assert dest_rows(pg, settings.db_schema, names, HOSTILE_TABLE, "ID Maiúsculo") == expected
    # the lake's names are kept exactly (case, spaces, quotes), not folded; nwlib's fingerprint column comes last
    got = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                                    "ORDER BY ordinal_position", [settings.db_schema, HOSTILE_TABLE]).fetchall()]
    assert got == [*HOSTILE_COLUMNS, "nw_fingerprint"]


@pytest.mark.parametrize("duck, pg", [
    ("TINYINT", "smallint"), ("UTINYINT", "smallint"), ("USMALLINT", "integer"), ("UINTEGER", "bigint"),
    ("UBIGINT", "numeric(20,0)"), ("HUGEINT", "numeric(39,0)"), ("UHUGEINT", "numeric(39,0)"), ("DECIMAL(38,10)", "numeric(38,10)"),
    ("ENUM('a', 'b')", "text"), ("INTEGER[]", "integer[]"), ("VARCHAR[3]", "text[]"), ("INTEGER[][]", "jsonb"),
    ("STRUCT(a INTEGER)", "jsonb"), ("MAP(VARCHAR, INTEGER)", "jsonb"), ("JSON", "jsonb"), ("UUID[]", "uuid[]"),
])
def test_type_map_table(duck, pg):
    assert pg_type(duck).pg == pg

