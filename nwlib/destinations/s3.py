"""S3 (or any S3-compatible store): a raw zone of change files.

Each commit (one step of a run, or one batch of deletes) writes each table's
rows as ZSTD Parquet under a Hive layout::

    <prefix>/<table>/dt=YYYY-MM-DD/run=<run id>/part-<commit seq>-<n>.parquet

with ``nw_operation`` (insert/update/delete, decided against the keys the
destination holds), ``nw_run_id`` and ``nw_seq`` (the commit sequence).  Rows
stream from the lake through a local Parquet file per part and a multipart
upload, so memory stays bounded.

The commit point is one PUT of ``<prefix>/_nw/state.json``: watermarks, row
counts, columns, and ``runs`` (run id → last committed sequence).  A file is
part of the table only when its run's committed sequence reaches its own, so
a crash leaves its files invisible and the rerun finishes the job.  The run
history is ``<prefix>/_nw/controle_cargas/<run>-<seq>.jsonl``, written before
the state and shown only once committed.

:func:`rebuild` (and ``scan``, which ``nw verify`` uses) derives each table's
current rows: the latest row per key by (commit sequence, operation), deletes
removed.  Reads use DuckDB's ``httpfs`` when it loads, else pyarrow's S3.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa

from ..cdc import ChangeSet
from ..errors import ConfigError, DestinationError, NwError, SourceModelError
from ..ledger import LEDGER_COLUMNS, LEDGER_TABLE, now
from ..model import MERGE, REPLACE, Column, TableSpec, TableState, Watermark
from ..settings import Settings
from ..sql import ident
from .base import Capabilities, LoadResult, Progress, ReaderFactory
from .objectstore import S3Location, S3Lock, boto3_client, classify, column_changes, duckdb_s3, pyarrow_s3

OP, RUN, SEQ = "nw_operation", "nw_run_id", "nw_seq"
META_COLUMNS = (OP, RUN, SEQ)
STATE_DIR = "_nw"
PART_ROWS = 1_000_000
_PART = re.compile(r"/dt=[^/]+/run=([^/]+)/(?:[^/]+=[^/]*/)*part-(\d+)-(\d+)\.parquet$")

CAPABILITIES = Capabilities(name="S3", transactional=False, merge_strategies=("merge", "append", "replace"),
                            foreign_keys=False, state_location="<prefix>/_nw/state.json and <prefix>/_nw/controle_cargas/")


def folder(table: str) -> str:
    """A table's folder name: the name itself when it is plain, else percent-encoded."""
    return table if re.fullmatch(r"[A-Za-z0-9_.\-]+", table) else quote(table, safe="")


def empty_state() -> dict:
    return {"format": 1, "seq": 0, "runs": {}, "tables": {}}


def verify_exprs(spec_columns: Sequence[Column], present: set[str]) -> str:
    """Columns as ``nw verify`` reads them: typed where DuckDB can CAST back, BLOB as hex, nested as JSON."""
    from ..typemap import pg_type
    from ..verify import _is_json, _nested

    out = []
    for c in spec_columns:
        col = ident(c.name)
        if c.name not in present:
            out.append(f"CAST(NULL AS VARCHAR) AS {col}")
        elif c.type.upper() == "BLOB":
            out.append(f"hex(CAST({col} AS BLOB)) AS {col}")
        elif not _is_json(c.type) and _nested(c.type) and not pg_type(c.type).json:  # a native list, not JSON text
            out.append(f"CAST(to_json({col}) AS VARCHAR) AS {col}")
        else:
            out.append(col)
    return ", ".join(out)


def _op_rank() -> str:
    return f"CASE {OP} WHEN 'delete' THEN 2 WHEN 'update' THEN 1 ELSE 0 END"


def current_rows_sql(source: str, key: Sequence[str], select: str = "*") -> str:
    """The latest row of each key by (commit sequence, operation), deletes removed."""
    if not key:
        return f"SELECT {select} FROM {source} WHERE {OP} IS DISTINCT FROM 'delete'"
    part = ", ".join(ident(k) for k in key)
    ranked = (f"SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY {SEQ} DESC, {_op_rank()} DESC) AS nw_rn "
              f"FROM {source}")
    return f"SELECT {select} FROM ({ranked}) WHERE nw_rn = 1 AND {OP} <> 'delete'"


