"""The sync lock: one row of ``nw_trava`` with an owner and a lease, so it holds through any pooler.

A session advisory lock belongs to a server connection, and a transaction-mode pooler (Supabase's port
6543) hands a client a different one for every transaction: two runs could both "hold" it, or a lock
could stay on a pooled connection long after its run ended.  So the lock is data:

* a run **takes** the lock by writing its owner token into the schema's ``nw_trava`` row — when there is
  no row, when the row's lease has expired, or when its holder is a process on this machine that no
  longer runs (``kill -9``: taken over at once);
* while the run goes on, a **heartbeat** thread renews the lease every third of
  SYNC_LOCK_LEASE_SECONDS (60 s by default) on a connection of its own;
* every **write transaction** first locks the row (``FOR UPDATE``) and checks that this run still owns
  it, and renews the lease just before it commits.  So a write commits only while its run holds the
  lock, and nobody takes the lock while a write is in flight (taking uses ``NOWAIT``).  A run whose
  lease lapsed (the process was paused) and was taken over stops before writing more;
* the run **deletes** the row when it ends.  A run killed on another machine leaves a row that lapses
  after the lease at most.

Each step is one short transaction, so it works the same directly, through a session pooler and
through a transaction pooler.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from ...errors import SyncInProgress
from ...settings import Settings
from ...sql import ident, qualified
from .connection import Session, classify, psycopg_module

log = logging.getLogger("nwlib.postgres")

LOCK_TABLE = "nw_trava"
RESOURCE = "sync"
COLUMNS = {
    "recurso": "text PRIMARY KEY",
    "dono": "text NOT NULL",              # the holder's token (new for every run)
    "maquina": "text",                    # host name, for people
    "maquina_id": "text",                 # host name + boot id + pid namespace: "this machine" for the dead-process test
    "pid": "integer",
    "processo": "text",                   # the holder's start time on its machine (a reused pid is another process)
    "adquirida_em": "timestamptz NOT NULL",
    "renovada_em": "timestamptz NOT NULL",
    "expira_em": "timestamptz NOT NULL",
}


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine_id() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{namespace}"


def process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None when no such process runs ('' off Linux)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        return stat.rpartition(")")[2].split()[19]
    if Path("/proc/self/stat").exists():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def is_running(pid: int | None, started: str | None) -> bool:
    if pid is None:
        return True   # nothing to go by: only the lease can tell
    now = process_start(pid)
    return now is not None and (not started or not now or now == started)


class LeaseLock:
    def __init__(self, session: Session, settings: Settings, schema: str, heartbeat: Session):
        self.session, self.settings, self.schema = session, settings, schema
        self.table = qualified(schema, LOCK_TABLE)
        self.lease = float(settings.sync_lock_lease_seconds)
        self.key = int.from_bytes(hashlib.sha256(f"nwlib:{schema}".encode()).digest()[:8], "big", signed=True)
        self._beat_session = heartbeat
        self.token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False

    # --- taking and releasing ---------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.token = uuid.uuid4().hex
        self.lost = False
        try:
            self._take()
        except BaseException:
            self.token = None
            raise
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="nwlib-lock-heartbeat", daemon=True)
        self._beat.start()
        try:
            yield
        finally:
            self._stop.set()
            self._beat.join(timeout=5)
            self._beat = None
            with contextlib.suppress(Exception):
                self.session.conn.execute(f"DELETE FROM {self.table} WHERE recurso = %s AND dono = %s", [RESOURCE, self.token])
            self._beat_session.reset()
            self.token = None

    def _take(self) -> None:
        psycopg = psycopg_module()
        conn = self.session.conn
        try:
            self._ensure_table(conn)
            for _ in range(3):   # the row may vanish (its holder ended) between the two statements: try again
                with conn.transaction():
                    if conn.execute(f"INSERT INTO {self.table} (recurso, dono, maquina, maquina_id, pid, processo, adquirida_em, renovada_em, "
                                    f"expira_em) VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp(), "
                                    f"clock_timestamp() + make_interval(secs => %s)) ON CONFLICT (recurso) DO NOTHING RETURNING dono",
                                    self._mine()).fetchone():
                        return
                    try:
                        row = conn.execute(f"SELECT dono, maquina, maquina_id, pid, processo, adquirida_em, expira_em, "
                                           f"expira_em < clock_timestamp() FROM {self.table} WHERE recurso = %s FOR UPDATE NOWAIT",
                                           [RESOURCE]).fetchone()
                    except psycopg.errors.LockNotAvailable:
                        raise self._busy(None) from None   # the holder is committing a write right now
                    if row is None:
                        continue
                    _, host, host_id, pid, started, since, until, expired = row
                    dead = host_id == machine_id() and not is_running(pid, started)
                    if not (expired or dead):
                        raise self._busy(row)
                    conn.execute(f"UPDATE {self.table} SET dono = %s, maquina = %s, maquina_id = %s, pid = %s, processo = %s, "
                                 "adquirida_em = clock_timestamp(), renovada_em = clock_timestamp(), "
                                 "expira_em = clock_timestamp() + make_interval(secs => %s) WHERE recurso = %s", [*self._mine()[1:], RESOURCE])
                    why = "its process is gone" if dead else f"its lease expired at {until:%Y-%m-%d %H:%M:%S %Z}"
                    log.warning("took over the sync lock of schema %s from %s pid %s: %s", self.schema, host, pid, why)
                    return
            raise self._busy(None)
        except psycopg.Error as exc:
            raise classify(exc, self.settings, "lock") from None

    def _mine(self) -> list:
        me = os.getpid()
        return [RESOURCE, self.token, socket.gethostname(), machine_id(), me, process_start(me) or "", self.lease]

    def _ensure_table(self, conn) -> None:
        if conn.execute("SELECT to_regclass(%s)", [self.table]).fetchone()[0] is not None:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [self.key])   # two first runs: one creates, the other waits
            if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}")
            cols = ", ".join(f"{ident(n)} {t}" for n, t in COLUMNS.items())
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} ({cols})")

    def _busy(self, row) -> SyncInProgress:
        holder = ""
        if row is not None:
            _, host, _, pid, _, since, until, _ = row
            holder = f" (on {host}, pid {pid}, since {since:%Y-%m-%d %H:%M:%S %Z}; its lease runs to {until:%H:%M:%S %Z})"
        return SyncInProgress(f"another sync is running against schema {self.schema!r} of this destination{holder}",
                              "wait for it to finish (see `nw status`) and retry; a run killed elsewhere releases it when its lease ends "
                              f"(SYNC_LOCK_LEASE_SECONDS={self.lease:g})")

    # --- while running ---------------------------------------------------------------------
    def _heartbeat(self) -> None:
        every = max(0.5, self.lease / 3)
        while not self._stop.wait(every):
            try:
                if not self._renew(self._beat_session.conn):
                    self.lost = True
                    return
            except Exception as exc:  # noqa: BLE001 - the next beat (or the next write's check) tries again
                log.debug("lock heartbeat failed: %s", self.settings.redact(str(exc)))
                self._beat_session.reset()

    def _renew(self, conn) -> bool:
        return conn.execute(f"UPDATE {self.table} SET renovada_em = clock_timestamp(), expira_em = clock_timestamp() + make_interval(secs => %s) "
                            "WHERE recurso = %s AND dono = %s", [self.lease, RESOURCE, self.token]).rowcount == 1

    def confirm(self, conn) -> None:
        """First statement of a write transaction: lock the row and check this run still owns it."""
        if self.token is None:
            return   # not under hold() (a direct call)
        row = conn.execute(f"SELECT dono FROM {self.table} WHERE recurso = %s FOR UPDATE", [RESOURCE]).fetchone()
        if row is None or row[0] != self.token:
            self.lost = True
            raise SyncInProgress(f"this run lost its lock on schema {self.schema!r} and another sync took it (this run was paused "
                                 "longer than its lease?)", "this run stopped before writing more; let the other finish, then rerun `nw sync`")

    def extend(self, conn) -> None:
        """Last statement of a write transaction: the lease starts again from now."""
        if self.token is not None:
            self._renew(conn)

    # --- for `nw status` -------------------------------------------------------------------
    def holder(self, conn) -> dict | None:
        """The running sync's host, pid and lease, or None."""
        if conn.execute("SELECT to_regclass(%s)", [self.table]).fetchone()[0] is None:
            return None
        row = conn.execute(f"SELECT maquina, pid, adquirida_em, expira_em, expira_em < clock_timestamp() FROM {self.table} "
                           "WHERE recurso = %s", [RESOURCE]).fetchone()
        if row is None:
            return None
        return {"host": row[0], "pid": row[1], "since": row[2], "lease_until": row[3], "expired": row[4]}
