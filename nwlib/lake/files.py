"""Opening the lake file: read-only by default, one clear line when it is missing, locked or damaged.

A sync reads through a session with the lake attached read-only under
:data:`LAKE_ALIAS` (so temporary work has a place and the lake cannot change
under a run), streams rows out through a cursor of it (:func:`stream_cursor`),
and spills to ``DESTINATION_PATH/.nw/tmp`` beyond DUCKDB_MEMORY_LIMIT.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from .. import clock
from ..errors import ConfigError, LakeError, first_line
from ..model import TableSpec
from ..settings import Settings

# The name the lake is attached under in a read-only session (see connect()).
LAKE_ALIAS = "lake"
# Freed memory DuckDB's allocator may keep after a task (see _set_memory).
ALLOCATOR_FLUSH = "16MB"


def connect(path: Path | str, read_only: bool = True, create: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the lake, turning DuckDB's failures into one clear line."""
    path = Path(path)
    if not path.exists() and not create:
        raise LakeError(f"lake file not found: {path}", "run `nw bootstrap` to create the sample lake, or set DUCKDB_PATH")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    clock.mark("first SQL")          # NW_TIMINGS=1: the start-up of a command ends here
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


# DUCKDB_MEMORY_LIMIT=auto, sized to the lake's largest table.  Up to PAIRS_MAX_ROWS rows: a working budget, plus
# 20 bytes a row for its comparison in one FULL OUTER JOIN beside the lake's cached blocks, plus PAIR_BYTES a row for
# the (key, fingerprint) pairs kept from its hashing (measured 22 for a BIGINT key; see nwlib.cdc.LakeTotals): a
# 2M-row lake gets 250 MB.  A larger table is compared in passes over ranges of its key (or buckets), and its local
# copy is written again rather than deleted from (nwlib.holdings.REWRITE_ROWS), neither of which needs room that
# grows with it; what does is DuckDB's bookkeeping of the lake table's own deletes when they are spread over it,
# about 8 bytes a row, loaded by any read and never evicted (81 MB on the bench's 10M-row table).  So it gets
# AUTO_MEMORY_LARGE_BASE plus that: 144 MB at 10M rows, which keeps a whole `nw sync` of it within 400 MB (the README's
# performance section has the measurements).
AUTO_MEMORY_BASE, AUTO_MEMORY_PER_ROW = 160 << 20, 20
PAIRS_MAX_ROWS, PAIR_BYTES = 2_500_000, 24
AUTO_MEMORY_LARGE_BASE, DELETES_BYTES_PER_ROW = 64 << 20, 8
# A comparison of whole rows (`nw verify`'s EXCEPT ALL) needs memory for every column and thread whatever the rows:
# measured on 300-row tables of INTEGER columns with 2 threads, 32 MB for 100 columns, 96 for 300, 128 for 600, 256
# for 1,200; and for 1,200 columns, 192 MB with 1 thread, 512 with 4, 768 with 8.
WHOLE_ROWS_BASE, WHOLE_ROWS_PER_COLUMN_THREAD = 16 << 20, 128 << 10


def auto_memory_limit(con: duckdb.DuckDBPyConnection, whole_tables: bool = False) -> int:
    """Bytes DUCKDB_MEMORY_LIMIT=auto gives the session of this lake (its tables' estimated sizes).  ``whole_tables``:
    the session compares whole tables at once (`nw verify`'s EXCEPT ALL of every column), so a large table gets
    the budget of a comparison in one pass too (at 144 MB a mutated 11.7M-row table ran it out of memory)."""
    rows = int(con.execute("SELECT coalesce(max(estimated_size), 0) FROM duckdb_tables() WHERE database_name = current_database() "
                           "AND NOT internal").fetchone()[0])
    if rows > PAIRS_MAX_ROWS and not whole_tables:
        return AUTO_MEMORY_LARGE_BASE + DELETES_BYTES_PER_ROW * rows
    limit = AUTO_MEMORY_BASE + (AUTO_MEMORY_PER_ROW + PAIR_BYTES) * rows
    if whole_tables:        # and for the widest table's columns (1,200 columns ran verify out of memory at 160 MB)
        widest, threads = con.execute("SELECT coalesce(max(column_count), 0), current_setting('threads') FROM duckdb_tables() "
                                      "WHERE database_name = current_database() AND NOT internal").fetchone()
        limit = max(limit, WHOLE_ROWS_BASE + WHOLE_ROWS_PER_COLUMN_THREAD * int(widest) * max(2, int(threads)))
    return limit


