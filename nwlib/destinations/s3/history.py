"""The S3 run history: ``<prefix>/_nw/controle_cargas/<run>-<seq>.jsonl``.

Each commit writes its ledger rows before the state that commits it, so a row
whose run never committed its sequence is not shown.
"""
from __future__ import annotations

import json
from datetime import datetime

from ...records import LEDGER_TABLE, TIME_COLUMNS, merge_ledger_rows
from ..objectstore import S3Location
from .layout import STATE_DIR
from .state import Errors


class History:
    def __init__(self, client, loc: S3Location, errors: Errors):
        self.client, self.loc, self.errors = client, loc, errors

    def key(self, name: str) -> str:
        return self.loc.key(STATE_DIR, LEDGER_TABLE, name)

    def put(self, name: str, rows: list[dict]) -> None:
        body = "".join(json.dumps(r, default=str, sort_keys=True) + "\n" for r in rows).encode()
        with self.errors("ledger"):
            self.client.put_object(Bucket=self.loc.bucket, Key=self.key(name), Body=body)

    def read(self, runs: dict, limit: int) -> list[dict]:
        """Committed ledger rows, newest first; ``runs`` is the state's run id → committed sequence."""
        with self.errors("read history"):
            rows: list[dict] = []
            for key in sorted(self._keys(), reverse=True):
                if len(rows) >= limit:
                    break
                rows += self._rows(key, runs)
        return merge_ledger_rows(rows)[:limit]

    def read_runs(self, runs: dict, newest: int) -> list[dict]:
        """Every committed ledger row of the ``newest`` newest runs (file names start with the run id, which
        sorts in start order), newest first."""
        with self.errors("read history"):
            by_run: dict[str, list[str]] = {}
            for key in self._keys():
                by_run.setdefault(key.rpartition("/")[2].rpartition("-")[0], []).append(key)
            rows: list[dict] = []
            for run_id in sorted(by_run, reverse=True)[:newest]:
                for key in by_run[run_id]:
                    rows += self._rows(key, runs)
        return merge_ledger_rows(rows)

    def _keys(self) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.loc.bucket, Prefix=self.key("")):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def _rows(self, key: str, runs: dict) -> list[dict]:
        out = []
        body = self.client.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read().decode()
        for line in body.splitlines():
            r = json.loads(line)
            seq = r.pop("seq", None)
            if seq is not None and int(runs.get(r["run_id"], -1)) < int(seq):
                continue  # written by a run that died before its commit
            for k in TIME_COLUMNS:
                if r.get(k):
                    r[k] = datetime.fromisoformat(r[k])
            out.append(r)
        return out