class S3Destination:
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings, use_httpfs: bool | None = None):
        if not settings.s3_bucket_name:
            raise ConfigError("S3_BUCKET_NAME is not set", "set S3_BUCKET_NAME (and AWS_* credentials) for DESTINATION_TYPE=S3")
        self.settings = settings
        self.loc = S3Location(settings.s3_bucket_name, settings.s3_prefix or "")
        self.client = boto3_client(settings)
        self.use_httpfs = use_httpfs
        self._con: duckdb.DuckDBPyConnection | None = None
        self._httpfs = False
        self._state: dict | None = None
        self._cached: set[str] = set()          # tables whose key set is in the DuckDB session
        self._needs_full: set[str] = set()
        self._snapshot: set[str] = set()
        self._tmp = Path(tempfile.mkdtemp(prefix="nw_s3_"))

    # --- plumbing ------------------------------------------------------------------
    def describe(self) -> str:
        where = f" at {self.settings.aws_endpoint_url}" if self.settings.aws_endpoint_url else ""
        return f"S3 {self.loc.url()}{where}"

    def _what(self) -> str:
        return self.loc.url()

    def _call(self, where: str, fn):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except NwError:
            raise
        except (ClientError, BotoCoreError, duckdb.Error, OSError) as exc:
            raise classify(exc, self.settings, where, self._what()) from None

    def _duck(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET memory_limit = '{self.settings.duckdb_memory_limit.replace(chr(39), '')}'")
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
        import shutil
        shutil.rmtree(self._tmp, ignore_errors=True)

    def ping(self) -> float:
        def go():
            t = time.perf_counter()
            self.client.head_bucket(Bucket=self.loc.bucket)
            return time.perf_counter() - t
        return self._call("bucket", go)

    def lock(self):
        self._state, self._cached = None, set()   # another run may have changed the bucket since
        return S3Lock(self.client, self.loc.bucket, self.loc.key(STATE_DIR, "lock.json"), self.settings, self._what())()

    # --- state ---------------------------------------------------------------------
    def _read_state(self) -> dict:
        if self._state is None:
            def go():
                try:
                    body = self.client.get_object(Bucket=self.loc.bucket, Key=self.loc.key(STATE_DIR, "state.json"))["Body"].read()
                except self.client.exceptions.NoSuchKey:
                    return empty_state()
                return json.loads(body)
            self._state = self._call("bucket", go)
        return self._state

    def _write_state(self, state: dict) -> None:
        body = json.dumps(state, sort_keys=True, default=str).encode()
        self._call("commit", lambda: self.client.put_object(Bucket=self.loc.bucket, Key=self.loc.key(STATE_DIR, "state.json"), Body=body))
        self._state = state

    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        st = self._read_state()["tables"]
        out = {}
        for t in tables:
            info = st.get(t)
            out[t] = TableState() if not info else TableState(
                Watermark.from_json(info.get("watermark")), int(info.get("row_count", 0)),
                tuple(Column(c["name"], c["type"]) for c in info.get("columns", [])), bool(info.get("loaded")))
        return out

    # --- schema --------------------------------------------------------------------
    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        self._needs_full, self._snapshot = set(), set(full_refresh)
        tables = self._read_state()["tables"]
        notes: dict[str, tuple[str, ...]] = {}
        for spec in specs:
            if spec.name == STATE_DIR or any(c in META_COLUMNS for c in spec.column_names):
                raise SourceModelError(f"table {spec.name!r} uses a name nwlib's S3 layout reserves ({STATE_DIR}, {', '.join(META_COLUMNS)})",
                                       "rename it in the lake")
            old = {c["name"]: c["type"] for c in tables.get(spec.name, {}).get("columns", [])}
            mine, resend = column_changes(spec, old, spec.name in full_refresh, self.settings.partition_columns)
            if resend:
                self._needs_full.add(spec.name)
            if mine:
                notes[spec.name] = mine
        return notes

    def needs_full(self) -> frozenset[str]:
        return frozenset(self._needs_full)

    # --- files ---------------------------------------------------------------------
    def committed_files(self, table: str, state: dict | None = None) -> list[str]:
        """Keys of the table's files that committed runs made, oldest commit first."""
        state = state or self._read_state()
        runs = state["runs"]
        base = int(state["tables"].get(table, {}).get("base_seq", 0))
        found = []

        def go():
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.loc.bucket, Prefix=self.loc.key(folder(table)) + "/dt=")
            for page in pages:
                for obj in page.get("Contents", []):
                    m = _PART.search(obj["Key"])
                    if not m:
                        continue
                    run, seq = m.group(1), int(m.group(2))
                    if run in runs and seq <= int(runs[run]) and seq >= base:
                        found.append((seq, int(m.group(3)), obj["Key"]))
        self._call("list", go)
        return [k for _, _, k in sorted(found)]

    def _source(self, table: str, columns: Sequence[str] | None = None) -> tuple[str | None, set[str]]:
        """A DuckDB view over the table's committed files; (view, its columns), view None when empty."""
        keys = self.committed_files(table)
        if not keys:
            return None, set()
        con = self._duck()
        view = "nw_src_" + hashlib.md5(table.encode()).hexdigest()[:12]
        if self._httpfs:
            urls = [f"s3://{self.loc.bucket}/{k}" for k in keys]
            rel = self._call("read", lambda: con.read_parquet(urls, union_by_name=True))
        else:
            import pyarrow.dataset as ds
            import pyarrow.parquet as pq

            fs = pyarrow_s3(self.settings)
            paths = [f"{self.loc.bucket}/{k}" for k in keys]

            def open_ds():
                schema = pa.unify_schemas([pq.read_schema(p, filesystem=fs) for p in paths])
                if columns:
                    schema = pa.schema([f for f in schema if f.name in set(columns) | set(META_COLUMNS)])
                return ds.dataset(paths, schema=schema, filesystem=fs, format="parquet")
            dataset = self._call("read", open_ds)
            rel = con.from_arrow(dataset)
        rel.create_view(view, replace=True)
        present = {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}
        return view, present

    def _keys_table(self, spec: TableSpec) -> str:
        return "nw_keys_" + hashlib.md5(spec.name.encode()).hexdigest()[:12]

    def _ensure_keys(self, spec: TableSpec) -> str:
        """The destination's current keys of a merge table, in the DuckDB session."""
        con, table = self._duck(), self._keys_table(spec)
        if spec.name in self._cached:
            return table
        keys = ", ".join(ident(k) for k in spec.primary_key)
        view, _ = self._source(spec.name, spec.primary_key)
        if view is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {self._no_keys(spec)}")
        else:
            latest = f"SELECT {keys}, arg_max({OP}, {SEQ}) AS op FROM {view} GROUP BY ALL"
            self._call("read keys", lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {keys} FROM ({latest}) WHERE op <> 'delete'"))
        self._cached.add(spec.name)
        return table

    def _write_parts(self, spec: TableSpec, reader: pa.RecordBatchReader, run_id: str, seq: int, progress: Progress | None) -> tuple[list[Path], int, int]:
        """Stream batches into local ZSTD Parquet parts and upload each; returns (local parts, inserted, updated)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
        prefix = self.loc.key(folder(spec.name), f"dt={now():%Y-%m-%d}", f"run={run_id}")
        local_dir = self._tmp / hashlib.md5(f"{spec.name}/{seq}".encode()).hexdigest()[:12]
        local_dir.mkdir(parents=True, exist_ok=True)
        parts: list[Path] = []
        ins = upd = 0
        writer, rows_in_part = None, 0

        def finish():
            writer.close()
            path = parts[-1]
            self._call("upload", lambda: self.client.upload_file(str(path), self.loc.bucket, f"{prefix}/{path.name}", Config=cfg))

        for batch in reader:
            if not batch.num_rows:
                continue
            if writer is None:
                parts.append(local_dir / f"part-{seq:08d}-{len(parts):04d}.parquet")
                writer, rows_in_part = pq.ParquetWriter(parts[-1], batch.schema, compression="zstd"), 0
            writer.write_batch(batch)
            rows_in_part += batch.num_rows
            ops = batch.column(batch.schema.get_field_index(OP))
            n_ins = pc.sum(pc.equal(ops, "insert")).as_py() or 0
            n_del = pc.sum(pc.equal(ops, "delete")).as_py() or 0
            ins += n_ins
            upd += batch.num_rows - n_ins - n_del
            if progress:
                progress(spec.name, batch.num_rows)
            if rows_in_part >= PART_ROWS:
                finish()
                writer = None
        if writer is not None:
            finish()
        return parts, ins, upd

    def _write_partitioned(self, spec: TableSpec, sql: str, params: list, column: str, run_id: str, seq: int,
                           progress: Progress | None) -> tuple[list[Path], int, int]:
        """PARTITION_COLUMNS: one folder per value of ``column`` (``<column>=<value>/part-…``) under the run's folder."""
        from boto3.s3.transfer import TransferConfig

        con = self._duck()
        local = self._tmp / f"p{seq}-{hashlib.md5(spec.name.encode()).hexdigest()[:12]}"
        self._call(f"load {spec.name}", lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE nw_out AS {sql}", params))
        ins, upd, total = con.execute(f"SELECT count(*) FILTER (WHERE {OP} = 'insert'), count(*) FILTER (WHERE {OP} = 'update'), "
                                      "count(*) FROM nw_out").fetchone()
        target = str(local).replace("'", "''")   # our own temp folder
        con.execute(f"COPY nw_out TO '{target}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({ident(column)}), "
                    "WRITE_PARTITION_COLUMNS true, OVERWRITE_OR_IGNORE true)")
        con.execute("DROP TABLE nw_out")
        prefix = self.loc.key(folder(spec.name), f"dt={now():%Y-%m-%d}", f"run={run_id}")
        cfg = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)
        parts = sorted(local.rglob("*.parquet"))
        for n, path in enumerate(parts):
            key = f"{prefix}/{path.parent.relative_to(local).as_posix()}/part-{seq:08d}-{n:04d}.parquet"
            self._call("upload", lambda path=path, key=key: self.client.upload_file(str(path), self.loc.bucket, key, Config=cfg))
        if progress and total:
            progress(spec.name, total)
        return parts, ins, upd

    # --- loading -------------------------------------------------------------------
    def _ledger_key(self, name: str) -> str:
        return self.loc.key(STATE_DIR, LEDGER_TABLE, name)

    def _put_ledger(self, name: str, rows: list[dict]) -> None:
        body = "".join(json.dumps(r, default=str, sort_keys=True) + "\n" for r in rows).encode()
        self._call("ledger", lambda: self.client.put_object(Bucket=self.loc.bucket, Key=self._ledger_key(name), Body=body))

    @staticmethod
    def _ledger_row(run_id: str, table: str, mode: str, status: str, seq: int | None, started, **counts) -> dict:
        row = {k: None for k in LEDGER_COLUMNS}
        row.update(run_id=run_id, tabela_nome=table, modo=mode, status=status, linhas_inseridas=0, linhas_atualizadas=0,
                   linhas_excluidas=0, linhas_carregadas=0, iniciado_em=started.isoformat(), finalizado_em=now().isoformat(), seq=seq)
        row.update(counts)
        if status == "ok":
            row["ultima_carga"] = row["finalizado_em"]
        return row

    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        state = json.loads(json.dumps(self._read_state()))
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
                reader = read(cs)
                con.register("nw_in", reader)
                try:
                    meta = f"CAST(? AS VARCHAR) AS {RUN}, CAST(? AS BIGINT) AS {SEQ}"
                    if spec.mode == MERGE and not snapshot and was_loaded:
                        ktab = self._ensure_keys(spec)
                        match = " AND ".join(f"s.{ident(k)} = k.{ident(k)}" for k in spec.primary_key)
                        probe = ident(spec.primary_key[0])
                        sql = (f"SELECT s.*, CASE WHEN k.{probe} IS NULL THEN 'insert' ELSE 'update' END AS {OP}, {meta} "
                               f"FROM nw_in s LEFT JOIN {ktab} k ON {match}")
                    else:
                        sql = f"SELECT s.*, 'insert' AS {OP}, {meta} FROM nw_in s"
                    column = self.settings.partition_columns.get(spec.name)
                    if column:
                        parts, ins, upd = self._write_partitioned(spec, sql, [run_id, seq], column, run_id, seq, progress)
                    else:
                        out = self._call(f"load {spec.name}", lambda sql=sql: con.execute(sql, [run_id, seq]).to_arrow_reader(self.settings.batch_size))
                        parts, ins, upd = self._write_parts(spec, out, run_id, seq, progress)
                finally:
                    con.unregister("nw_in")
            if snapshot:
                info["base_seq"] = seq
                info["row_count"] = ins
            else:
                info["row_count"] = int(info.get("row_count", 0)) + ins
            info.update(watermark=cs.watermark_after.to_json(), loaded=True, mode=spec.mode, key=list(spec.primary_key),
                        columns=[{"name": c.name, "type": c.type} for c in spec.columns], run_id=run_id)
            info.setdefault("base_seq", 0)
            staged.append((spec, parts, snapshot or not was_loaded))
            results[spec.name] = LoadResult(ins, upd)
            ledger.append(self._ledger_row(run_id, spec.name, spec.mode + (" full" if cs.full else " incremental"), "ok", seq, started,
                                           linhas_inseridas=ins, linhas_atualizadas=upd, linhas_carregadas=ins + upd,
                                           watermark_antes=json.dumps(cs.watermark_before.to_json()),
                                           watermark_depois=json.dumps(cs.watermark_after.to_json())))
        state["seq"] = seq
        state["runs"][run_id] = seq
        self._put_ledger(f"{run_id}-{seq:08d}.jsonl", ledger)
        self._write_state(state)           # the commit point
        for spec, parts, fresh in staged:
            self._remember(spec, parts, fresh)
        return results

    def _remember(self, spec: TableSpec, parts: list[Path], fresh: bool) -> None:
        """After a commit: fold the inserted keys into the session's key set; drop local parts.

        ``fresh``: the destination held nothing of the table before (first load or snapshot)."""
        try:
            if spec.mode != MERGE:
                return
            con, table = self._duck(), self._keys_table(spec)
            keys = ", ".join(ident(k) for k in spec.primary_key)
            files = [str(p) for p in parts]
            if fresh:
                if files:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {keys} FROM read_parquet(?)", [files])
                else:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {self._no_keys(spec)}")
                self._cached.add(spec.name)
            elif spec.name in self._cached and files:
                con.execute(f"INSERT INTO {table} SELECT {keys} FROM read_parquet(?) WHERE {OP} = 'insert'", [files])
        finally:
            for p in parts:
                p.unlink(missing_ok=True)

    @staticmethod
    def _no_keys(spec: TableSpec) -> str:
        from ..typemap import pg_type

        def typ(k):
            try:
                c = spec.column(k)
            except KeyError:
                return "VARCHAR"
            return pg_type(c.type).send or c.type
        return "SELECT " + ", ".join(f"CAST(NULL AS {typ(k)}) AS {ident(k)}" for k in spec.primary_key) + " WHERE false"

    # --- deletes and counts -------------------------------------------------------
    def keys(self, spec: TableSpec) -> pa.RecordBatchReader:
        table = self._ensure_keys(spec)
        return self._duck().execute(f"SELECT * FROM {table}").to_arrow_reader(self.settings.batch_size)

    def row_count(self, table: str) -> int:
        info = self._read_state()["tables"].get(table, {})
        if info.get("mode", MERGE) == MERGE and info.get("key"):
            spec = TableSpec(table, (), tuple(info["key"]), mode=MERGE)
            return self._duck().execute(f"SELECT count(*) FROM {self._ensure_keys(spec)}").fetchone()[0]
        view, _ = self._source(table)
        if view is None:
            return 0
        return self._duck().execute(f"SELECT count(*) FROM ({current_rows_sql(view, ())})").fetchone()[0]

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str) -> int:
        started = now()
        state = json.loads(json.dumps(self._read_state()))
        seq = int(state["seq"]) + 1
        con = self._duck()
        ktab = self._ensure_keys(spec)
        cols = ", ".join(f"d.{ident(k)}" for k in spec.primary_key)
        match = " AND ".join(f"d.{ident(k)} = k.{ident(k)}" for k in spec.primary_key)
        con.register("nw_del", keys)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE nw_del_t AS SELECT DISTINCT {cols} FROM nw_del d "
                        f"WHERE EXISTS (SELECT 1 FROM {ktab} k WHERE {match})")
        finally:
            con.unregister("nw_del")
        n = con.execute("SELECT count(*) FROM nw_del_t").fetchone()[0]
        if not n:
            return 0
        out = con.execute(f"SELECT *, 'delete' AS {OP}, CAST(? AS VARCHAR) AS {RUN}, CAST(? AS BIGINT) AS {SEQ} FROM nw_del_t",
                          [run_id, seq]).to_arrow_reader(self.settings.batch_size)
        parts, _, _ = self._write_parts(spec, out, run_id, seq, None)
        info = state["tables"][spec.name]
        info["row_count"] = int(info.get("row_count", 0)) - n
        state["seq"] = seq
        state["runs"][run_id] = seq
        self._put_ledger(f"{run_id}-{seq:08d}.jsonl", [self._ledger_row(run_id, spec.name, "merge deletes", "ok", seq, started, linhas_excluidas=n)])
        self._write_state(state)
        gone = " AND ".join(f"k.{ident(k)} = g.{ident(k)}" for k in spec.primary_key)
        con.execute(f"DELETE FROM {ktab} k WHERE EXISTS (SELECT 1 FROM nw_del_t g WHERE {gone})")
        for p in parts:
            p.unlink(missing_ok=True)
        return n

    def set_row_count(self, table: str, n: int) -> None:
        state = json.loads(json.dumps(self._read_state()))
        info = state["tables"].get(table)
        if info is not None and int(info.get("row_count", 0)) != n:
            info["row_count"] = n
            self._write_state(state)

    # --- ledger --------------------------------------------------------------------
    def record_failure(self, run_id: str, table: str, mode: str, error: str) -> None:
        with contextlib.suppress(Exception):
            row = self._ledger_row(run_id, table, mode, "failed", None, now(), erro=self.settings.redact(error))
            self._put_ledger(f"{run_id}-failed-{hashlib.md5(f'{table}{time.time()}'.encode()).hexdigest()[:10]}.jsonl", [row])

    def note_schema_changes(self, run_id: str, table: str, notes: Sequence[str]) -> None:
        if notes:
            with contextlib.suppress(Exception):
                row = self._ledger_row(run_id, table, "schema", "ok", None, now(), mudancas_schema="; ".join(notes))
                self._put_ledger(f"{run_id}-schema-{hashlib.md5(table.encode()).hexdigest()[:10]}.jsonl", [row])

    def history(self, limit: int = 200) -> list[dict]:
        runs = self._read_state()["runs"]

        def go():
            keys = []
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.loc.bucket, Prefix=self._ledger_key(""))
            for page in pages:
                keys += [o["Key"] for o in page.get("Contents", [])]
            rows: list[dict] = []
            for key in sorted(keys, reverse=True):
                if len(rows) >= limit:
                    break
                body = self.client.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read().decode()
                for line in body.splitlines():
                    r = json.loads(line)
                    seq = r.pop("seq", None)
                    if seq is not None and int(runs.get(r["run_id"], -1)) < int(seq):
                        continue  # written by a run that died before its commit
                    for k in ("iniciado_em", "finalizado_em", "ultima_carga"):
                        if r.get(k):
                            r[k] = datetime.fromisoformat(r[k])
                    rows.append(r)
            rows.sort(key=lambda r: r.get("finalizado_em") or r.get("iniciado_em"), reverse=True)
            return rows[:limit]
        return self._call("read history", go)

    # --- reading back --------------------------------------------------------------
    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        view, present = self._source(spec.name)
        if view is None:
            return pa.table({c.name: pa.array([], pa.string()) for c in spec.columns}).to_reader()
        key = spec.primary_key if spec.mode == MERGE else ()
        sql = current_rows_sql(view, key, verify_exprs(spec.columns, present))
        return self._call(f"read {spec.name}", lambda: self._duck().execute(sql).to_arrow_reader(self.settings.batch_size))


def rebuild(settings: Settings, table: str, use_httpfs: bool | None = None) -> pa.Table:
    """The current rows of ``table`` rebuilt from its committed change files (typed as written)."""
    dest = S3Destination(settings, use_httpfs=use_httpfs)
    try:
        info = dest._read_state()["tables"].get(table)
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
