"""Reading many rows out of PostgreSQL fast: DuckDB's postgres extension (binary COPY, in C++).

Used to read back what a table holds (keys and fingerprints on a fresh machine,
every row for ``nw verify``) when the extension loads (the pinned
``duckdb-extension-postgres-scanner`` wheel, offline).  The password travels in
a DuckDB secret, never in SQL text or a connection string.  Any failure here —
no extension, a pooler that refuses what it does — returns None and the caller
reads through psycopg instead.
"""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import duckdb

from ...errors import reraise_interrupt
from ...lake import load_extension
from ...settings import Settings
from ...sql import ident

if TYPE_CHECKING:       # pyarrow is imported where rows move, not by a sync with nothing to send
    import pyarrow as pa

log = logging.getLogger("nwlib.postgres")

# libpq parameters that go into the ATTACH string (never the password)
_PASSED = ("host", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "connect_timeout")
# The memory of the DuckDB instance that reads PostgreSQL: rows only stream through it (the lake's session,
# DUCKDB_MEMORY_LIMIT, does the work), so a small budget; its allocator returns what it frees.
SCANNER_MEMORY = "48MB"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _libpq(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Scanner:
    def __init__(self, params: dict[str, str], settings: Settings):
        self.params, self.settings = params, settings
        self._con: duckdb.DuckDBPyConnection | None = None
        self._broken = False

    def _open(self) -> duckdb.DuckDBPyConnection | None:
        if self._con is not None or self._broken:
            return self._con
        try:
            params = {**self.params, "connect_timeout": str(self.settings.db_connect_timeout)}
            con = duckdb.connect()
            con.execute(f"SET memory_limit = '{SCANNER_MEMORY}'")
            con.execute("SET allocator_flush_threshold = '8MB'")
            if not load_extension(con, "postgres_scanner"):
                raise RuntimeError("the postgres extension did not load")
            con.execute("SET pg_connection_limit = 1")      # one connection: works behind a transaction pooler too
            con.execute("SET pg_use_ctid_scan = false")
            if params.get("password"):
                # CREATE SECRET takes no bound parameters: the value is quoted as an SQL string.
                con.execute(f"CREATE TEMPORARY SECRET nw_pg (TYPE postgres, PASSWORD {_literal(params['password'])})")
            dsn = " ".join(f"{k}={_libpq(params[k])}" for k in _PASSED if k in params)
            con.execute(f"ATTACH {_literal(dsn)} AS nw_pg (TYPE postgres, READ_ONLY{', SECRET nw_pg' if params.get('password') else ''})")
            self._con = con
        except Exception as exc:  # noqa: BLE001 - any failure means "read the other way"
            reraise_interrupt(exc)
            log.debug("postgres extension not used: %s", self.settings.redact(str(exc)))
            self._broken = True
            self.close()
        return self._con

    def read(self, sql: str, batch_rows: int) -> pa.RecordBatchReader | None:
        """The rows of ``sql`` (run by PostgreSQL) as Arrow batches, or None when this way is not available."""
        con = self._open()
        if con is None:
            return None
        try:
            return con.execute(f"SELECT * FROM postgres_query('nw_pg', {_literal(sql)})").to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            reraise_interrupt(exc)
            log.debug("postgres extension read failed: %s", self.settings.redact(str(exc)))
            self._broken = True
            self.close()
            return None

    def scan_table(self, schema: str, table: str, columns: list[str], batch_rows: int) -> pa.RecordBatchReader | None:
        """Columns of a table as they are (a table scan: about three times faster than the same SELECT through
        ``postgres_query``), or None when this way is not available."""
        con = self._open()
        if con is None:
            return None
        try:
            cols = ", ".join(ident(c) for c in columns)
            return con.execute(f"SELECT {cols} FROM nw_pg.{ident(schema)}.{ident(table)}").to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            log.debug("postgres extension scan failed: %s", self.settings.redact(str(exc)))
            self._broken = True
            self.close()
            return None

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
        self._con = None
