"""The sync lock: a session advisory lock on a key derived from the schema.

Held by its own connection for the whole run.  A server restart ends that
session, so before every write the run checks it (:meth:`AdvisoryLock.check`)
and takes the lock again, or stops with one line when another run took it.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from ...errors import SyncInProgress
from ...settings import Settings
from .connection import classify, psycopg_module


class AdvisoryLock:
    def __init__(self, url: str, settings: Settings, schema: str):
        self.url, self.settings, self.schema = url, settings, schema
        self.key = int.from_bytes(hashlib.sha256(f"nwlib:{schema}".encode()).digest()[:8], "big", signed=True)
        self._conn = None
        self._held = False

    def _take(self):
        """A session holding this schema's advisory lock, or SyncInProgress."""
        psycopg = psycopg_module()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, application_name="nwlib-lock")
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()[0]
        except psycopg.Error as exc:
            raise classify(exc, self.settings, "lock") from None
        if not got:
            conn.close()
            raise SyncInProgress(f"another sync is running against schema {self.schema!r} of this destination",
                                 "wait for it to finish (see `nw status`) and retry")
        return conn

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._conn = self._take()
        self._held = True
        try:
            yield
        finally:
            self._held = False
            with contextlib.suppress(Exception):
                self._conn.close()  # closing the session releases the advisory lock
            self._conn = None

    def check(self) -> None:
        """Before each write: a server restart ends the lock's session too; take the lock again, or stop."""
        if not self._held:
            return  # not under hold() (a direct call)
        psycopg = psycopg_module()
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return
            except psycopg.Error:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        try:
            self._conn = self._take()   # a transient failure here is retried by the engine
        except SyncInProgress:
            raise SyncInProgress(f"this run lost its lock on schema {self.schema!r} (server restart?) and another sync took it",
                                 "this run stopped before writing more; let the other finish, then rerun `nw sync`") from None
