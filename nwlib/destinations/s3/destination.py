"""S3 (or any S3-compatible store): a raw zone of change files.

Layout and current-row rules: :mod:`.layout`; the commit point: :mod:`.state`;
writing and finding the files: :mod:`.parts`; the keys held: :mod:`.keys`; the
run history: :mod:`.history`.  Reads use DuckDB's ``httpfs`` when it loads,
else pyarrow's S3.  :func:`rebuild` (and ``scan``, which ``nw verify`` uses)
derives each table's current rows.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb
import pyarrow as pa

from ...cdc import ChangeSet
from ...errors import ConfigError, DestinationError
from ...fingerprint import COLUMN as FP
from ...model import MERGE, OK, REPLACE, Column, ForeignKey, TableReport, TableSpec, TableState, Watermark
from ...readback import file_exprs
from ...records import ledger_row, now, report_row
from ...settings import Settings, checked_endpoint
from ...sql import ident
from ..base import BaseDestination, Capabilities, DeleteResult, LoadResult, Progress, ReaderFactory, nothing_held, state_to_store
from ..objectstore import (S3Location, S3Lock, boto3_client, duckdb_s3, errors_as_one_line, prepare_files, pyarrow_s3, rekeyed)
from .history import History
from .keys import KeySets
from .layout import META_COLUMNS, OP, RUN, SEQ, STATE_DIR, current_rows_sql
from .parts import Parts
from .state import StateStore

CAPABILITIES = Capabilities(name="S3")
# This instance's memory under DUCKDB_MEMORY_LIMIT=auto: it merges key sets and writes Parquet, with no lake attached.
AUTO_MEMORY = "256MB"


def _ledger_row(run_id: str, table: str, mode: str, status: str, seq: int | None, started, **values) -> dict:
    """A ledger row plus the commit sequence that makes it visible (None: visible at once)."""
    return {**ledger_row(run_id, table, mode, status, started, **values), "seq": seq}


class S3Destination(BaseDestination):
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings, use_httpfs: bool | None = None):
        if not settings.s3_bucket_name:
            raise ConfigError("S3_BUCKET_NAME is not set", "set S3_BUCKET_NAME (and AWS_* credentials) for DESTINATION_TYPE=S3")
        checked_endpoint(settings.aws_endpoint_url)
        self.settings = settings
        self.loc = S3Location(settings.s3_bucket_name, settings.s3_prefix or "")
        self.client = boto3_client(settings)
        self.use_httpfs = use_httpfs
        self._con: duckdb.DuckDBPyConnection | None = None
        self._httpfs = False
        self._needs_full: set[str] = set()
        self._snapshot: set[str] = set()
        self._rekeyed: set[str] = set()
        self._schema_errors: dict[str, str] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="nw_s3_"))
        self.state = StateStore(self.client, self.loc, self._errors)
        self.parts = Parts(self.client, self.loc, self._errors, self._tmp)
        self.keysets = KeySets(self._duck, self._source, self._errors)
        self.history_log = History(self.client, self.loc, self._errors)

    # --- plumbing ------------------------------------------------------------------
    def describe(self) -> str:
        where = f" at {self.settings.shown_url(self.settings.aws_endpoint_url)}" if self.settings.aws_endpoint_url else ""
        return f"S3 {self.loc.url()}{where}"

    def _errors(self, where: str) -> AbstractContextManager[None]:
        """S3, DuckDB and file errors inside become one-line ``DestinationError``s naming ``where``."""
        from botocore.exceptions import BotoCoreError, ClientError

        return errors_as_one_line(self.settings, where, self.loc.url(), (ClientError, BotoCoreError, duckdb.Error, OSError))

    def _duck(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            limit = AUTO_MEMORY if self.settings.duckdb_memory_auto else self.settings.duckdb_memory_limit
            con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
            spill = self._tmp / "spill"
            con.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
            self._httpfs = self.use_httpfs is not False and duckdb_s3(con, self.settings)
            if self.use_httpfs and not self._httpfs:
                raise DestinationError("DuckDB's httpfs extension did not load", "pip install duckdb-extension-httpfs or allow INSTALL httpfs")
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._con = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def ping(self) -> float:
        with self._errors("bucket"):
            t = time.perf_counter()
            self.client.head_bucket(Bucket=self.loc.bucket)
            return time.perf_counter() - t

    def _lock_object(self) -> S3Lock:
        return S3Lock(self.client, self.loc.bucket, self.loc.key(STATE_DIR, "lock.json"), self.settings, self.loc.url())

    def lock(self):
        self.state.forget()             # another run may have changed the bucket since
        self.keysets.forget_all()
        return self._lock_object()()

    def running(self) -> str | None:
        return self._lock_object().running()

    # --- state ---------------------------------------------------------------------
    def _read_state(self) -> dict:
        return self.state.read()

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        st = self.state.read()["tables"]
        out = {}
        for t in tables:
            info = st.get(t)
            total = info.get("fingerprint_sum") if info else None
            out[t] = TableState() if not info else TableState(
                Watermark.from_json(info.get("watermark")), int(info.get("row_count", 0)),
                tuple(Column(c["name"], c["type"]) for c in info.get("columns", [])), bool(info.get("loaded")),
                None if total is None else int(total), info.get("fingerprint_version"), info.get("revision"))
        return out

    # --- schema --------------------------------------------------------------------
    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        tables = self.state.read()["tables"]

        def reserved(spec: TableSpec) -> str | None:
            if spec.name == STATE_DIR or any(c in META_COLUMNS for c in spec.column_names):
                return f"table {spec.name!r} uses a name nwlib's S3 layout reserves ({STATE_DIR}, {', '.join(META_COLUMNS)}) — rename it in the lake"
            return None
        stored = {s.name: {c["name"]: c["type"] for c in tables.get(s.name, {}).get("columns", [])} for s in specs}
        notes, rewrite, self._schema_errors = prepare_files(specs, stored, full_refresh, self.settings.partition_columns, reserved)
        # a type change: every current row written again (a new snapshot), with the new types
        self._needs_full, self._snapshot = set(rewrite), set(full_refresh) | rewrite
        self._rekeyed = rekeyed(specs, stored, self._snapshot)
        return notes

    def needs_full(self) -> frozenset[str]:
        """Tables whose columns changed type: every current row written again, a new snapshot with the new types."""
        return frozenset(self._needs_full)

    def schema_errors(self) -> dict[str, str]:
        return dict(self._schema_errors)

    # --- files ---------------------------------------------------------------------
    def committed_files(self, table: str, state: dict | None = None) -> list[str]:
        """Keys of the table's files that committed runs made, oldest commit first."""
        return self.parts.committed(table, state or self.state.read())

    def _source(self, table: str, columns: Sequence[str] | None = None) -> tuple[str | None, set[str]]:
        """A DuckDB view over the table's committed files; (view, its columns), view None when empty."""
        keys = self.committed_files(table)
        if not keys:
            return None, set()
        con = self._duck()
        view = "nw_src_" + hashlib.md5(table.encode()).hexdigest()[:12]
        with self._errors("read"):
            if self._httpfs:
                rel = con.read_parquet([f"s3://{self.loc.bucket}/{k}" for k in keys], union_by_name=True)
            else:
                import pyarrow.dataset as ds
                import pyarrow.parquet as pq

                fs = pyarrow_s3(self.settings)
                paths = [f"{self.loc.bucket}/{k}" for k in keys]
                schema = pa.unify_schemas([pq.read_schema(p, filesystem=fs) for p in paths])
                if columns:
                    schema = pa.schema([f for f in schema if f.name in set(columns) | set(META_COLUMNS)])
                rel = con.from_arrow(ds.dataset(paths, schema=schema, filesystem=fs, format="parquet"))
        rel.create_view(view, replace=True)
        present = {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}
        return view, present

    # --- loading -------------------------------------------------------------------
    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        state = self.state.draft()
        seq = int(state["seq"]) + 1
        con = self._duck()
        results: dict[str, LoadResult] = {}
        staged: list[tuple[TableSpec, list[Path], bool]] = []
        ledger = []
        for cs in changes:
            spec, started = cs.spec, now()
            snapshot = spec.mode == REPLACE or (cs.full and spec.name in self._snapshot)
            info = state["tables"].setdefault(spec.name, {})
            was_loaded = bool(info.get("loaded"))
            parts, ins, upd = [], 0, 0
            if cs.rows or snapshot:
                con.register("nw_in", read(cs))
                try:
                    meta = f"CAST(? AS VARCHAR) AS {RUN}, CAST(? AS BIGINT) AS {SEQ}"
                    if spec.mode == MERGE and not snapshot and was_loaded:
                        ktab = self.keysets.ensure(spec)
                        match = " AND ".join(f"s.{ident(k)} = k.{ident(k)}" for k in spec.primary_key)
                        probe = ident(spec.primary_key[0])
                        sql = (f"SELECT s.*, CASE WHEN k.{probe} IS NULL THEN 'insert' ELSE 'update' END AS {OP}, {meta} "
                               f"FROM nw_in s LEFT JOIN {ktab} k ON {match}")
                    else:
                        sql = f"SELECT s.*, 'insert' AS {OP}, {meta} FROM nw_in s"
                    column = self.settings.partition_columns.get(spec.name)
                    if column:
                        parts, ins, upd = self.parts.write_partitioned(con, spec.name, sql, [run_id, seq], column, run_id, seq, progress)
                    else:
                        with self._errors(f"load {spec.name}"):
                            out = con.execute(sql, [run_id, seq]).to_arrow_reader(self.settings.batch_size)
                        parts, ins, upd = self.parts.write(spec.name, out, run_id, seq, progress)
                finally:
                    con.unregister("nw_in")
            before = 0 if snapshot else int(info.get("row_count", 0))
            if snapshot:
                info["base_seq"] = seq
            stored = state_to_store(cs, ins, before, whole=snapshot)
            info.update(watermark=cs.watermark_after.to_json(), loaded=True, mode=spec.mode, key=list(spec.primary_key),
                        columns=[{"name": c.name, "type": c.type} for c in spec.columns], run_id=run_id,
                        row_count=stored.row_count, fingerprint_version=stored.fingerprint_version, revision=stored.revision,
                        fingerprint_sum=None if stored.fingerprint_sum is None else str(stored.fingerprint_sum))
            info.setdefault("base_seq", 0)
            staged.append((spec, parts, snapshot or not was_loaded))
            results[spec.name] = LoadResult(ins, upd)
            ledger.append(_ledger_row(run_id, spec.name, spec.mode + (" full" if cs.full else " incremental"), OK, seq, started,
                                      linhas_inseridas=ins, linhas_atualizadas=upd,
                                      watermark_antes=json.dumps(cs.watermark_before.to_json()),
                                      watermark_depois=json.dumps(cs.watermark_after.to_json())))
        state["seq"] = seq
        state["runs"][run_id] = seq
        self.history_log.put(f"{run_id}-{seq:08d}.jsonl", ledger)
        self.state.write(state)           # the commit point
        for spec, parts, fresh in staged:
            self.keysets.remember(spec, parts, fresh)
        return results

    # --- fingerprints and deletes ----------------------------------------------------
    def fingerprints(self, spec: TableSpec) -> pa.RecordBatchReader:
        if spec.name in self._rekeyed:
            return nothing_held(spec)
        table = self.keysets.ensure(spec)
        return self._duck().execute(f"SELECT * FROM {table}").to_arrow_reader(self.settings.batch_size)

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str, revision: str,
               protect: Sequence[ForeignKey] = ()) -> DeleteResult:
        """Deletes are change records (``nw_operation = 'delete'``); S3 enforces no foreign keys, so none are held back."""
        started = now()
        state = self.state.draft()
        seq = int(state["seq"]) + 1
        con = self._duck()
        ktab = self.keysets.ensure(spec)
        cols = ", ".join(f"k.{ident(k)}" for k in spec.primary_key)
        match = " AND ".join(f"d.{ident(k)} = k.{ident(k)}" for k in spec.primary_key)
        con.register("nw_del", keys)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE nw_del_t AS SELECT DISTINCT {cols}, k.{ident(FP)} FROM {ktab} k "
                        f"WHERE EXISTS (SELECT 1 FROM nw_del d WHERE {match})")
        finally:
            con.unregister("nw_del")
        n, total, unknown = con.execute(f"SELECT count(*), coalesce(sum({ident(FP)}), 0), count(*) FILTER (WHERE {ident(FP)} IS NULL) "
                                        "FROM nw_del_t").fetchone()
        if not n:
            return DeleteResult()
        out = con.execute(f"SELECT *, 'delete' AS {OP}, CAST(? AS VARCHAR) AS {RUN}, CAST(? AS BIGINT) AS {SEQ} FROM nw_del_t",
                          [run_id, seq]).to_arrow_reader(self.settings.batch_size)
        parts, _, _ = self.parts.write(spec.name, out, run_id, seq, None)
        info = state["tables"][spec.name]
        info["row_count"] = int(info.get("row_count", 0)) - n
        held = info.get("fingerprint_sum")
        info["fingerprint_sum"] = None if held is None or unknown else str(int(held) - int(total))
        info["revision"] = revision
        state["seq"] = seq
        state["runs"][run_id] = seq
        self.history_log.put(f"{run_id}-{seq:08d}.jsonl", [_ledger_row(run_id, spec.name, "merge deletes", OK, seq, started, linhas_excluidas=n)])
        self.state.write(state)
        self.keysets.remove(spec, "nw_del_t")
        for p in parts:
            p.unlink(missing_ok=True)
        return DeleteResult(int(n), 0)

    # --- ledger --------------------------------------------------------------------
    def record(self, run_id: str, reports: Sequence[TableReport]) -> None:
        rows = [_ledger_row(run_id, r.table, r.mode, r.status, None, r.started_at, **{
                    k: v for k, v in report_row(run_id, r).items() if k not in ("run_id", "tabela_nome", "modo", "status", "iniciado_em")})
                for r in reports]
        for row in rows:
            row["erro"] = self.settings.redact(row["erro"]) if row["erro"] else None
            row["final"] = True
        self.history_log.put(f"{run_id}-final.jsonl", rows)

    def history(self, limit: int = 200) -> list[dict]:
        return self.history_log.read(self.state.read()["runs"], limit)

    def run_history(self, runs: int) -> list[dict]:
        return self.history_log.read_runs(self.state.read()["runs"], runs)

    # --- reading back --------------------------------------------------------------
    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        view, present = self._source(spec.name)
        if view is None:
            return pa.table({c.name: pa.array([], pa.string()) for c in spec.columns}).to_reader()
        key = spec.primary_key if spec.mode == MERGE else ()
        sql = current_rows_sql(view, key, file_exprs(spec.columns, present))
        with self._errors(f"read {spec.name}"):
            return self._duck().execute(sql).to_arrow_reader(self.settings.batch_size)


def rebuild(settings: Settings, table: str, use_httpfs: bool | None = None) -> pa.Table:
    """The current rows of ``table`` rebuilt from its committed change files (typed as written)."""
    dest = S3Destination(settings, use_httpfs=use_httpfs)
    try:
        info = dest.state.read()["tables"].get(table)
        if not info:
            raise DestinationError(f"table {table!r} has no committed data in {dest.loc.url()}", "run `nw sync` first")
        cols = [c["name"] for c in info.get("columns", [])]
        view, present = dest._source(table)
        if view is None:
            return pa.table({c: pa.array([], pa.string()) for c in cols})
        select = ", ".join(ident(c) if c in present else f"NULL AS {ident(c)}" for c in cols)
        key = info.get("key") if info.get("mode", MERGE) == MERGE else ()
        return dest._duck().execute(current_rows_sql(view, key or (), select)).to_arrow_table()
    finally:
        dest.close()
