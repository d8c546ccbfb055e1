"""The source model: metadata tables, declared constraints, incremental columns, modes; bad lake files."""
from __future__ import annotations

import json

import duckdb
import pytest

from nwlib import lake
from nwlib.bootstrap import bootstrap
from nwlib.errors import LakeError, SourceModelError
from nwlib.model import APPEND, MERGE, REPLACE, ForeignKey


def make_lake(path, *statements):
    con = duckdb.connect(str(path))
    for s in statements:
        con.execute(s)
    con.close()


def specs(path, **kw):
    con = lake.connect(path)
    try:
        return lake.read_specs(con, **kw)
    finally:
        con.close()


def test_model_from_metadata_tables_with_a_composite_fk(lake_path):
    make_lake(
        lake_path,
        "CREATE TABLE lojas (pais VARCHAR, codigo INTEGER, nome VARCHAR, modified_at TIMESTAMP)",
        "CREATE TABLE vendas (id BIGINT, pais VARCHAR, loja INTEGER, valor DECIMAL(12,2), ultima_atualizacao TIMESTAMP)",
        "CREATE TABLE table_metadata (table_name VARCHAR, schema_json VARCHAR)",
        "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
    )
    con = duckdb.connect(str(lake_path))
    con.execute("INSERT INTO table_metadata VALUES (?, ?), (?, ?)", [
        "lojas", json.dumps({"primary_key": ["pais", "codigo"], "columns": [{"name": "pais", "type": "VARCHAR"}]}),
        "vendas", json.dumps({"primary_key": "id"})])
    # a composite FK is one row per column, grouped by (table, ref_table) in row order
    con.executemany("INSERT INTO fk_metadata VALUES (?, ?, ?, ?)",
                    [["vendas", "pais", "lojas", "pais"], ["vendas", "loja", "lojas", "codigo"]])
    con.close()
    s = specs(lake_path)
    assert set(s) == {"lojas", "vendas"}                       # the metadata tables are not synced
    assert s["lojas"].primary_key == ("pais", "codigo")
    assert s["vendas"].primary_key == ("id",)
    assert s["vendas"].foreign_keys == (ForeignKey("vendas", ("pais", "loja"), "lojas", ("pais", "codigo")),)
    assert s["lojas"].incremental_column == "modified_at"
    assert s["vendas"].incremental_column == "ultima_atualizacao"
    assert s["vendas"].column("valor").type == "DECIMAL(12,2)"
    assert all(x.mode == MERGE for x in s.values())


def test_model_from_declared_constraints(lake_path):
    make_lake(
        lake_path,
        "CREATE TABLE a (x INTEGER, y VARCHAR, updated_at TIMESTAMP, PRIMARY KEY (x, y))",
        "CREATE TABLE b (id INTEGER PRIMARY KEY, ax INTEGER, ay VARCHAR, parent INTEGER, FOREIGN KEY (ax, ay) REFERENCES a (x, y))",
    )
    s = specs(lake_path)
    assert s["a"].primary_key == ("x", "y")
    assert s["a"].incremental_column == "updated_at"
    assert s["b"].foreign_keys == (ForeignKey("b", ("ax", "ay"), "a", ("x", "y")),)
    assert s["b"].incremental_column is None                  # no candidate column: the whole table each run


def test_metadata_wins_over_declared_constraints(lake_path):
    make_lake(
        lake_path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, code VARCHAR, changed TIMESTAMP, updated_at TIMESTAMP)",
        "CREATE TABLE table_metadata (table_name VARCHAR, schema_json VARCHAR)",
        """INSERT INTO table_metadata VALUES ('t', '{"primary_key": ["code"], "incremental_column": "changed"}')""",
    )
    t = specs(lake_path)["t"]
    assert t.primary_key == ("code",) and t.incremental_column == "changed"


@pytest.mark.parametrize("column", ["updated_at", "modified_at", "ultima_atualizacao"])
def test_incremental_column_is_detected_from_candidate_names(lake_path, column):
    make_lake(lake_path, f"CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR, {column} TIMESTAMP)")
    assert specs(lake_path)["t"].incremental_column == column


