"""The DuckDB lake: opening it safely and reading its source model.

The model (columns, primary keys, foreign keys, incremental column, load mode)
comes from ``table_metadata`` / ``fk_metadata`` when the lake has them (the
original project's format), else from DuckDB's declared constraints.

``table_metadata(table_name, schema_json)``: ``schema_json`` is a JSON object
with optional keys ``primary_key`` (list), ``incremental_column``, ``mode``
(``merge``/``append``/``replace``) and ``columns`` (list of ``{name, type}``;
informative — the lake's real columns win).
``fk_metadata(table_name, column_name, ref_table, ref_column)``: one row per
column; a composite FK is several rows with the same (table, ref_table),
in rowid order.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb

from .errors import ConfigError, LakeError, SourceModelError, first_line
from .model import APPEND, MERGE, MODES, REPLACE, Column, ForeignKey, TableSpec
from .sql import ident
from .settings import Settings
from .typemap import UnsupportedType, pg_type

# The name the lake is attached under in a read-only session (see connect()).
LAKE_ALIAS = "lake"
# A sync streams rows out under this budget, so its memory stays flat in table size.
STREAM_MEMORY_LIMIT = "64MB"
METADATA_TABLES = ("table_metadata", "fk_metadata")
INCREMENTAL_CANDIDATES = (
    "updated_at", "modified_at", "ultima_atualizacao", "data_atualizacao", "atualizado_em",
    "data_alteracao", "last_modified", "last_updated", "updated", "modified",
)
ORDERABLE_CURSOR_TYPES = ("timestamp", "date", "integer", "bigint", "smallint", "ubigint", "uinteger", "hugeint", "decimal")


def connect(path: Path | str, read_only: bool = True, create: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the lake, turning DuckDB's failures into one clear line."""
    path = Path(path)
    if not path.exists() and not create:
        raise LakeError(f"lake file not found: {path}", "run `nw bootstrap` to create the sample lake, or set DUCKDB_PATH")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if read_only and not create:
            # An in-memory session with the lake attached read-only: the lake cannot
            # change under a run, and temporary work (verify, reconciliation) has a place.
            con = duckdb.connect()
            con.execute(f"ATTACH '{_sql_str(str(path))}' AS {LAKE_ALIAS} (READ_ONLY)")
            con.execute(f"USE {LAKE_ALIAS}")
        else:
            con = duckdb.connect(str(path))
        con.execute("SET TimeZone = 'UTC'")
        return con
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            raise LakeError(f"lake file {path} is locked by another process", "close the other writer (a notebook or `nw bootstrap`) and retry") from None
        raise LakeError(f"cannot open lake file {path}: {first_line(msg)}", "check that it is a DuckDB database file (run `nw bootstrap` to recreate the sample)") from None
    except duckdb.Error as exc:
        raise LakeError(f"cannot open lake file {path}: {first_line(exc)}", "the file may be truncated or from another DuckDB version; restore it or run `nw bootstrap`") from None


