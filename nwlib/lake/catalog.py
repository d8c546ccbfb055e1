"""What DuckDB's catalog says about the lake: its tables in every schema, their columns, declared keys."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb

from ..model import Column, ForeignKey, published_name

METADATA_TABLES = ("table_metadata", "fk_metadata")


@dataclass(frozen=True)
class LakeTable:
    schema: str
    table: str

    @property
    def name(self) -> str:
        return published_name(self.schema, self.table)


def lake_tables(con: duckdb.DuckDBPyConnection) -> list[LakeTable]:
    """Every user table (views are not synced), the metadata tables left out; ``main`` first, then by schema."""
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT internal AND NOT temporary ORDER BY schema_name <> 'main', schema_name, table_name").fetchall()
    return [LakeTable(s, t) for s, t in rows if t not in METADATA_TABLES]


def user_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Published names of every user table."""
    return [t.name for t in lake_tables(con)]


def columns_of(con: duckdb.DuckDBPyConnection, table: str, schema: str = "main") -> tuple[Column, ...]:
    return all_columns(con).get(LakeTable(schema, table), ())


def all_columns(con: duckdb.DuckDBPyConnection) -> dict[LakeTable, tuple[Column, ...]]:
    """Every table's columns, in one query (a lake may have hundreds of tables)."""
    out: dict[LakeTable, list[Column]] = defaultdict(list)
    for s, t, n, typ, nullable in con.execute(
            "SELECT schema_name, table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE database_name = current_database() ORDER BY schema_name, table_name, column_index").fetchall():
        out[LakeTable(s, t)].append(Column(n, typ, bool(nullable)))
    return {t: tuple(cols) for t, cols in out.items()}


def has_table(con: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    return bool(con.execute("SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
                            "AND table_name = ?", [schema, name]).fetchone())


def declared_keys(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, tuple[str, ...]], dict[str, list[ForeignKey]]]:
    """PRIMARY KEY and FOREIGN KEY constraints declared in DuckDB, by published table name."""
    pks: dict[str, tuple[str, ...]] = {}
    fks: dict[str, list[ForeignKey]] = defaultdict(list)
    rows = con.execute(
        "SELECT schema_name, table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
        "FROM duckdb_constraints() WHERE database_name = current_database() AND constraint_type IN ('PRIMARY KEY','FOREIGN KEY') "
        "ORDER BY schema_name, table_name, constraint_index").fetchall()
    for schema, table, kind, cols, ref_table, ref_cols in rows:
        name = published_name(schema, table)
        if kind == "PRIMARY KEY":
            pks[name] = tuple(cols)
        else:  # DuckDB's foreign keys stay inside one schema
            fks[name].append(ForeignKey(name, tuple(cols), published_name(schema, ref_table), tuple(ref_cols)))
    return pks, fks