def test_incremental_column_override_by_setting(lake_path):
    make_lake(lake_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, versao BIGINT, updated_at TIMESTAMP)")
    assert specs(lake_path, incremental_columns={"t": "versao"})["t"].incremental_column == "versao"
    with pytest.raises(SourceModelError, match=r"t\.nope"):
        specs(lake_path, incremental_columns={"t": "nope"})
    with pytest.raises(SourceModelError, match="'ghost'"):
        specs(lake_path, incremental_columns={"ghost": "x"})


def test_incremental_column_of_a_non_orderable_type(lake_path):
    make_lake(lake_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at VARCHAR)",
              "CREATE TABLE u (id INTEGER PRIMARY KEY, changed VARCHAR)",
              "CREATE TABLE table_metadata (table_name VARCHAR, schema_json VARCHAR)",
              """INSERT INTO table_metadata VALUES ('u', '{"primary_key": ["id"], "incremental_column": "changed"}')""")
    s = specs(lake_path)
    assert s["t"].incremental_column is None and s["t"].problem is None      # a look-alike name is simply not a cursor
    assert "u.changed has type varchar" in s["u"].problem                   # named in the metadata: that table stops
    with pytest.raises(SourceModelError, match=r"t\.updated_at has type varchar"):
        specs(lake_path, incremental_columns={"t": "updated_at"})            # named in the settings: one line for the run


def test_table_without_primary_key_is_a_problem_of_that_table_unless_marked(lake_path):
    make_lake(lake_path, "CREATE TABLE eventos (quando TIMESTAMP, o_que VARCHAR, updated_at TIMESTAMP)",
              "CREATE TABLE dim (codigo VARCHAR, nome VARCHAR)", "CREATE TABLE boa (id INTEGER PRIMARY KEY)")
    s = specs(lake_path)
    msg = s["dim"].problem
    assert "has no primary key" in msg and "APPEND_ONLY_TABLES" in msg and "FULL_REPLACE_TABLES" in msg and "\n" not in msg
    assert s["boa"].problem is None
    s = specs(lake_path, append_only=frozenset({"eventos"}), full_replace=frozenset({"dim"}))
    assert s["eventos"].mode == APPEND and s["eventos"].incremental_column == "updated_at" and s["eventos"].problem is None
    assert s["dim"].mode == REPLACE and s["dim"].problem is None
    s = specs(lake_path, append_only=frozenset({"eventos", "dim"}))
    assert "append-only table 'dim' has no incremental column" in s["dim"].problem


def test_fk_metadata_pointing_at_missing_things_is_one_line(lake_path):
    make_lake(
        lake_path,
        "CREATE TABLE p (id INTEGER PRIMARY KEY)",
        "CREATE TABLE c (id INTEGER PRIMARY KEY, pid INTEGER)",
        "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
        "INSERT INTO fk_metadata VALUES ('c', 'pid', 'p', 'nope')",
    )
    with pytest.raises(SourceModelError, match=r"references p\.nope"):
        specs(lake_path)


def test_sample_lake_model(tmp_path):
    path = tmp_path / "sample.duckdb"
    bootstrap(path, scale=0.01, seed=1)
    s = specs(path)
    assert list(s) == ["clientes", "itens_pedido", "pagamentos", "pedidos"]
    assert s["pedidos"].foreign_keys == (ForeignKey("pedidos", ("id_cliente",), "clientes", ("id_cliente",)),)
    assert all(x.incremental_column == "updated_at" for x in s.values())


def test_missing_lake_file_is_one_line(tmp_path):
    with pytest.raises(LakeError) as info:
        lake.connect(tmp_path / "nope.duckdb")
    assert "lake file not found" in str(info.value) and "nw bootstrap" in str(info.value) and "\n" not in str(info.value)


