"""The source model: one :class:`~nwlib.model.TableSpec` per lake table.

Keys and foreign keys come from the lake's metadata tables (:mod:`.metadata`,
either format) when they describe a table, else from DuckDB's declared
constraints.  The incremental column is a setting, the metadata's, or the
first column named like ``updated_at``; the load mode is a setting, the
metadata's, or ``merge``.

A problem with one table (no primary key, a type nwlib cannot load, an
unusable incremental column named in the metadata) does not stop the others:
it is kept on that table's spec (``TableSpec.problem``, one line) and the run
reports that table as failed.  Settings that name what the lake lacks, and
metadata that does not add up across tables, stop the run with one line.
"""
from __future__ import annotations

from collections.abc import Mapping

import duckdb

from ..errors import LakeError, SourceModelError, first_line
from ..model import APPEND, MERGE, MODES, REPLACE, TableSpec
from ..typemap import UnsupportedType, pg_type
from .catalog import LakeTable, all_columns, declared_keys, lake_tables
from .metadata import TableMetadata, read_metadata

# The original loader's names first, then nw's additions; the first present is the incremental column.
INCREMENTAL_CANDIDATES = (
    "updated_at", "updated_on", "modified_at", "modified_on", "last_update", "last_updated", "created_at", "created_on",
    "ts_update", "dt_update", "ultima_atualizacao", "data_atualizacao", "atualizado_em", "data_alteracao", "last_modified",
    "updated", "modified",
)
ORDERABLE_CURSOR_TYPES = ("timestamp", "date", "integer", "bigint", "smallint", "ubigint", "uinteger", "hugeint", "decimal")


def read_specs(
    con: duckdb.DuckDBPyConnection,
    incremental_columns: Mapping[str, str] | None = None,
    append_only: frozenset[str] = frozenset(),
    full_replace: frozenset[str] = frozenset(),
    schemas: frozenset[str] | None = None,
) -> dict[str, TableSpec]:
    """The source model of every user table in the lake (in ``schemas``, when given), by published name."""
    try:
        return _read_specs(con, incremental_columns or {}, append_only, full_replace, schemas)
    except duckdb.IOException as exc:  # the header opened but a block did not: a truncated or damaged file
        raise LakeError(f"the lake could not be read: {first_line(exc)}",
                        "the file is truncated or damaged: restore it or run `nw bootstrap`") from None


def _read_specs(con, incremental_columns: Mapping[str, str], append_only: frozenset[str], full_replace: frozenset[str],
                schemas: frozenset[str] | None) -> dict[str, TableSpec]:
    every_table = lake_tables(con)
    tables = [t for t in every_table if schemas is None or t.schema in schemas]
    known: dict[str, LakeTable] = {}
    clashes: dict[str, str] = {}        # published name → the problem: two lake tables would be published under it
    for t in tables:
        if t.name in known:
            first = known[t.name]
            clashes[t.name] = (f"lake tables {first.schema}.{first.table} and {t.schema}.{t.table} are both published as {t.name!r}, "
                               f"so neither is synced — rename one of them (or leave schema {t.schema} out with LAKE_SCHEMAS)")
        else:
            known[t.name] = t
    tables = list(known.values())
    for name in list(incremental_columns) + sorted(append_only | full_replace):
        if name not in known:
            raise SourceModelError(f"settings name table {name!r}, which is not in the lake",
                                   f"fix the table name; lake tables: {', '.join(known) or 'none'}")
    every = all_columns(con)
    columns = {t.name: every.get(t, ()) for t in tables}
    declared_pks, declared_fks = declared_keys(con)
    meta = read_metadata(con, every_table, tables)
    specs = {}
    for t in tables:
        name, cols = t.name, columns[t.name]
        names = {c.name for c in cols}
        m = meta.get(name, TableMetadata())
        pk = m.primary_key or declared_pks.get(name, ())
        fks = m.foreign_keys or tuple(declared_fks.get(name, ()))
        for c in pk:
            if c not in names:
                raise SourceModelError(f"primary key column {name}.{c} does not exist", "fix table_metadata or the table's PRIMARY KEY")
        for fk in fks:
            if fk.ref_table not in columns:
                raise SourceModelError(f"fk_metadata: {name}.{','.join(fk.columns)} references table {fk.ref_table!r}, which is not in the lake",
                                       "create that table or delete the fk_metadata row")
            for c in fk.columns:
                if c not in names:
                    raise SourceModelError(f"fk_metadata: column {name}.{c} does not exist", "fix the fk_metadata row")
            ref_names = {c.name for c in columns[fk.ref_table]}
            for c in fk.ref_columns:
                if c not in ref_names:
                    raise SourceModelError(f"fk_metadata: {name} references {fk.ref_table}.{c}, which does not exist", "fix the fk_metadata row")
        if name in append_only:
            mode = APPEND
        elif name in full_replace:
            mode = REPLACE
        else:
            mode = m.mode or MERGE
        if mode not in MODES:
            raise SourceModelError(f"table_metadata for {name!r} has mode {mode!r}", f"use one of: {', '.join(MODES)}")
        problem = clashes.get(name) or _unsupported_type(name, cols)
        inc, inc_problem = _incremental(name, cols, incremental_columns.get(name), m.incremental_column)
        problem = problem or inc_problem
        if not problem and mode == MERGE and not pk:
            problem = (f"table {name!r} has no primary key — declare one (PRIMARY KEY, or primary_key in table_metadata), "
                       "or list it in APPEND_ONLY_TABLES or FULL_REPLACE_TABLES")
        if not problem and mode == APPEND and not inc:
            problem = f"append-only table {name!r} has no incremental column — set INCREMENTAL_COLUMNS for it, or use FULL_REPLACE_TABLES"
        enforced = bool(pk) and tuple(pk) == tuple(declared_pks.get(name, ()))
        specs[name] = TableSpec(name, cols, tuple(pk), tuple(fks), inc, mode, t.schema, t.table if t.table != name else None, problem,
                                enforced)
    return specs


def _unsupported_type(table: str, cols) -> str | None:
    for c in cols:
        try:
            pg_type(c.type)
        except (UnsupportedType, duckdb.Error):
            return f"table {table!r} column {c.name!r} has type {c.type}, which nwlib cannot load — cast it to a supported type in a view or a new column"
    return None


def _incremental(table: str, cols, from_settings: str | None, from_metadata: str | None) -> tuple[str | None, str | None]:
    """(incremental column, problem): a setting or the metadata must name a usable column; a candidate name
    of an unusable type is simply not a cursor."""
    types = {c.name: c.type.lower() for c in cols}
    named = from_settings or from_metadata
    if named:
        if named not in types:
            if from_settings:
                raise SourceModelError(f"incremental column {table}.{named} does not exist", "fix INCREMENTAL_COLUMNS")
            return None, f"incremental column {table}.{named} (table_metadata) does not exist — fix table_metadata"
        if not types[named].startswith(ORDERABLE_CURSOR_TYPES):
            msg = f"incremental column {table}.{named} has type {types[named]}"
            if from_settings:
                raise SourceModelError(msg, "use a timestamp, date or integer column as the incremental column")
            return None, msg + " — use a timestamp, date or integer column in table_metadata"
        return named, None
    found = next((c for c in INCREMENTAL_CANDIDATES if c in types and types[c].startswith(ORDERABLE_CURSOR_TYPES)), None)
    return found, None
