"""Changing the lake by hand: rows (insert/update/delete) and tables (create/add column/drop).

Used by the dashboard's Edit and Schemas tabs.  Each call opens the lake
writable, does one validated change in one transaction and closes it again, so
a sync is never blocked for longer than the change itself.  ``table_metadata``
and ``fk_metadata`` (format in :mod:`nwlib.lake`) are kept in step with the
tables.  Values are always bound parameters; identifiers go through
:func:`nwlib.sql.ident`; types come from a fixed list or the lake's catalog.
"""
from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb

from . import lake
from .lake.metadata import is_original_format
from .errors import InputRejected
from .model import TableSpec
from .sql import ident

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TYPES = ("BIGINT", "INTEGER", "SMALLINT", "DOUBLE", "DECIMAL(18,2)", "DECIMAL(12,2)", "VARCHAR", "BOOLEAN", "DATE",
         "TIMESTAMP", "TIMESTAMPTZ", "UUID", "JSON")
_DECIMAL_RE = re.compile(r"^DECIMAL\((\d{1,2}),(\d{1,2})\)$")


@dataclass(frozen=True)
class NewColumn:
    name: str
    type: str


@dataclass(frozen=True)
class NewForeignKey:
    column: str
    ref_table: str
    ref_column: str


@contextlib.contextmanager
def writable(path: Path | str) -> Iterator[duckdb.DuckDBPyConnection]:
    """The lake opened writable for one change, closed right after."""
    con = lake.connect(path, read_only=False)
    try:
        yield con
    finally:
        con.close()


def _specs(con) -> dict[str, TableSpec]:
    # No settings here: the lake's own metadata decides keys and cursors (as `nw sync` would by default).
    from .errors import SourceModelError
    try:
        return lake.read_specs(con)
    except SourceModelError:
        # A table without a key is still editable by its columns; fall back to the raw catalog.
        return {t.name: TableSpec(t.name, lake.columns_of(con, t.table, t.schema), lake_schema=t.schema,
                                  lake_table=t.table if t.table != t.name else None) for t in lake.lake_tables(con)}


def _spec(con, table: str) -> TableSpec:
    specs = _specs(con)
    if table not in specs:
        raise InputRejected(f"table {table!r} is not in the lake", f"choose one of: {', '.join(specs) or 'none'}")
    return specs[table]


def check_name(kind: str, name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise InputRejected(f"{kind} name {name!r} is not valid", "use letters, digits and _ (not starting with a digit), up to 63 characters")
    if name.lower() in lake.METADATA_TABLES:
        raise InputRejected(f"{kind} name {name!r} is reserved for the lake's metadata", "choose another name")
    return name


def check_type(raw: str) -> str:
    t = re.sub(r"\s+", "", (raw or "").upper())
    m = _DECIMAL_RE.match(t)
    if t in TYPES or (m and 1 <= int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1))):
        return t
    raise InputRejected(f"type {raw!r} is not supported here", f"use one of: {', '.join(TYPES)} (or DECIMAL(p,s))")


# --- rows ------------------------------------------------------------------------

def _clean(spec: TableSpec, values: Mapping[str, object]) -> dict[str, object]:
    """Unknown columns refused; '' → NULL; each value checked against its column's type."""
    out: dict[str, object] = {}
    for name, value in values.items():
        try:
            col = spec.column(name)
        except KeyError:
            raise InputRejected(f"table {spec.name!r} has no column {name!r}", f"columns: {', '.join(spec.column_names)}") from None
        if isinstance(value, str) and value.strip() == "":
            value = None
        out[col.name] = value
    return out


def _check_types(con, spec: TableSpec, values: Mapping[str, object]) -> None:
    for name, value in values.items():
        if value is None:
            continue
        ctype = spec.column(name).type  # from the lake's catalog
        try:
            con.execute(f"SELECT CAST(? AS {ctype})", [value]).fetchone()
        except duckdb.Error:
            raise InputRejected(f"value {str(value)[:60]!r} is not a valid {ctype} for column {spec.name}.{name}",
                                "correct the value (dates as 2024-01-31, timestamps as 2024-01-31 12:00:00)") from None


def _key(spec: TableSpec, key: Mapping[str, object]) -> dict[str, object]:
    if not spec.primary_key:
        raise InputRejected(f"table {spec.name!r} has no primary key, so a row cannot be addressed", "declare a primary key in table_metadata")
    out = {}
    for k in spec.primary_key:
        v = key.get(k)
        if v is None or (isinstance(v, str) and not v.strip()):
            raise InputRejected(f"primary key column {spec.name}.{k} is empty", f"fill in {', '.join(spec.primary_key)}")
        out[k] = v.strip() if isinstance(v, str) else v
    return out