def test_not_a_duckdb_file_is_one_line(tmp_path):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("this is a text file, not a database\n" * 200)
    with pytest.raises(LakeError) as info:
        lake.connect(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_truncated_lake_file_is_one_line(tmp_path):
    path = tmp_path / "lake.duckdb"
    bootstrap(path, scale=0.2, seed=1)
    data = path.read_bytes()
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(LakeError) as info:
        con = lake.connect(cut)
        try:  # the header may open; reading the blocks then fails
            for name in lake.read_specs(con):
                con.execute(f'SELECT * FROM "{name}"').fetchall()
        finally:
            con.close()
    assert "\n" not in str(info.value)


def test_two_single_column_fks_to_the_same_table_in_fk_metadata(lake_path):
    make_lake(
        lake_path,
        "CREATE TABLE clientes (id INTEGER PRIMARY KEY)",
        "CREATE TABLE transferencias (id INTEGER PRIMARY KEY, origem INTEGER, destino INTEGER)",
        "CREATE TABLE fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR)",
        "INSERT INTO fk_metadata VALUES ('transferencias', 'origem', 'clientes', 'id'), ('transferencias', 'destino', 'clientes', 'id')",
    )
    assert specs(lake_path)["transferencias"].foreign_keys == (
        ForeignKey("transferencias", ("origem",), "clientes", ("id",)),
        ForeignKey("transferencias", ("destino",), "clientes", ("id",)),
    )


def test_metadata_rows_name_the_table_duckdb_would_find(lake_path):
    """A row naming a table exactly wins over one matching it only ignoring case, whatever their order; a row for a
    table of a schema left out by LAKE_SCHEMAS never describes another table published under the same name."""
    def key(column):
        return json.dumps({"primary_key": [column]})
    make_lake(
        lake_path,
        "CREATE TABLE clientes (id INTEGER, codigo INTEGER)",
        "CREATE SCHEMA s", "CREATE TABLE s.t (id INTEGER, code INTEGER)", "CREATE TABLE s__t (id INTEGER, code INTEGER)",
        "CREATE TABLE table_metadata (table_name VARCHAR, schema_json JSON)",
        f"INSERT INTO table_metadata VALUES ('clientes', '{key('id')}'), ('CLIENTES', '{key('codigo')}'), "
        f"('s.t', '{key('code')}'), ('s__t', '{key('id')}')",
    )
    assert specs(lake_path)["clientes"].primary_key == ("id",)
    only_main = specs(lake_path, schemas=frozenset({"main"}))
    assert only_main["s__t"].primary_key == ("id",)          # was ("code",): the row for s.t, whose schema is not synced


def test_auto_memory_limit_grows_with_the_largest_table(tmp_path):
    """DUCKDB_MEMORY_LIMIT=auto (the default): up to 2.5M rows in the lake's largest table, 160 MB plus 20 bytes
    a row for its comparison in one join and 24 more for the (key, fingerprint) pairs kept for it; a larger table
    (compared in passes, its local copy written again) gets 64 MB plus the 8 bytes a row DuckDB keeps for the
    lake table's deletes, unless the session compares whole tables at once (nw verify); a size sets it outright."""
    from nwlib.lake import memory_limit, open_lake
    from nwlib.settings import load_settings

    path = tmp_path / "lake.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE small AS SELECT range AS id FROM range(10)")
    con.execute("CREATE TABLE big (id BIGINT PRIMARY KEY)")
    con.execute("INSERT INTO big SELECT range FROM range(3000000)")
    con.close()
    base = {"DUCKDB_PATH": str(path), "DESTINATION_PATH": str(tmp_path)}
    with open_lake(load_settings(env=base, dotenv=None)) as lake:
        assert abs(memory_limit(lake) - ((64 << 20) + 8 * 3_000_000)) < 4 << 20
    with open_lake(load_settings(env=base, dotenv=None), whole_tables=True) as lake:     # nw verify: whole tables at once
        assert abs(memory_limit(lake) - ((160 << 20) + (20 + 24) * 3_000_000)) < 4 << 20
    with open_lake(load_settings(env={**base, "DUCKDB_MEMORY_LIMIT": "96MB"}, dotenv=None)) as lake:
        assert memory_limit(lake) <= 96 << 20
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE big")
    con.execute("CREATE TABLE mid AS SELECT range AS id FROM range(1000000)")
    con.close()
    with open_lake(load_settings(env=base, dotenv=None)) as lake:
        assert abs(memory_limit(lake) - ((160 << 20) + (20 + 24) * 1_000_000)) < 4 << 20


def test_an_extension_loads_from_its_pypi_wheel_offline(tmp_path):
    """Nothing installed in DuckDB's extension folder: the duckdb-extension-<name> wheel is found by its name."""
    from nwlib.lake import load_extension

    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{tmp_path}'")
    with pytest.raises(duckdb.Error):
        con.execute("LOAD postgres_scanner")          # not installed here: only the wheel can provide it
    assert load_extension(con, "postgres_scanner")
    assert con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'postgres_scanner'").fetchone() == (True,)
