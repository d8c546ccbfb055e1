"""Delta Lake (delta-rs): each lake table is a Delta table at ``<DELTA_URI>/<table>``.

``DELTA_URI`` is a local folder or ``s3://bucket/folder``.  A first load (or a
full replace) streams the change set with ``write_deltalake``; later runs
MERGE on the primary key (insert new keys, update rows whose values differ,
delete keys the lake lost), with schema evolution.  The watermark, the run id
and a token naming the change set travel in the *same* Delta commit as the
rows (its commit metadata, plus an app transaction ``nwlib:<table>``), so the
state can never disagree with the data: a retried step whose commit already
landed is recognised by its token and not applied twice, and a run killed at
any instant resumes from the last commit.  Row counts come from the Delta log.

The run history is the Delta table ``<DELTA_URI>/controle_cargas``, appended
after each table commit (readable by Spark, Databricks and DuckDB's delta scan).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from ..cdc import ChangeSet
from ..errors import ConfigError, DestinationError, missing_dependency
from ..fingerprint import COLUMN as FP
from ..model import APPEND, MERGE, OK, REPLACE, Column, ForeignKey, TableReport, TableSpec, TableState, Watermark
from ..readback import file_exprs
from ..records import LEDGER_COLUMNS, LEDGER_TABLE, ledger_row, merge_ledger_rows, newest_runs, now, report_row
from ..settings import Settings, checked_delta_uri, checked_endpoint
from .base import BaseDestination, Capabilities, DeleteResult, LoadResult, Progress, ReaderFactory, nothing_held, state_to_store
from .objectstore import (FileLock, S3Lock, boto3_client, delta_storage_options, errors_as_one_line, parse_s3_uri, prepare_files,
                          rekeyed)

APP_ID = "nwlib:{table}"
META_WATERMARK, META_RUN, META_TOKEN, META_COLUMNS, META_LEDGER = "nw_watermark", "nw_run_id", "nw_token", "nw_columns", "nw_ledger"
META_STATE = "nw_state"       # {"linhas", "soma", "versao", "revisao"}: what the table holds after this commit
RUN_ID = re.compile(r"^[0-9A-Za-z._-]+$")
LOCK_NAME = "_nw_lock.json"

CAPABILITIES = Capabilities(name="DELTA")

LEDGER_SCHEMA = pa.schema([(name, pa.int64() if "bigint" in typ else pa.timestamp("us", tz="UTC") if "timestamptz" in typ else pa.string())
                           for name, typ in LEDGER_COLUMNS.items()])


def _deltalake():
    try:
        import deltalake
    except ImportError:
        raise missing_dependency("deltalake", "delta") from None
    return deltalake


def delta_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a Delta table can hold for ``t`` (values kept exact)."""
    if pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_null(t) or pa.types.is_decimal256(t) \
            or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_unsigned_integer(t):
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}.get(t.bit_width, pa.decimal128(20, 0))
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(delta_type(t.value_type))
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def delta_reader(reader: pa.RecordBatchReader, table: str, progress: Progress | None,
                 existing: pa.Schema | None = None, partition: str | None = None,
                 refused: list[DestinationError] | None = None) -> pa.RecordBatchReader:
    """``reader`` with Delta-compatible types, reporting progress as batches pass.

    ``existing``: the Delta table's schema; its columns the rows lack (dropped in
    the lake, kept here) are added empty, so the rows written leave them empty.
    ``partition``: the table's partition column, whose empty text Delta would read back as NULL: refused, the
    error also put in ``refused`` (delta-rs, reading the batches, wraps it in its own words)."""
    import pyarrow.compute as pc

    target = pa.schema([pa.field(f.name, delta_type(f.type)) for f in reader.schema])
    padding = [f for f in (existing or []) if f.name not in target.names]
    out = pa.schema(list(target) + padding)
    field = target.field(partition) if partition in target.names else None
    text_partition = partition if field is not None and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)) else None

    def batches():
        for b in reader:
            if progress and b.num_rows:
                progress(table, b.num_rows)
            if text_partition and b.num_rows and pc.any(pc.equal(b.column(text_partition), "")).as_py():
                error = DestinationError(f"table {table!r} column {text_partition!r} (its PARTITION_COLUMNS column) holds an empty "
                                         "string, which Delta reads back as NULL",
                                         "replace '' in the lake with NULL or a value, or partition by another column, and rerun")
                if refused is not None:
                    refused.append(error)
                raise error
            b = b if b.schema == target else b.cast(target)
            if padding:
                b = pa.RecordBatch.from_arrays(b.columns + [pa.nulls(b.num_rows, f.type) for f in padding], schema=out)
            yield b
    return pa.RecordBatchReader.from_batches(out, batches())


