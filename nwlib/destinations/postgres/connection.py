"""The PostgreSQL session nwlib writes through, and driver errors turned into one clear line."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ...errors import DestinationError, first_line, missing_dependency
from ...settings import Settings

# SQLSTATE classes that a retry can fix.
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300"}
TRANSIENT_TEXT = ("connection refused", "could not connect", "server closed the connection", "connection reset",
                  "terminating connection", "the database system is starting up", "the database system is shutting down",
                  "consuming input failed", "lost synchronization", "connection timed out", "no connection to the server",
                  "broken pipe", "ssl syscall error", "timeout expired", "the connection is closed",
                  "no such file or directory")  # a Unix socket vanishes while its server restarts


def psycopg_module():
    try:
        import psycopg
    except ImportError:
        raise missing_dependency("psycopg[binary]") from None
    return psycopg


def classify(exc: Exception, settings: Settings | None = None, where: str = "") -> DestinationError:
    """Turn a driver error into one clear line, transient or not."""
    psycopg = psycopg_module()
    text = first_line(exc)
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


def open_connection(url: str, settings: Settings, application_name: str = "nwlib", where: str = "connect"):
    """A new autocommit connection in UTC with the interval style the read-back expects."""
    psycopg = psycopg_module()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name=application_name)
    except psycopg.Error as exc:
        raise classify(exc, settings, where) from None
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET IntervalStyle = 'postgres'")
    return conn


class Session:
    """One lazily opened connection, reopened after a transient failure."""

    def __init__(self, url: str, settings: Settings):
        self.url = url
        self.settings = settings
        self._conn = None

    @property
    def conn(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = open_connection(self.url, self.settings)
        return self._conn

    def reset(self) -> None:
        """Drop the connection (after a transient failure) so the next use reconnects."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def errors(self, where: str) -> Iterator[None]:
        """Driver errors inside become one-line ``DestinationError``s naming ``where``."""
        psycopg = psycopg_module()
        try:
            yield
        except psycopg.Error as exc:
            err = classify(exc, self.settings, where)
            if err.transient:
                self.reset()
            raise err from None
