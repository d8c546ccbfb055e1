"""``<prefix>/_nw/state.json``: the commit point of the S3 destination.

It holds each table's watermark, row count, columns, key and mode, and
``runs`` (run id → last committed sequence).  A change file counts only when
its run's committed sequence reaches its own, so one PUT of this object
commits a step: a crash before it leaves that step's files invisible.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from contextlib import AbstractContextManager

from ..objectstore import S3Location
from .layout import STATE_DIR

Errors = Callable[[str], AbstractContextManager]


def empty_state() -> dict:
    return {"format": 1, "seq": 0, "runs": {}, "tables": {}}


class StateStore:
    def __init__(self, client, loc: S3Location, errors: Errors):
        self.client, self.loc, self.errors = client, loc, errors
        self.key = loc.key(STATE_DIR, "state.json")
        self._state: dict | None = None

    def forget(self) -> None:
        """Read it again next time (another run may have committed since)."""
        self._state = None

    def read(self) -> dict:
        if self._state is None:
            with self.errors("bucket"):
                try:
                    body = self.client.get_object(Bucket=self.loc.bucket, Key=self.key)["Body"].read()
                    self._state = json.loads(body)
                except self.client.exceptions.NoSuchKey:
                    self._state = empty_state()
        return self._state

    def draft(self) -> dict:
        """A copy to change and then :meth:`write`."""
        return copy.deepcopy(self.read())

    def write(self, state: dict) -> None:
        body = json.dumps(state, sort_keys=True, default=str).encode()
        with self.errors("commit"):
            self.client.put_object(Bucket=self.loc.bucket, Key=self.key, Body=body)
        self._state = state