def _set_memory(con: duckdb.DuckDBPyConnection, settings: Settings, whole_tables: bool) -> None:
    limit = f"{auto_memory_limit(con, whole_tables) >> 20}MiB" if settings.duckdb_memory_auto else settings.duckdb_memory_limit
    con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
    # DuckDB's allocator keeps freed memory for reuse up to a threshold (128 MB by default) before returning
    # it: that would sit on top of the limit.  Return it after each task instead.
    con.execute(f"SET allocator_flush_threshold = '{ALLOCATOR_FLUSH}'")


def _spill_to(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    con.execute(f"SET temp_directory = '{_sql_str(str(settings.destination_path / '.nw' / 'tmp'))}'")


@contextlib.contextmanager
def open_lake(settings: Settings, whole_tables: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The lake, read-only, in one DuckDB instance whose memory is DUCKDB_MEMORY_LIMIT, all of it.

    Everything a run does in DuckDB shares that one budget — the lake blocks it caches, the lake tables' key
    indexes, the comparisons' hash tables (in passes sized to the budget), rows streaming out
    (:func:`stream_cursor`) — and spills to ``DESTINATION_PATH/.nw/tmp`` beyond it.  ``auto`` sizes the
    budget to the lake's largest table (:func:`auto_memory_limit`; ``whole_tables`` for a session that compares
    whole tables at once, as `nw verify` does).
    """
    con = connect(settings.duckdb_path, read_only=True)
    try:
        _set_memory(con, settings, whole_tables)  # a malformed value fails here, before any work
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
        used = f" ({memory_limit(con) >> 20} MiB here)" if settings.duckdb_memory_auto else ""
        raise ConfigError(f"DuckDB needed more memory than DUCKDB_MEMORY_LIMIT={settings.duckdb_memory_limit}{used}",
                          "raise DUCKDB_MEMORY_LIMIT (e.g. 512MB) and rerun; committed tables are kept, the rest resumes") from exc
    finally:
        con.close()


_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def memory_limit(con: duckdb.DuckDBPyConnection) -> int:
    """The session's memory limit in bytes, as DuckDB reports it ('183.1 MiB')."""
    value = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    number, _, unit = str(value).partition(" ")
    return int(float(number) * _UNITS.get(unit.strip(), 1))


def stream_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second connection to the same DuckDB instance (same memory budget) to stream rows out while the
    first goes on with other queries."""
    cur = con.cursor()
    cur.execute(f"USE {LAKE_ALIAS}")
    cur.execute("SET TimeZone = 'UTC'")
    return cur


def newest_write(paths: Iterable[Path]) -> float | None:
    """The newest modification time (seconds since the epoch) of those of ``paths`` that exist, None if none does."""
    times = []
    for p in paths:
        with contextlib.suppress(OSError):      # absent, or removed meanwhile (a checkpointed log, another run)
            times.append(p.stat().st_mtime)
    return max(times, default=None)


def last_written(path: Path) -> float:
    """When the lake file (or its write-ahead log) was last written, in seconds since the epoch."""
    path = Path(path)
    return newest_write((path, path.with_name(path.name + ".wal"))) or 0.0


def row_count(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> int:
    return con.execute(f"SELECT count(*) FROM {spec.source}").fetchone()[0]


def _sql_str(text: str) -> str:
    return text.replace("'", "''")