def _where_key(spec: TableSpec, key: Mapping[str, object]) -> tuple[str, list]:
    return " AND ".join(f"{ident(k)} = ?" for k in spec.primary_key), [key[k] for k in spec.primary_key]


def _describe_key(key: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def _check_parents(con, spec: TableSpec, row: Mapping[str, object]) -> None:
    specs = _specs(con) if spec.foreign_keys else {}
    for fk in spec.foreign_keys:
        vals = [row.get(c) for c in fk.columns]
        if any(v is None for v in vals):
            continue
        cond = " AND ".join(f"{ident(rc)} = ?" for rc in fk.ref_columns)
        if not con.execute(f"SELECT 1 FROM {specs[fk.ref_table].source} WHERE {cond} LIMIT 1", vals).fetchone():
            shown = ", ".join(f"{rc}={v}" for rc, v in zip(fk.ref_columns, vals))
            raise InputRejected(f"{spec.name}.{','.join(fk.columns)} points to {fk.ref_table} {shown}, which does not exist",
                                f"insert that {fk.ref_table} row first or pick an existing one")


def _check_not_null(spec: TableSpec, row: Mapping[str, object]) -> None:
    for c in spec.columns:
        if not c.nullable and c.name not in spec.primary_key and c.name in row and row[c.name] is None:
            raise InputRejected(f"column {spec.name}.{c.name} may not be empty", "fill it in")


def _bump(con, spec: TableSpec) -> object | None:
    """The next value of the table's incremental column: now (UTC) for times, max + 1 for numbers."""
    inc = spec.incremental_column
    if not inc:
        return None
    t = spec.column(inc).type.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return datetime.now(timezone.utc)
    if t.startswith("TIMESTAMP"):
        return datetime.now(timezone.utc).replace(tzinfo=None)
    if t == "DATE":
        return date.today()
    return con.execute(f"SELECT coalesce(max({ident(inc)}), 0) + 1 FROM {spec.source}").fetchone()[0]


def get_row(path: Path | str, table: str, key: Mapping[str, object]) -> dict[str, object] | None:
    con = lake.connect(path, read_only=True)
    try:
        spec = _spec(con, table)
        k = _key(spec, key)
        _check_types(con, spec, k)
        where, params = _where_key(spec, k)
        cur = con.execute(f"SELECT * FROM {spec.source} WHERE {where}", params)
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None
    finally:
        con.close()


def insert_row(path: Path | str, table: str, values: Mapping[str, object]) -> str:
    with writable(path) as con:
        spec = _spec(con, table)
        row = _clean(spec, values)
        key = _key(spec, row) if spec.primary_key else {}
        _check_types(con, spec, row)
        _check_not_null(spec, {c.name: row.get(c.name) for c in spec.columns})
        if key:
            where, params = _where_key(spec, key)
            if con.execute(f"SELECT 1 FROM {spec.source} WHERE {where}", params).fetchone():
                raise InputRejected(f"{table} already has a row with {_describe_key(key)}", "use Update to change it, or pick a new key")
        _check_parents(con, spec, row)
        inc = spec.incremental_column
        if inc and row.get(inc) is None:
            row[inc] = _bump(con, spec)
        row = {k: v for k, v in row.items() if v is not None}
        cols = list(row)
        con.execute(f"INSERT INTO {spec.source} ({', '.join(ident(c) for c in cols)}) VALUES ({', '.join('?' for _ in cols)})",
                    [row[c] for c in cols])
        return f"inserted into {table}: {_describe_key(key) if key else 'one row'}"


def update_row(path: Path | str, table: str, key: Mapping[str, object], values: Mapping[str, object]) -> str:
    """Change the given columns of one row and bump its incremental column so the next sync sends it."""
    with writable(path) as con:
        spec = _spec(con, table)
        k = _key(spec, _clean(spec, key))
        changes = {c: v for c, v in _clean(spec, values).items() if c not in spec.primary_key and c != spec.incremental_column}
        _check_types(con, spec, {**k, **changes})
        where, params = _where_key(spec, k)
        cur = con.execute(f"SELECT * FROM {spec.source} WHERE {where}", params)
        current = cur.fetchone()
        if not current:
            raise InputRejected(f"{table} has no row with {_describe_key(k)}", "load an existing row first")
        merged = {**dict(zip([d[0] for d in cur.description], current)), **changes}
        _check_not_null(spec, merged)
        _check_parents(con, spec, merged)
        if spec.incremental_column:
            changes[spec.incremental_column] = _bump(con, spec)
        if not changes:
            raise InputRejected(f"nothing to change in {table}", "edit a column other than the key")
        sets = ", ".join(f"{ident(c)} = ?" for c in changes)
        con.execute(f"UPDATE {spec.source} SET {sets} WHERE {where}", list(changes.values()) + params)
        bumped = f" ({spec.incremental_column} bumped)" if spec.incremental_column else ""
        return f"updated {table} {_describe_key(k)}{bumped}"


def delete_row(path: Path | str, table: str, key: Mapping[str, object]) -> str:
    """Delete one row; refused while child rows still point to it (delete those first)."""
    with writable(path) as con:
        specs = _specs(con)
        if table not in specs:
            raise InputRejected(f"table {table!r} is not in the lake", f"choose one of: {', '.join(specs) or 'none'}")
        spec = specs[table]
        k = _key(spec, _clean(spec, key))
        _check_types(con, spec, k)
        where, params = _where_key(spec, k)
        if not con.execute(f"SELECT 1 FROM {spec.source} WHERE {where}", params).fetchone():
            raise InputRejected(f"{table} has no row with {_describe_key(k)}", "load an existing row first")
        for child in specs.values():
            for fk in child.foreign_keys:
                if fk.ref_table != table or child.name == table and all(c in spec.primary_key for c in fk.columns):
                    continue
                ref = con.execute(f"SELECT {', '.join(ident(c) for c in fk.ref_columns)} FROM {spec.source} WHERE {where}", params).fetchone()
                cond = " AND ".join(f"{ident(c)} = ?" for c in fk.columns)
                n = con.execute(f"SELECT count(*) FROM {child.source} WHERE {cond}", list(ref)).fetchone()[0]
                if n:
                    raise InputRejected(f"{n} row(s) of {child.name} still point to {table} {_describe_key(k)}",
                                        f"delete those {child.name} rows first (children before parents)")
        con.execute(f"DELETE FROM {spec.source} WHERE {where}", params)
        return f"deleted from {table}: {_describe_key(k)}"


# --- tables ----------------------------------------------------------------------

def parse_columns(text: str) -> list[NewColumn]:
    """``name TYPE`` per line (or comma-separated)."""
    out = []
    for item in filter(None, (x.strip() for x in re.split(r"[\n;]+", text or ""))):
        parts = item.split(None, 1)
        if len(parts) != 2:
            raise InputRejected(f"column line {item!r} needs a name and a type", "write one `name TYPE` per line, e.g. `id BIGINT`")
        out.append(NewColumn(check_name("column", parts[0]), check_type(parts[1])))
    return out


def parse_foreign_keys(text: str) -> list[NewForeignKey]:
    """``column -> table.column`` per line."""
    out = []
    for item in filter(None, (x.strip() for x in (text or "").splitlines())):
        m = re.match(r"^(\w+)\s*->\s*(\w+)\.(\w+)$", item)
        if not m:
            raise InputRejected(f"foreign key line {item!r} is not `column -> table.column`", "e.g. `id_pedido -> pedidos.id_pedido`")
        out.append(NewForeignKey(m.group(1), m.group(2), m.group(3)))
    return out


def _ensure_metadata(con) -> None:
    """The metadata tables as the original project declares them (format: nwlib.lake.metadata)."""
    con.execute("CREATE TABLE IF NOT EXISTS table_metadata (table_name VARCHAR PRIMARY KEY, schema_json JSON)")
    con.execute("CREATE TABLE IF NOT EXISTS fk_metadata (table_name VARCHAR, column_name VARCHAR, ref_table VARCHAR, ref_column VARCHAR, "
                "PRIMARY KEY (table_name, column_name))")


def create_table(path: Path | str, name: str, columns: Sequence[NewColumn], primary_key: Sequence[str],
                 foreign_keys: Sequence[NewForeignKey] = (), add_updated_at: bool = True) -> str:
    name = check_name("table", name)
    cols = list(columns)
    if not cols:
        raise InputRejected(f"table {name!r} has no columns", "add at least one `name TYPE` line")
    if add_updated_at and "updated_at" not in {c.name for c in cols}:
        cols.append(NewColumn("updated_at", "TIMESTAMP"))
    names = [c.name for c in cols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputRejected(f"table {name!r} lists column {dup[0]!r} twice", "give each column a distinct name")
    pk = [p.strip() for p in primary_key if p.strip()]
    if not pk:
        raise InputRejected(f"table {name!r} needs a primary key", "name its key column(s), e.g. id")
    for p in pk:
        if p not in names:
            raise InputRejected(f"primary key column {name}.{p} is not among the columns", f"columns: {', '.join(names)}")
    with writable(path) as con:
        existing = lake.user_tables(con)
        if name in existing:
            raise InputRejected(f"table {name!r} already exists in the lake", "choose another name or drop it first")
        for fk in foreign_keys:
            if fk.column not in names:
                raise InputRejected(f"foreign key column {name}.{fk.column} is not among the columns", f"columns: {', '.join(names)}")
            if fk.ref_table not in existing:
                raise InputRejected(f"foreign key {name}.{fk.column} references table {fk.ref_table!r}, which is not in the lake",
                                    f"choose one of: {', '.join(existing)}")
            if fk.ref_column not in {c.name for c in lake.columns_of(con, fk.ref_table)}:
                raise InputRejected(f"foreign key {name}.{fk.column} references {fk.ref_table}.{fk.ref_column}, which does not exist",
                                    "name an existing column (usually its primary key)")
        body = ", ".join(f"{ident(c.name)} {c.type}" + (" NOT NULL" if c.name in pk else "") for c in cols)
        meta = lake.original_schema_json([(c.name, c.type) for c in cols], pk,
                                         [(fk.column, fk.ref_table, fk.ref_column) for fk in foreign_keys])
        con.execute("BEGIN")
        try:
            con.execute(f"CREATE TABLE {ident(name)} ({body}, PRIMARY KEY ({', '.join(ident(p) for p in pk)}))")
            _ensure_metadata(con)
            con.execute("DELETE FROM table_metadata WHERE table_name = ?", [name])
            con.execute("DELETE FROM fk_metadata WHERE table_name = ?", [name])
            con.execute("INSERT INTO table_metadata VALUES (?, ?)", [name, json.dumps(meta)])
            for fk in foreign_keys:
                con.execute("INSERT INTO fk_metadata VALUES (?, ?, ?, ?)", [name, fk.column, fk.ref_table, fk.ref_column])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return f"created table {name} ({len(cols)} columns, key {', '.join(pk)})"


def add_column(path: Path | str, table: str, column: str, ctype: str) -> str:
    column = check_name("column", column)
    ctype = check_type(ctype)
    with writable(path) as con:
        if table not in lake.user_tables(con):
            raise InputRejected(f"table {table!r} is not in the lake", "pick an existing table")
        if column in {c.name for c in lake.columns_of(con, table)}:
            raise InputRejected(f"table {table} already has a column {column!r}", "choose another name")
        con.execute("BEGIN")
        try:
            con.execute(f"ALTER TABLE {ident(table)} ADD COLUMN {ident(column)} {ctype}")
            row = None
            if con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND table_name = 'table_metadata'").fetchone():
                row = con.execute("SELECT schema_json FROM table_metadata WHERE table_name = ?", [table]).fetchone()
            if row:
                meta = json.loads(row[0]) if row[0] else {}
                if isinstance(meta, list):
                    meta = {"columns": meta}
                if is_original_format(meta):
                    meta[column] = {"data_type": ctype, "primary_key": False, "foreign_key": None}
                else:
                    meta.setdefault("columns", [])
                    meta["columns"].append({"name": column, "type": ctype})
                con.execute("UPDATE table_metadata SET schema_json = ? WHERE table_name = ?", [json.dumps(meta), table])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return f"added column {table}.{column} {ctype} (the next sync sends the table in full)"


def drop_table(path: Path | str, table: str, confirm: str) -> str:
    """Drop a lake table; ``confirm`` must repeat its name.  Refused while other tables reference it."""
    if (confirm or "").strip() != table:
        raise InputRejected(f"dropping {table!r} was not confirmed", f"type the table name {table!r} in the confirmation box")
    with writable(path) as con:
        specs = _specs(con)
        if table not in specs:
            raise InputRejected(f"table {table!r} is not in the lake", "pick an existing table")
        refs = sorted({s.name for s in specs.values() for fk in s.foreign_keys if fk.ref_table == table and s.name != table})
        if refs:
            raise InputRejected(f"table {table!r} is referenced by {', '.join(refs)}", "drop those tables (or their foreign keys) first")
        con.execute("BEGIN")
        try:
            con.execute(f"DROP TABLE {ident(table)}")
            for meta in lake.METADATA_TABLES:
                if con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?", [meta]).fetchone():
                    con.execute(f"DELETE FROM {ident(meta)} WHERE table_name = ?", [table])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return f"dropped table {table} (the destination keeps its copy)"
