"""nwlib.editing: hand edits of the lake (rows and tables) are validated and keep the metadata in step."""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from nwlib import editing, lake
from nwlib.bootstrap import bootstrap


@pytest.fixture
def small_lake(lake_path):
    bootstrap(lake_path, scale=0.05, seed=3)
    return lake_path


def _tables(path):
    con = lake.connect(path, read_only=True)
    try:
        return lake.user_tables(con)
    finally:
        con.close()


def _one(path, sql, params=()):
    con = lake.connect(path, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchone()
    finally:
        con.close()


def test_insert_update_delete_roundtrip(small_lake):
    before = _one(small_lake, "SELECT max(updated_at) FROM clientes")[0]
    new_id = _one(small_lake, "SELECT max(id_cliente) + 1 FROM clientes")[0]
    msg = editing.insert_row(small_lake, "clientes", {"id_cliente": str(new_id), "nome": "Zé d'Ávila", "email": "", "cidade": "Natal",
                                                      "estado": "RN", "data_cadastro": "2024-02-29", "updated_at": ""})
    assert f"id_cliente={new_id}" in msg
    row = _one(small_lake, "SELECT nome, email, data_cadastro, updated_at FROM clientes WHERE id_cliente = ?", [new_id])
    assert row[0] == "Zé d'Ávila" and row[1] is None and str(row[2]) == "2024-02-29"
    assert row[3] > before  # the incremental column is filled so the next sync picks the row up

    editing.update_row(small_lake, "clientes", {"id_cliente": str(new_id)}, {"nome": "Zé", "updated_at": "2000-01-01"})
    nome, stamp = _one(small_lake, "SELECT nome, updated_at FROM clientes WHERE id_cliente = ?", [new_id])
    assert nome == "Zé" and stamp >= row[3] and stamp.year > 2000  # bumped, never set back by hand

    editing.delete_row(small_lake, "clientes", {"id_cliente": new_id})
    assert _one(small_lake, "SELECT count(*) FROM clientes WHERE id_cliente = ?", [new_id])[0] == 0


@pytest.mark.parametrize("values, words", [
    ({"id_cliente": "1", "nome": "x"}, "already has a row with id_cliente=1"),
    ({"id_cliente": "abc"}, "not a valid BIGINT for column clientes.id_cliente"),
    ({"id_cliente": ""}, "primary key column clientes.id_cliente is empty"),
    ({"id_cliente": "999999", "idade": "3"}, "has no column 'idade'"),
    ({"id_cliente": "999999", "data_cadastro": "31/02/2024"}, "not a valid DATE"),
])
def test_insert_rejects_bad_rows(small_lake, values, words):
    with pytest.raises(editing.InputRejected, match=words.replace("(", r"\(")):
        editing.insert_row(small_lake, "clientes", values)


def test_foreign_keys_are_checked_both_ways(small_lake):
    with pytest.raises(editing.InputRejected, match="points to clientes id_cliente=987654, which does not exist"):
        editing.insert_row(small_lake, "pedidos", {"id_pedido": "987654", "id_cliente": "987654"})
    pedido = _one(small_lake, "SELECT id_pedido FROM itens_pedido LIMIT 1")[0]
    with pytest.raises(editing.InputRejected, match=r"row\(s\) of itens_pedido still point to pedidos"):
        editing.delete_row(small_lake, "pedidos", {"id_pedido": str(pedido)})
    with pytest.raises(editing.InputRejected, match="has no row with id_pedido=987654"):
        editing.update_row(small_lake, "pedidos", {"id_pedido": "987654"}, {"status": "pago"})


def test_create_add_drop_keep_metadata_in_step(small_lake):
    cols = editing.parse_columns("id BIGINT\nid_cliente BIGINT\nnota decimal(5, 1)")
    fks = editing.parse_foreign_keys("id_cliente -> clientes.id_cliente")
    editing.create_table(small_lake, "avaliacoes", cols, ["id"], fks)
    editing.add_column(small_lake, "avaliacoes", "comentario", "VARCHAR")
    con = lake.connect(small_lake, read_only=True)
    try:
        spec = lake.read_specs(con)["avaliacoes"]
        meta = json.loads(con.execute("SELECT schema_json FROM table_metadata WHERE table_name = 'avaliacoes'").fetchone()[0])
    finally:
        con.close()
    assert spec.primary_key == ("id",) and spec.incremental_column == "updated_at"
    assert [(fk.columns, fk.ref_table) for fk in spec.foreign_keys] == [(("id_cliente",), "clientes")]
    # written in the original project's form: keyed by column (nwlib.lake.metadata)
    assert list(meta) == ["id", "id_cliente", "nota", "updated_at", "comentario"]
    assert meta["id"] == {"data_type": "BIGINT", "primary_key": True, "foreign_key": None}
    assert meta["id_cliente"]["foreign_key"] == {"table": "clientes", "column": "id_cliente"}
    assert spec.column("nota").type == "DECIMAL(5,1)"

    editing.insert_row(small_lake, "avaliacoes", {"id": "1", "id_cliente": "1", "nota": "4.5"})
    with pytest.raises(editing.InputRejected, match="is referenced by avaliacoes"):
        editing.drop_table(small_lake, "clientes", "clientes")
    with pytest.raises(editing.InputRejected, match="was not confirmed"):
        editing.drop_table(small_lake, "avaliacoes", "avaliacao")
    editing.drop_table(small_lake, "avaliacoes", "avaliacoes")
    assert _one(small_lake, "SELECT count(*) FROM table_metadata WHERE table_name = 'avaliacoes'")[0] == 0
    assert _one(small_lake, "SELECT count(*) FROM fk_metadata WHERE table_name = 'avaliacoes'")[0] == 0
    assert "avaliacoes" not in _tables(small_lake)


@pytest.mark.parametrize("call, words", [
    (lambda p: editing.create_table(p, "1bad", [editing.NewColumn("id", "BIGINT")], ["id"]), "table name '1bad' is not valid"),
    (lambda p: editing.create_table(p, "clientes", [editing.NewColumn("id", "BIGINT")], ["id"]), "already exists"),
    (lambda p: editing.create_table(p, "t", [editing.NewColumn("id", "BIGINT")], []), "needs a primary key"),
    (lambda p: editing.create_table(p, "t", [editing.NewColumn("id", "BIGINT")], ["id"], [editing.NewForeignKey("id", "nope", "id")]),
     "references table 'nope'"),
    (lambda p: editing.parse_columns("id SERIAL"), "type 'SERIAL' is not supported"),
    (lambda p: editing.add_column(p, "clientes", "nome", "VARCHAR"), "already has a column 'nome'"),
    (lambda p: editing.add_column(p, "clientes", "x; DROP TABLE clientes", "VARCHAR"), "column name .* is not valid"),
])
def test_schema_changes_are_validated(small_lake, call, words):
    with pytest.raises(editing.InputRejected, match=words):
        call(small_lake)
    assert "clientes" in _tables(small_lake)


def test_an_edit_does_not_leave_the_lake_open(small_lake):
    editing.update_row(small_lake, "pedidos", {"id_pedido": "1"}, {"status": "entregue"})
    # A second process-level writer can open it at once: nothing was left holding the file.
    import duckdb

    con = duckdb.connect(str(small_lake))
    try:
        assert con.execute("SELECT status FROM pedidos WHERE id_pedido = 1").fetchone()[0] == "entregue"
        assert con.execute("SELECT updated_at FROM pedidos WHERE id_pedido = 1").fetchone()[0] > datetime(2025, 6, 1)
    finally:
        con.close()
