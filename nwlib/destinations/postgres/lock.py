"""The sync lock: one row of ``nw_trava`` with an owner and a lease, so it holds through any pooler.

A session advisory lock belongs to a server connection, and a transaction-mode pooler (Supabase's port
6543) hands a client a different one for every transaction: two runs could both "hold" it, or a lock
could stay on a pooled connection long after its run ended.  So the lock is data, guarded by an advisory
lock taken per *transaction* (released at commit, so it works through any pooler):

* a run **takes** the lock by writing its owner token into the schema's ``nw_trava`` row — when there is
  no row, when the row's lease has expired, or when its holder is a process on this machine that no
  longer runs (``kill -9``: taken over at once);
* while the run goes on, a **heartbeat** thread renews the lease every third of
  SYNC_LOCK_LEASE_SECONDS (60 s by default) on a connection of its own, also during a long write;
* every **write transaction** first takes the schema's transaction advisory lock and checks that this
  run still owns the row, and renews the lease just before it commits.  Taking over needs the same
  advisory lock, so a write commits only while its run holds the lock, and nobody takes the lock while
  a write is in flight;
* a run frozen *inside* a write (a paused VM, a sleeping laptop) stops renewing; once its lease has
  expired, the next run ends that write's server session (``pg_terminate_backend``: its transaction
  rolls back, nothing half-written stays) and takes over.  Woken up, the frozen run finds its
  connection gone and the lock taken, and stops before writing more;
* the run **deletes** the row when it ends.  A run killed on another machine leaves a row that lapses
  after the lease at most.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ...errors import DestinationError, SyncInProgress
from ...settings import Settings
from ...sql import ident, qualified
from .connection import Session, psycopg_module

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
        self._retry_token: str | None = None     # the token of an attempt that failed transiently (see hold)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.lost = False

    # --- taking and releasing ---------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        # A retry after a transient failure keeps the failed attempt's token: if that attempt's row committed and
        # only the answer was lost, the row is already ours (a new token would find "another sync is running").
        self.token, self._retry_token = self._retry_token or uuid.uuid4().hex, None
        self.lost = False
        try:
            self._take()
        except BaseException as exc:
            if isinstance(exc, DestinationError) and exc.transient:
                self._retry_token = self.token
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
        # A transient failure drops the connection (the engine retries with a new one), as in every write.
        with self.session.errors("lock"):
            self._take_on(self.session.conn)

    def _take_on(self, conn) -> None:
        ended: set[int] = set()
        self._ensure_table(conn)
        for _ in range(50):
            with conn.transaction():
                if conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.key]).fetchone()[0]:
                    if self._take_row(conn):
                        return
                    continue
                # A write is in flight.  Its run is alive unless its lease ran out (nothing renews it: frozen
                # or gone) or, on this machine, its process is gone.
                row = self._row(conn)
                writer = self._writer(conn)
                if row is None or not (row["expired"] or row["dead"]) or writer is None:
                    raise self._busy(row, writing=writer)
            if writer not in ended:       # once; then give its transaction a moment to roll back
                self._end_write(conn, writer, row)
                ended.add(writer)
            time.sleep(0.2)
        raise self._busy(self._row(conn))

    def _take_row(self, conn) -> bool:
        """Inside a transaction holding the advisory lock: write our token, or say who holds the lock."""
        if conn.execute(f"INSERT INTO {self.table} (recurso, dono, maquina, maquina_id, pid, processo, adquirida_em, renovada_em, "
                        f"expira_em) VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), clock_timestamp(), "
                        f"clock_timestamp() + make_interval(secs => %s)) ON CONFLICT (recurso) DO NOTHING RETURNING dono",
                        self._mine()).fetchone():
            return True
        row = self._row(conn)
        if row is None:
            return False   # its holder released it just now: try again
        if row["owner"] == self.token:
            self._renew(conn)
            return True    # this run's own row, written by an attempt whose answer was lost
        if not (row["expired"] or row["dead"]):
            raise self._busy(row)
        # Only if it is still as we read it: a heartbeat that renewed the lease meanwhile keeps it.
        taken = conn.execute(f"UPDATE {self.table} SET dono = %s, maquina = %s, maquina_id = %s, pid = %s, processo = %s, "
                             "adquirida_em = clock_timestamp(), renovada_em = clock_timestamp(), "
                             "expira_em = clock_timestamp() + make_interval(secs => %s) "
                             "WHERE recurso = %s AND dono = %s AND (expira_em < clock_timestamp() OR %s)",
                             [*self._mine()[1:], RESOURCE, row["owner"], row["dead"]]).rowcount
        if not taken:
            raise self._busy(self._row(conn))
        why = "its process is gone" if row["dead"] else f"its lease expired at {_utc(row['until'])}"
        log.warning("took over the sync lock of schema %s from %s pid %s: %s", self.schema, row["host"], row["pid"], why)
        return True

    def _row(self, conn) -> dict | None:
        row = conn.execute(f"SELECT dono, maquina, maquina_id, pid, processo, adquirida_em, expira_em, expira_em < clock_timestamp() "
                           f"FROM {self.table} WHERE recurso = %s", [RESOURCE]).fetchone()
        if row is None:
            return None
        owner, host, host_id, pid, started, since, until, expired = row
        return {"owner": owner, "host": host, "pid": pid, "since": since, "until": until, "expired": expired,
                "dead": host_id == machine_id() and not is_running(pid, started)}

    def _writer(self, conn) -> int | None:
        """The server process of the transaction holding the schema's advisory lock (a write in flight)."""
        hi, lo = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                           "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND pid <> pg_backend_pid()", [hi, lo]).fetchone()
        return row[0] if row else None

    def _end_write(self, conn, writer: int, row: dict) -> None:
        """End the server session of a write whose run stopped renewing its lease (or died): it rolls back."""
        psycopg = psycopg_module()
        try:
            conn.execute("SELECT pg_terminate_backend(%s)", [writer])
        except psycopg.Error:
            raise self._busy(row, writing=writer) from None
        log.warning("ended the write of a stopped sync on %s pid %s (server process %s): its lease expired at %s",
                    row["host"], row["pid"], writer, _utc(row["until"]))

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

    def _busy(self, row: dict | None, writing: int | None = None) -> SyncInProgress:
        holder = ""
        if row is not None:
            holder = f" (on {row['host']}, pid {row['pid']}, since {_utc(row['since'])}; its lease runs to {_utc(row['until'])})"
        stuck = ""
        if writing is not None and row is not None and (row["expired"] or row["dead"]):
            stuck = (f"; it is stuck inside a write — end it with SELECT pg_terminate_backend({writing}) "
                     "(its transaction rolls back) and rerun")
        return SyncInProgress(f"another sync is running against schema {self.schema!r} of this destination{holder}{stuck}",
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
        """First statements of a write transaction: take the schema's transaction advisory lock (no takeover
        while it is held) and check this run still owns the lock.  (Sent one by one: psycopg's pipeline mode
        failed with a ValueError, not a driver error, when a pooler's server session had been ended under it.)"""
        if self.token is None:
            return   # not under hold() (a direct call)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [self.key])
        row = conn.execute(f"SELECT dono FROM {self.table} WHERE recurso = %s", [RESOURCE]).fetchone()
        if row is None or row[0] != self.token:
            self.lost = True
            raise SyncInProgress(f"this run lost its lock on schema {self.schema!r} and another sync took it (this run was paused "
                                 "longer than its lease?)", "this run stopped before writing more; let the other finish, then rerun `nw sync`")

    def extend(self, conn) -> None:
        """Last statement of a write transaction: the lease starts again from now."""
        if self.token is not None:
            self._renew(conn)

    # --- for `nw status` -------------------------------------------------------------------
    def running(self, conn) -> str | None:
        """The sync holding the lock now, as one line for `nw status`, or None."""
        if conn.execute("SELECT to_regclass(%s)", [self.table]).fetchone()[0] is None:
            return None
        row = self._row(conn)
        if row is None:
            return None
        lapsed = " — its lease has lapsed: the next run takes over" if row["expired"] or row["dead"] else ""
        return f"a sync is running: on {row['host']}, pid {row['pid']}, since {_utc(row['since'])}{lapsed}"


def _utc(moment) -> str:
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
