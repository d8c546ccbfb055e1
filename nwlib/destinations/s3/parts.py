"""Change files: written as local ZSTD Parquet parts and uploaded; found again by listing.

Rows stream from the lake through a local Parquet file per part (at most
``PART_ROWS`` rows) and a multipart upload, so memory stays bounded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from ...records import now
from ...sql import ident
from ..base import Progress
from ..objectstore import S3Location
from .layout import OP, PART_KEY, PART_ROWS, folder, part_name
from .state import Errors


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)


class Parts:
    def __init__(self, client, loc: S3Location, errors: Errors, tmp: Path):
        self.client, self.loc, self.errors, self.tmp = client, loc, errors, tmp

    def prefix(self, table: str, run_id: str) -> str:
        return self.loc.key(folder(table), f"dt={now():%Y-%m-%d}", f"run={run_id}")

    def _upload(self, path: Path, key: str) -> None:
        with self.errors("upload"):
            self.client.upload_file(str(path), self.loc.bucket, key, Config=_transfer_config())

    def write(self, table: str, reader: pa.RecordBatchReader, run_id: str, seq: int,
              progress: Progress | None) -> tuple[list[Path], int, int]:
        """Stream batches into local parts and upload each; returns (local parts, inserted, updated)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        prefix = self.prefix(table, run_id)
        local_dir = self.tmp / hashlib.md5(f"{table}/{seq}".encode()).hexdigest()[:12]
        local_dir.mkdir(parents=True, exist_ok=True)
        parts: list[Path] = []
        ins = upd = 0
        writer, rows_in_part = None, 0
        for batch in reader:
            if not batch.num_rows:
                continue
            if writer is None:
                parts.append(local_dir / part_name(seq, len(parts)))
                writer, rows_in_part = pq.ParquetWriter(parts[-1], batch.schema, compression="zstd"), 0
            writer.write_batch(batch)
            rows_in_part += batch.num_rows
            ops = batch.column(batch.schema.get_field_index(OP))
            n_ins = pc.sum(pc.equal(ops, "insert")).as_py() or 0
            n_del = pc.sum(pc.equal(ops, "delete")).as_py() or 0
            ins += n_ins
            upd += batch.num_rows - n_ins - n_del
            if progress:
                progress(table, batch.num_rows)
            if rows_in_part >= PART_ROWS:
                writer.close()
                writer = None
                self._upload(parts[-1], f"{prefix}/{parts[-1].name}")
        if writer is not None:
            writer.close()
            self._upload(parts[-1], f"{prefix}/{parts[-1].name}")
        return parts, ins, upd

    def write_partitioned(self, con, table: str, sql: str, params: list, column: str, run_id: str, seq: int,
                          progress: Progress | None) -> tuple[list[Path], int, int]:
        """PARTITION_COLUMNS: one folder per value of ``column`` (``<column>=<value>/part-…``) under the run's folder."""
        local = self.tmp / f"p{seq}-{hashlib.md5(table.encode()).hexdigest()[:12]}"
        with self.errors(f"load {table}"):
            con.execute(f"CREATE OR REPLACE TEMP TABLE nw_out AS {sql}", params)
        ins, upd, total = con.execute(f"SELECT count(*) FILTER (WHERE {OP} = 'insert'), count(*) FILTER (WHERE {OP} = 'update'), "
                                      "count(*) FROM nw_out").fetchone()
        target = str(local).replace("'", "''")   # our own temp folder
        con.execute(f"COPY nw_out TO '{target}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({ident(column)}), "
                    "WRITE_PARTITION_COLUMNS true, OVERWRITE_OR_IGNORE true)")
        con.execute("DROP TABLE nw_out")
        prefix = self.prefix(table, run_id)
        parts = sorted(local.rglob("*.parquet"))
        for n, path in enumerate(parts):
            self._upload(path, f"{prefix}/{path.parent.relative_to(local).as_posix()}/{part_name(seq, n)}")
        if progress and total:
            progress(table, total)
        return parts, ins, upd

    def committed(self, table: str, state: dict) -> list[str]:
        """Keys of the table's files that committed runs made, oldest commit first."""
        runs = state["runs"]
        base = int(state["tables"].get(table, {}).get("base_seq", 0))
        found = []
        with self.errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.loc.bucket, Prefix=self.loc.key(folder(table)) + "/dt=")
            for page in pages:
                for obj in page.get("Contents", []):
                    m = PART_KEY.search(obj["Key"])
                    if not m:
                        continue
                    run, seq = m.group(1), int(m.group(2))
                    if run in runs and seq <= int(runs[run]) and seq >= base:
                        found.append((seq, int(m.group(3)), obj["Key"]))
        return [k for _, _, k in sorted(found)]