def _set_memory(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")


def _spill_to(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    con.execute(f"SET temp_directory = '{_sql_str(str(settings.destination_path / '.nw' / 'tmp'))}'")


def raise_memory(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Give a session DUCKDB_MEMORY_LIMIT for the joins that need it (kept to the end of the session)."""
    _set_memory(con, settings.duckdb_memory_limit)


@contextlib.contextmanager
def open_lake(settings: Settings, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The lake, read-only, with a small memory budget unless ``memory_limit`` says otherwise.

    A sync reads and streams at 64MB (DuckDB would otherwise cache lake blocks up to its
    limit, so memory would grow with the tables); it raises the budget to
    DUCKDB_MEMORY_LIMIT only for the joins of delete reconciliation.  Verify joins from the start.
    """
    con = connect(settings.duckdb_path, read_only=True)
    try:
        _set_memory(con, settings.duckdb_memory_limit)  # a malformed value fails here, before any work
        _set_memory(con, memory_limit or STREAM_MEMORY_LIMIT)
        _spill_to(con, settings)
    except duckdb.Error as exc:
        con.close()
        raise ConfigError(f"DUCKDB_MEMORY_LIMIT={settings.duckdb_memory_limit!r} is not valid ({first_line(exc)})",
                          "use a size such as 256MB or 2GB") from None
    try:
        yield con
    except duckdb.IOException as exc:
        # The header opened but a block did not read back: a truncated or damaged file (or a full disk).
        raise LakeError(f"DuckDB could not read a file while using the lake {settings.duckdb_path}: {first_line(exc)}",
                        "if that file is the lake it is truncated or damaged: restore it or run `nw bootstrap`; "
                        "otherwise check free disk space under DESTINATION_PATH") from None
    except duckdb.OutOfMemoryException as exc:
        raise ConfigError(f"DuckDB needed more memory than DUCKDB_MEMORY_LIMIT={settings.duckdb_memory_limit}",
                          "raise DUCKDB_MEMORY_LIMIT (e.g. 512MB) and rerun; committed tables are kept, the rest resumes") from exc
    finally:
        con.close()


def stream_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A second, small-budget view of the lake used only to stream rows out.

    Streaming needs no cache, and DuckDB caches every block it reads up to its memory
    limit: a separate instance capped at 64MB keeps a sync's memory flat in table size,
    while joins (deletes, verify) keep DUCKDB_MEMORY_LIMIT on the main connection.
    """
    con = connect(settings.duckdb_path, read_only=True)
    _set_memory(con, STREAM_MEMORY_LIMIT)
    _spill_to(con, settings)
    return con


def user_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal AND NOT temporary ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows if r[0] not in METADATA_TABLES]


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> tuple[Column, ...]:
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE database_name = current_database() AND schema_name='main' AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return tuple(Column(n, t, bool(nullable)) for n, t, nullable in rows)


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name='main' AND table_name=?", [name]).fetchone())


def _declared(con) -> tuple[dict[str, tuple[str, ...]], dict[str, list[ForeignKey]]]:
    pks: dict[str, tuple[str, ...]] = {}
    fks: dict[str, list[ForeignKey]] = defaultdict(list)
    rows = con.execute(
        "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
        "FROM duckdb_constraints() WHERE database_name = current_database() AND schema_name='main' AND constraint_type IN ('PRIMARY KEY','FOREIGN KEY') "
        "ORDER BY table_name, constraint_index"
    ).fetchall()
    for table, kind, cols, ref_table, ref_cols in rows:
        if kind == "PRIMARY KEY":
            pks[table] = tuple(cols)
        else:
            fks[table].append(ForeignKey(table, tuple(cols), ref_table, tuple(ref_cols)))
    return pks, fks


def _metadata(con) -> tuple[dict[str, dict], dict[str, list[ForeignKey]]]:
    meta: dict[str, dict] = {}
    if _has_table(con, "table_metadata"):
        for table, raw in con.execute("SELECT table_name, schema_json FROM table_metadata ORDER BY rowid").fetchall():
            try:
                data = json.loads(raw) if isinstance(raw, str) else (raw or {})
            except (TypeError, ValueError) as exc:
                raise SourceModelError(
                    f"table_metadata.schema_json for table {table!r} is not valid JSON ({getattr(exc, 'msg', exc)})",
                    "fix that row or delete it to fall back to the declared constraints",
                ) from None
            if isinstance(data, list):  # a bare list of columns
                data = {"columns": data}
            if not isinstance(data, dict):
                raise SourceModelError(f"table_metadata.schema_json for table {table!r} must be a JSON object", "write it as {\"primary_key\": [...], ...}")
            meta[table] = data
    fks: dict[str, list[ForeignKey]] = defaultdict(list)
    if _has_table(con, "fk_metadata"):
        grouped: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for t, c, rt, rc in con.execute("SELECT table_name, column_name, ref_table, ref_column FROM fk_metadata ORDER BY rowid").fetchall():
            if None in (t, c, rt, rc):
                raise SourceModelError(f"fk_metadata has an incomplete row ({t}, {c}, {rt}, {rc})", "fill every column or delete the row")
            grouped[(t, rt)].append((c, rc))
        for (t, rt), pairs in grouped.items():
            # Two FKs to the same table (origem → clientes.id, destino → clientes.id) share the group;
            # a composite FK never names a referenced column twice, so a repeat starts the next FK.
            chunks: list[list[tuple[str, str]]] = [[]]
            for pair in pairs:
                if any(pair[1] == q[1] for q in chunks[-1]):
                    chunks.append([])
                chunks[-1].append(pair)
            for chunk in chunks:
                fks[t].append(ForeignKey(t, tuple(p[0] for p in chunk), rt, tuple(p[1] for p in chunk)))
    return meta, fks


def read_specs(
    con: duckdb.DuckDBPyConnection,
    incremental_columns: Mapping[str, str] | None = None,
    append_only: frozenset[str] = frozenset(),
    full_replace: frozenset[str] = frozenset(),
) -> dict[str, TableSpec]:
    """The source model of every user table in the lake."""
    try:
        return _read_specs(con, incremental_columns or {}, append_only, full_replace)
    except duckdb.IOException as exc:  # the header opened but a block did not: a truncated or damaged file
        raise LakeError(f"the lake could not be read: {first_line(exc)}",
                        "the file is truncated or damaged: restore it or run `nw bootstrap`") from None


def _read_specs(con, incremental_columns: Mapping[str, str], append_only: frozenset[str], full_replace: frozenset[str]) -> dict[str, TableSpec]:
    tables = user_tables(con)
    known = set(tables)
    declared_pks, declared_fks = _declared(con)
    meta, meta_fks = _metadata(con)
    for name in list(incremental_columns) + sorted(append_only | full_replace):
        if name not in known:
            raise SourceModelError(f"settings name table {name!r}, which is not in the lake", f"fix the table name; lake tables: {', '.join(tables) or 'none'}")
    specs = {}
    for table in tables:
        cols = columns_of(con, table)
        names = {c.name for c in cols}
        for c in cols:
            try:
                pg_type(c.type)
            except (UnsupportedType, duckdb.Error):
                raise SourceModelError(f"table {table!r} column {c.name!r} has type {c.type}, which nwlib cannot load", "cast it to a supported type in a view or a new column") from None
        m = meta.get(table, {})
        pk = tuple(m.get("primary_key") or declared_pks.get(table, ()))
        if isinstance(m.get("primary_key"), str):
            pk = (m["primary_key"],)
        for c in pk:
            if c not in names:
                raise SourceModelError(f"primary key column {table}.{c} does not exist", "fix table_metadata or the table's PRIMARY KEY")
        fks = tuple(meta_fks.get(table) or declared_fks.get(table, ()))
        for fk in fks:
            if fk.ref_table not in known:
                raise SourceModelError(f"fk_metadata: {table}.{','.join(fk.columns)} references table {fk.ref_table!r}, which is not in the lake", "create that table or delete the fk_metadata row")
            for c in fk.columns:
                if c not in names:
                    raise SourceModelError(f"fk_metadata: column {table}.{c} does not exist", "fix the fk_metadata row")
            ref_names = {c.name for c in columns_of(con, fk.ref_table)}
            for c in fk.ref_columns:
                if c not in ref_names:
                    raise SourceModelError(f"fk_metadata: {table} references {fk.ref_table}.{c}, which does not exist", "fix the fk_metadata row")
        inc = incremental_columns.get(table) or m.get("incremental_column")
        if inc and inc not in names:
            raise SourceModelError(f"incremental column {table}.{inc} does not exist", "fix INCREMENTAL_COLUMNS or table_metadata")
        if not inc:
            inc = next((c for c in INCREMENTAL_CANDIDATES if c in names), None)
        if inc:
            ctype = next(c.type for c in cols if c.name == inc).lower()
            if not ctype.startswith(ORDERABLE_CURSOR_TYPES):
                raise SourceModelError(f"incremental column {table}.{inc} has type {ctype}", "use a timestamp, date or integer column as the incremental column")
        if table in append_only:
            mode = APPEND
        elif table in full_replace:
            mode = REPLACE
        else:
            mode = m.get("mode") or MERGE
        if mode not in MODES:
            raise SourceModelError(f"table_metadata for {table!r} has mode {mode!r}", f"use one of: {', '.join(MODES)}")
        if mode == MERGE and not pk:
            raise SourceModelError(
                f"table {table!r} has no primary key",
                "declare one (PRIMARY KEY or table_metadata.primary_key), or list it in APPEND_ONLY_TABLES or FULL_REPLACE_TABLES",
            )
        if mode == APPEND and not inc:
            raise SourceModelError(f"append-only table {table!r} has no incremental column", "set INCREMENTAL_COLUMNS for it, or use FULL_REPLACE_TABLES")
        specs[table] = TableSpec(table, cols, pk, fks, inc, mode)
    return specs


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]


# --- DuckDB extensions, offline first ------------------------------------------

_EXTENSION_PACKAGES = {"httpfs": "duckdb_extension_httpfs", "postgres_scanner": "duckdb_extension_postgres_scanner"}


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """LOAD an extension: already installed → PyPI package file → INSTALL from the internet.

    Returns False (never raises) when none works, so callers can fall back.
    """
    try:
        con.execute(f"LOAD {name}")
        return True
    except duckdb.Error:
        pass
    pkg = _EXTENSION_PACKAGES.get(name)
    spec = importlib.util.find_spec(pkg) if pkg else None
    if spec and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        for file in sorted(root.glob(f"extensions/v{duckdb.__version__}/*.duckdb_extension")):
            try:
                con.execute(f"INSTALL '{_sql_str(str(file))}'")  # our own package path, quoted
                con.execute(f"LOAD {name}")
                return True
            except duckdb.Error:
                break
    try:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
        return True
    except duckdb.Error:
        return False


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