def _partition(dt) -> str | None:
    """The column an existing Delta table is partitioned by (PARTITION_COLUMNS applies when a table is written anew)."""
    columns = dt.metadata().partition_columns
    return columns[0] if columns else None


@contextlib.contextmanager
def _refusal_first(refused: list[DestinationError]) -> Iterator[None]:
    """A refusal :func:`delta_reader` raised while delta-rs read the rows, in its own words (not delta-rs's)."""
    try:
        yield
    except Exception:
        if refused:
            raise refused[0] from None
        raise


def folder(table: str) -> str:
    """A table's folder: the name when it is plain, else a readable form plus a digest (URIs decode '%')."""
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", table):
        return table
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", table) + "-" + hashlib.sha256(table.encode()).hexdigest()[:8]


def _arrow_schema(dt) -> pa.Schema:
    return pa.schema(dt.schema().to_arrow())


def _q(name: str) -> str:
    """A column in a delta-rs predicate."""
    return "`" + name.replace("`", "``") + "`"


def _token(cs: ChangeSet, kind: str) -> str:
    """Names a change set: a retry of the same one (same revision) is recognised in the table's last commit."""
    raw = json.dumps([cs.spec.name, kind, cs.state_after.revision, cs.watermark_before.to_json(), cs.watermark_after.to_json(), cs.full,
                      cs.rows, list(map(str, cs.params))])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class DeltaDestination(BaseDestination):
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings):
        uri = checked_delta_uri(settings.delta_uri)
        if not uri:
            raise ConfigError("DELTA_URI is not set", "set DELTA_URI to a folder or to s3://bucket/folder")
        self.settings = settings
        self.root = uri.rstrip("/")
        self.remote = self.root.startswith(("s3://", "s3a://"))
        if self.remote:
            checked_endpoint(settings.aws_endpoint_url)
            self.s3 = parse_s3_uri(self.root)
            self.storage_options = delta_storage_options(settings)
            self._client = None
        else:
            self.root = str(Path(self.root).expanduser().resolve())
            self.storage_options = None
            if Path(self.root).exists() and not Path(self.root).is_dir():
                raise ConfigError(f"DELTA_URI={self.root} is a file, not a folder",
                                  "point DELTA_URI at a folder (made if missing) or at s3://bucket/folder")
        self._needs_full: set[str] = set()
        self._overwrite: set[str] = set()
        self._rekeyed: set[str] = set()
        self._schema_errors: dict[str, str] = {}

    # --- plumbing ------------------------------------------------------------------
    def describe(self) -> str:
        where = f" at {self.settings.shown_url(self.settings.aws_endpoint_url)}" if self.remote and self.settings.aws_endpoint_url else ""
        return f"Delta Lake {self.root}{where}"

    def uri(self, table: str) -> str:
        return f"{self.root}/{folder(table)}"

    def _error_types(self) -> tuple[type, ...]:
        dl = _deltalake()
        errs: list[type] = [dl.exceptions.DeltaError, OSError, pa.ArrowException]
        with contextlib.suppress(ImportError):
            from botocore.exceptions import BotoCoreError, ClientError
            errs += [BotoCoreError, ClientError]
        return tuple(errs)

    def _errors(self, where: str) -> AbstractContextManager[None]:
        """delta-rs, Arrow, S3 and file errors inside become one-line ``DestinationError``s naming ``where``."""
        return errors_as_one_line(self.settings, where, self.root, self._error_types())

    def client(self):
        if self._client is None:
            self._client = boto3_client(self.settings)
        return self._client

    def close(self) -> None:
        pass

    def ping(self) -> float:
        with self._errors("bucket"):
            t = time.perf_counter()
            if self.remote:
                self.client().head_bucket(Bucket=self.s3.bucket)
            else:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            return time.perf_counter() - t

    def _lock_object(self) -> S3Lock | FileLock:
        if self.remote:
            return S3Lock(self.client(), self.s3.bucket, self.s3.key(LOCK_NAME), self.settings, self.root)
        return FileLock(Path(self.root) / LOCK_NAME)

    def lock(self):
        return self._lock_object()()

    def running(self) -> str | None:
        return self._lock_object().running()

    def _table(self, name: str):
        dl = _deltalake()
        with self._errors("open"):
            uri = self.uri(name)
            if not dl.DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
                if self.remote:
                    self.client().head_bucket(Bucket=self.s3.bucket)  # a clear error for a bad bucket
                return None
            return dl.DeltaTable(uri, storage_options=self.storage_options)

    @staticmethod
    def _meta(dt) -> dict:
        """Custom metadata of the newest commit nwlib made on the table."""
        for limit in (20, None):
            for commit in dt.history(limit):
                if META_WATERMARK in commit:
                    return commit
        return {}

    # --- state ---------------------------------------------------------------------
    def states(self, tables: Sequence[str]) -> dict[str, TableState]:
        out = {}
        for t in tables:
            dt = self._table(t)
            if dt is None:
                out[t] = TableState()
                continue
            with self._errors("read state"):
                meta = self._meta(dt)
                if not meta:
                    out[t] = TableState()
                    continue
                cols = tuple(Column(c["name"], c["type"]) for c in json.loads(meta.get(META_COLUMNS) or "[]"))
                held = json.loads(meta.get(META_STATE) or "{}")
                count = dt.count()
                total = held.get("soma")
                if held.get("linhas") != count:
                    total = None      # the commit expected another count: its sum cannot be trusted either
                out[t] = TableState(Watermark.from_json(json.loads(meta[META_WATERMARK])), count, cols, True,
                                    None if total is None else int(total), held.get("versao"), held.get("revisao"))
        return out

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        states = self.states([s.name for s in specs])
        self._recover_ledger(specs)

        def reserved(spec: TableSpec) -> str | None:
            if spec.name == LEDGER_TABLE:
                return f"lake table {spec.name!r} collides with nwlib's run history table — rename the lake table"
            return None
        stored = {s.name: {c.name: c.type for c in states[s.name].columns} for s in specs}
        notes, rewrite, self._schema_errors = prepare_files(specs, stored, full_refresh, self.settings.partition_columns, reserved)
        # a type change: the table is written again, with the new schema
        self._needs_full, self._overwrite = set(rewrite), set(full_refresh) | rewrite
        self._rekeyed = rekeyed(specs, stored, self._overwrite)
        return notes

    def schema_errors(self) -> dict[str, str]:
        return dict(self._schema_errors)

    def _recover_ledger(self, specs: Sequence[TableSpec]) -> None:
        """Add the ledger row of a table commit whose run died before writing it (from the commit's metadata)."""
        led = self._table(LEDGER_TABLE)
        seen: set = set()
        if led is not None:
            with self._errors("read controle_cargas"):
                t = led.to_pyarrow_dataset().to_table(columns=["run_id", "tabela_nome"], use_threads=False)
            seen = set(zip(t.column("run_id").to_pylist(), t.column("tabela_nome").to_pylist()))
        rows = []
        for spec in specs:
            dt = self._table(spec.name)
            with self._errors("read state"):
                meta = self._meta(dt) if dt is not None else {}
            if not meta.get(META_LEDGER) or (meta.get(META_RUN), spec.name) in seen:
                continue
            info, m = json.loads(meta[META_LEDGER]), meta.get("operationMetrics", {})
            deletes = info["modo"] == "merge deletes"
            ins = 0 if deletes else int(m.get("num_target_rows_inserted", m.get("num_added_rows", 0)))
            upd = 0 if deletes else int(m.get("num_target_rows_updated", 0))
            row = ledger_row(meta[META_RUN], spec.name, info["modo"] + " (recovered)", OK, datetime.fromisoformat(info["iniciado_em"]),
                                   linhas_inseridas=ins, linhas_atualizadas=upd, linhas_carregadas=ins + upd,
                                   linhas_excluidas=int(m.get("num_target_rows_deleted", 0)) if deletes else 0,
                                   watermark_antes=info["watermark_antes"], watermark_depois=meta[META_WATERMARK])
            row["finalizado_em"] = row["ultima_carga"] = datetime.fromtimestamp(meta["timestamp"] / 1000, tz=timezone.utc)
            rows.append(row)
        if rows:
            self._ledger(rows)

    def needs_full(self) -> frozenset[str]:
        return frozenset(self._needs_full)

    # --- loading -------------------------------------------------------------------
    def _commit(self, spec: TableSpec, state: TableState, run_id: str, token: str, dt, mode: str, wm_before: Watermark):
        """Commit properties carrying the state, and enough of the ledger row to recover it."""
        dl = _deltalake()
        app = APP_ID.format(table=spec.name)
        version = (dt.transaction_version(app) or 0) + 1 if dt is not None else 1
        ledger = {"modo": mode, "watermark_antes": json.dumps(wm_before.to_json()), "iniciado_em": now().isoformat()}
        held = {"linhas": state.row_count, **state.fingerprints_json()}
        meta = {META_WATERMARK: json.dumps(state.watermark.to_json()), META_RUN: run_id, META_TOKEN: token, META_LEDGER: json.dumps(ledger),
                META_COLUMNS: json.dumps([{"name": c.name, "type": c.type} for c in spec.columns]), META_STATE: json.dumps(held)}
        return dl.CommitProperties(custom_metadata=meta, app_transactions=[dl.Transaction(app, version)])

    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        results = {}
        for cs in changes:
            started = now()
            with self._errors(f"load {cs.spec.name}"):
                ins, upd = self._apply(cs, read, run_id, progress)
            results[cs.spec.name] = LoadResult(ins, upd)
            self._ledger([ledger_row(run_id, cs.spec.name, cs.spec.mode + (" full" if cs.full else " incremental"), OK, started,
                                     linhas_inseridas=ins, linhas_atualizadas=upd,
                                           watermark_antes=json.dumps(cs.watermark_before.to_json()),
                                           watermark_depois=json.dumps(cs.watermark_after.to_json()))])
        return results

    def _apply(self, cs: ChangeSet, read: ReaderFactory, run_id: str, progress: Progress) -> tuple[int, int]:
        dl = _deltalake()
        spec = cs.spec
        dt = self._table(spec.name)
        token = _token(cs, "load")
        if dt is not None:
            last = self._meta(dt)
            if last.get(META_TOKEN) == token and last.get(META_RUN) == run_id:
                m = last.get("operationMetrics", {})
                return int(m.get("num_target_rows_inserted", m.get("num_added_rows", 0))), int(m.get("num_target_rows_updated", 0))
        overwrite = spec.mode == REPLACE or (cs.full and spec.name in self._overwrite)
        before = 0 if dt is None or overwrite else dt.count()
        expected = state_to_store(cs, cs.rows if overwrite or spec.mode != MERGE else cs.inserts, before, whole=overwrite)
        props = self._commit(spec, expected, run_id, token, dt, spec.mode + (" full" if cs.full else " incremental"), cs.watermark_before)
        if dt is None or overwrite or spec.mode == APPEND or cs.rows == 0 or (cs.full and dt.count() == 0):
            counted = [0]

            def count(table, n):
                counted[0] += n
                progress(table, n)
            reader = read(cs) if cs.rows or overwrite or dt is None else None
            if reader is None:  # nothing to send: a commit that only moves the watermark
                if cs.watermark_after == cs.watermark_before:
                    return 0, 0
                schema = _arrow_schema(dt)
                reader = pa.RecordBatchReader.from_batches(schema, [])
            mode = "overwrite" if overwrite and dt is not None else "append"
            column = self.settings.partition_columns.get(spec.name)
            anew = dt is None or mode == "overwrite"
            refused: list[DestinationError] = []
            with _refusal_first(refused):
                dl.write_deltalake(self.uri(spec.name),
                                   delta_reader(reader, spec.name, count, partition=column if anew else _partition(dt), refused=refused),
                                   mode=mode, partition_by=[column] if column and anew else None,
                                   schema_mode="overwrite" if mode == "overwrite" else ("merge" if dt is not None else None),
                                   storage_options=self.storage_options, commit_properties=props)
            return counted[0], 0
        names = set(_arrow_schema(dt).names)
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in spec.primary_key)
        rest = [c for c in spec.non_key_columns]
        refused: list[DestinationError] = []
        source = delta_reader(read(cs), spec.name, progress, _arrow_schema(dt), partition=_partition(dt), refused=refused)
        merger = dt.merge(source, predicate=on, source_alias="s", target_alias="t", merge_schema=True, commit_properties=props)
        if rest and all(c in names for c in rest):
            differs = " OR ".join(f"(t.{_q(c)} IS DISTINCT FROM s.{_q(c)})" for c in rest)
            merger = merger.when_matched_update_all(predicate=differs)
        elif rest:
            merger = merger.when_matched_update_all()  # a new column: every matched row gets it
        with _refusal_first(refused):
            m = merger.when_not_matched_insert_all().execute()
        return int(m.get("num_target_rows_inserted", 0)), int(m.get("num_target_rows_updated", 0))

    # --- fingerprints and deletes -----------------------------------------------------
    def fingerprints(self, spec: TableSpec) -> pa.RecordBatchReader:
        dt = self._table(spec.name)
        if dt is None or spec.name in self._rekeyed:
            return nothing_held(spec)
        with self._errors(f"read {spec.name}"):
            dataset = dt.to_pyarrow_dataset()
            if FP in dataset.schema.names:
                return dataset.scanner(columns=[*spec.primary_key, FP]).to_reader()
            # Written by an older nwlib: every fingerprint unknown.
            table = dataset.to_table(columns=list(spec.primary_key))
            return table.append_column(FP, pa.nulls(table.num_rows, pa.int64())).to_reader()

    def delete(self, spec: TableSpec, keys: pa.RecordBatchReader, run_id: str, revision: str,
               protect: Sequence[ForeignKey] = ()) -> DeleteResult:
        """One MERGE … WHEN MATCHED DELETE commit; Delta enforces no foreign keys, so none are held back."""
        started = now()
        dt = self._table(spec.name)
        if dt is None:
            return DeleteResult()
        gone = keys.read_all()
        if not gone.num_rows:
            return DeleteResult()
        with self._errors("read state"):
            last = self._meta(dt)
            held = json.loads(last.get(META_STATE) or "{}")
            count = dt.count()
        total = held.get("soma")
        fps = gone.column(FP)
        if total is not None and fps.null_count == 0 and held.get("linhas") == count:
            # Summed as Python integers: Arrow's int64 sum wraps past 2^63 (5,000 fingerprints were off by 27 * 2^64).
            total = str(int(total) - sum(fps.to_pylist()))
        else:
            total = None
        expected = TableState(Watermark.from_json(json.loads(last[META_WATERMARK])) if last else Watermark(), count - gone.num_rows, (),
                              True, None if total is None else int(total), held.get("versao"), revision)
        target = _arrow_schema(dt)
        key_schema = pa.schema([target.field(k) for k in spec.primary_key])
        source = gone.select(list(spec.primary_key))
        source = pa.Table.from_batches([b.cast(key_schema) for b in delta_reader(source.to_reader(), spec.name, None)], key_schema)
        on = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in spec.primary_key)
        token = hashlib.sha256(f"{spec.name}:delete:{run_id}:{time.time_ns()}".encode()).hexdigest()[:24]
        props = self._commit(spec, expected, run_id, token, dt, "merge deletes", expected.watermark)
        with self._errors(f"delete from {spec.name}"):
            metrics = dt.merge(source, predicate=on, source_alias="s", target_alias="t", commit_properties=props).when_matched_delete().execute()
        n = int(metrics.get("num_target_rows_deleted", 0))
        if n:
            self._ledger([ledger_row(run_id, spec.name, "merge deletes", OK, started, linhas_excluidas=n)])
        return DeleteResult(n, 0)

    # --- ledger --------------------------------------------------------------------
    def _ledger(self, rows: list[dict]) -> None:
        dl = _deltalake()
        table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
        with self._errors("write controle_cargas"):
            dl.write_deltalake(f"{self.root}/{LEDGER_TABLE}", table, mode="append", schema_mode="merge",
                               storage_options=self.storage_options)

    def record(self, run_id: str, reports: Sequence[TableReport]) -> None:
        """The run's rows written during it (loads, deletes) give way to one final row per table."""
        if not RUN_ID.match(run_id):
            raise DestinationError(f"run id {run_id!r} is not one nwlib made", "use nwlib.records.new_run_id()")
        rows = []
        for r in reports:
            row = report_row(run_id, r)
            row["erro"] = self.settings.redact(row["erro"]) if row["erro"] else None
            rows.append(row)
        led = self._table(LEDGER_TABLE)
        if led is not None:
            with self._errors("write controle_cargas"):
                led.delete(f"run_id = '{run_id}'")   # checked above: letters, digits, '.', '_' and '-' only
        self._ledger(rows)

    def history(self, limit: int = 200) -> list[dict]:
        return self._ledger_rows()[:limit]

    def run_history(self, runs: int) -> list[dict]:
        return newest_runs(self._ledger_rows(), runs)

    def _ledger_rows(self) -> list[dict]:
        """Every run's rows, one per table per run, newest first."""
        dt = self._table(LEDGER_TABLE)
        if dt is None:
            return []
        with self._errors("read controle_cargas"):
            # One thread: Arrow's scanner threads left running abort the process at exit now and then
            # ("terminate called without an active exception"); the ledger is small.
            rows = dt.to_pyarrow_dataset().to_table(use_threads=False).to_pylist()
        return merge_ledger_rows(rows)

    # --- reading back --------------------------------------------------------------
    def scan(self, spec: TableSpec) -> pa.RecordBatchReader:
        dt = self._table(spec.name)
        if dt is None:
            return pa.table({c.name: pa.array([], pa.string()) for c in spec.columns}).to_reader()
        import duckdb

        with self._errors(f"read {spec.name}"):
            dataset = dt.to_pyarrow_dataset()
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            con.register("nw_delta", dataset)
            select = file_exprs(spec.columns, set(dataset.schema.names))
            reader = con.execute(f"SELECT {select} FROM nw_delta").to_arrow_reader(self.settings.batch_size)
        self._scan_con = con  # keep the session alive while the reader is consumed
        return reader


def read_table(settings: Settings, table: str) -> pa.Table:
    """A synced table read back with deltalake (what Spark/Databricks would see)."""
    dest = DeltaDestination(settings)
    dt = dest._table(table)
    if dt is None:
        raise DestinationError(f"no Delta table {table!r} under {dest.root}", "run `nw sync` first")
    with dest._errors(f"read {table}"):
        return dt.to_pyarrow_table()



