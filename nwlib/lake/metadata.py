"""The lake's own description of its tables: ``table_metadata`` and ``fk_metadata``, in either format.

``table_metadata(table_name, schema_json)`` — ``schema_json`` is a JSON object in one of two forms:

* **the original NW-Data form**, keyed by column name, each value describing that column::

      {"id_pedido":  {"data_type": "INTEGER", "primary_key": true,  "foreign_key": null},
       "id_cliente": {"data_type": "INTEGER", "primary_key": false,
                      "foreign_key": {"table": "clientes", "column": "id_cliente"}}}

  Primary-key columns in key order make the (composite) key; ``foreign_key``
  names the referenced table and column.  nw also reads an optional
  ``"incremental": true`` on one column (the original loader ignores unknown keys).
* **nw's form**, keyed by setting: ``{"primary_key": [...], "incremental_column": "…",
  "mode": "merge"|"append"|"replace", "columns": [{"name", "type"}]}`` (``columns`` is
  informative; a bare list of columns is accepted too).

A value is read as the original form when every entry is an object carrying
``data_type``, ``primary_key`` or ``foreign_key``.  In both forms ``data_type``
/ ``columns`` are informative: the lake's real columns win.

``fk_metadata(table_name, column_name, ref_table, ref_column)`` — one row per
referencing column; a composite FK is several rows with the same (table,
ref_table) in rowid order, and a repeated referenced column starts the next FK
(``origem`` and ``destino`` both → ``clientes.id``).  The same FK may also be in
``schema_json``: it is counted once.

Table names are as DuckDB lists them in ``main``; a table in another schema is
``schema.table`` (or its published name ``schema__table``).  Like DuckDB (through
which the original loader read them), a name that matches no table exactly
matches the one table it names ignoring case; a table whose own name holds a dot
(``"vendas.2024"`` in ``main``) is found by that name first.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import duckdb

from ..errors import SourceModelError
from ..model import ForeignKey, published_name
from .catalog import LakeTable, has_table

ORIGINAL_KEYS = ("data_type", "primary_key", "foreign_key")


@dataclass(frozen=True)
class TableMetadata:
    primary_key: tuple[str, ...] = ()
    incremental_column: str | None = None
    mode: str | None = None
    foreign_keys: tuple[ForeignKey, ...] = ()
    original_format: bool = False


def table_name(raw: str) -> str:
    """A metadata table name as a published name: ``t``, ``s.t`` → ``s__t``."""
    schema, dot, table = raw.partition(".")
    return published_name(schema, table) if dot else raw


def resolver(tables: Iterable[LakeTable]) -> Callable[[str], tuple[LakeTable | None, bool]]:
    """Metadata table name → (the lake table it names, as DuckDB would find it, and whether by its exact name): a
    table of ``main`` by its own name, then ``schema.table``, then a published ``schema__table``; else the only
    table it names ignoring case; (None, False) when it names none of ``tables``."""
    exact: dict[str, list[LakeTable]] = defaultdict(list)
    for t in tables:            # by its published name (a table of main: its own), and as schema.table
        exact[t.name].append(t)
        exact[f"{t.schema}.{t.table}"].append(t)
    folded: dict[str, set[LakeTable]] = defaultdict(set)
    for name, found in exact.items():
        folded[name.lower()].update(found)

    def resolve(raw: str) -> tuple[LakeTable | None, bool]:
        if exact.get(raw):
            return exact[raw][0], True
        found = folded.get(raw.lower(), set())
        return (next(iter(found)), False) if len(found) == 1 else (None, False)
    return resolve


def group_foreign_keys(table: str, pairs: Iterable[tuple[str, str, str]]) -> list[ForeignKey]:
    """(column, ref_table, ref_column) in order → FKs: grouped by referenced table; a repeated
    referenced column starts the next FK (a composite FK never names one twice)."""
    grouped: dict[str, list[list[tuple[str, str]]]] = defaultdict(lambda: [[]])
    for column, ref_table, ref_column in pairs:
        chunks = grouped[ref_table]
        if any(ref_column == q[1] for q in chunks[-1]):
            chunks.append([])
        chunks[-1].append((column, ref_column))
    return [ForeignKey(table, tuple(c for c, _ in chunk), ref, tuple(r for _, r in chunk))
            for ref, chunks in grouped.items() for chunk in chunks if chunk]


def is_original_format(data: dict) -> bool:
    return bool(data) and all(isinstance(v, dict) and any(k in v for k in ORIGINAL_KEYS) for v in data.values())


def _original(table: str, data: dict, resolve: Callable[[str], str] = table_name) -> TableMetadata:
    pk, incremental, refs = [], None, []
    for column, info in data.items():
        flag = info.get("primary_key", False)
        if not isinstance(flag, bool):
            raise SourceModelError(f"table_metadata for {table!r}: column {column!r} has primary_key={flag!r}",
                                   "write true or false")
        if flag:
            pk.append(column)
        if info.get("incremental") is True:
            incremental = column
        fk = info.get("foreign_key")
        if fk is None:
            continue
        if not (isinstance(fk, dict) and isinstance(fk.get("table"), str) and isinstance(fk.get("column"), str)):
            raise SourceModelError(f"table_metadata for {table!r}: column {column!r} has foreign_key={json.dumps(fk)}",
                                   'write {"table": "<referenced table>", "column": "<referenced column>"} or null')
        refs.append((column, resolve(fk["table"]), fk["column"]))
    return TableMetadata(tuple(pk), incremental, None, tuple(group_foreign_keys(table, refs)), original_format=True)


def _nw(table: str, data: dict) -> TableMetadata:
    pk = data.get("primary_key") or ()
    if isinstance(pk, str):
        pk = (pk,)
    if not (isinstance(pk, (list, tuple)) and all(isinstance(c, str) for c in pk)):
        raise SourceModelError(f"table_metadata for {table!r} has primary_key={json.dumps(pk)}", 'write a list of column names, e.g. ["id"]')
    return TableMetadata(tuple(pk), data.get("incremental_column") or None, data.get("mode") or None)


def _parse(table: str, raw, resolve: Callable[[str], str] = table_name) -> TableMetadata:
    try:
        data = json.loads(raw) if isinstance(raw, str) else (raw or {})
    except (TypeError, ValueError) as exc:
        raise SourceModelError(f"table_metadata.schema_json for table {table!r} is not valid JSON ({getattr(exc, 'msg', exc)})",
                               "fix that row or delete it to fall back to the declared constraints") from None
    if isinstance(data, list):  # a bare list of columns
        data = {"columns": data}
    if not isinstance(data, dict):
        raise SourceModelError(f"table_metadata.schema_json for table {table!r} must be a JSON object",
                               'write it keyed by column ({"id": {"data_type": "INTEGER", "primary_key": true}}) or as {"primary_key": [...]}')
    return _original(table, data, resolve) if is_original_format(data) else _nw(table, data)


def original_schema_json(columns: Iterable[tuple[str, str]], primary_key: Iterable[str],
                         foreign_keys: Iterable[tuple[str, str, str]] = ()) -> dict:
    """``schema_json`` in the original NW-Data form: (name, DuckDB type) per column, key columns,
    (column, referenced table, referenced column) per referencing column."""
    pk = set(primary_key)
    refs = {c: {"table": t, "column": rc} for c, t, rc in foreign_keys}
    return {name: {"data_type": typ, "primary_key": name in pk, "foreign_key": refs.get(name)} for name, typ in columns}


def read_metadata(con: duckdb.DuckDBPyConnection, tables: Iterable[LakeTable] = (),
                  synced: Iterable[LakeTable] | None = None) -> dict[str, TableMetadata]:
    """Each described table's metadata (both tables, both formats), by published name.  Names are matched against
    the lake's ``tables`` (see :func:`resolver`); rows naming a table outside ``synced`` (when given) are left out,
    so that they never describe another table published under the same name."""
    find = resolver(tables)
    kept = None if synced is None else set(synced)
    exact: set[str] = set()         # tables described by a row naming them exactly: a row matching by case adds nothing

    def resolve(raw: str) -> str:
        found = find(raw)[0]
        return table_name(raw) if found is None else found.name

    def skipped(found: LakeTable | None) -> bool:
        return found is not None and kept is not None and found not in kept

    out: dict[str, TableMetadata] = {}
    if has_table(con, "table_metadata"):
        for table, raw in con.execute("SELECT table_name, schema_json FROM table_metadata ORDER BY rowid").fetchall():
            found, by_name = find(table)
            name = table_name(table) if found is None else found.name
            if skipped(found) or (name in exact and not by_name):
                continue
            if by_name:
                exact.add(name)
            out[name] = _parse(table, raw, resolve)
    if has_table(con, "fk_metadata"):
        rows: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for t, c, rt, rc in con.execute("SELECT table_name, column_name, ref_table, ref_column FROM fk_metadata ORDER BY rowid").fetchall():
            if None in (t, c, rt, rc):
                raise SourceModelError(f"fk_metadata has an incomplete row ({t}, {c}, {rt}, {rc})", "fill every column or delete the row")
            if skipped(find(t)[0]):
                continue
            rows[resolve(t)].append((c, resolve(rt), rc))
        for table, pairs in rows.items():
            meta = out.get(table, TableMetadata())
            known = {(fk.columns, fk.ref_table, fk.ref_columns) for fk in meta.foreign_keys}
            extra = tuple(fk for fk in group_foreign_keys(table, pairs) if (fk.columns, fk.ref_table, fk.ref_columns) not in known)
            out[table] = TableMetadata(meta.primary_key, meta.incremental_column, meta.mode, meta.foreign_keys + extra, meta.original_format)
    return out
