"""Opening the lake file: read-only by default, one clear line when it is missing, locked or damaged.

A sync reads through a session with the lake attached read-only under
:data:`LAKE_ALIAS` (so temporary work has a place and the lake cannot change
under a run), streams rows out through a second, small-budget session
(:func:`stream_connection`), and spills joins to ``DESTINATION_PATH/.nw/tmp``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ..errors import ConfigError, LakeError, first_line
from ..model import TableSpec
from ..settings import Settings

# The name the lake is attached under in a read-only session (see connect()).
LAKE_ALIAS = "lake"
# A sync streams rows out under this budget, so its memory stays flat in table size.
STREAM_MEMORY_LIMIT = "64MB"


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


def row_count(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> int:
    return con.execute(f"SELECT count(*) FROM {spec.source}").fetchone()[0]


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
