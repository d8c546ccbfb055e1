"""The PostgreSQL session nwlib writes through, and driver errors turned into one clear line.

Every connection works the same directly and through a pooler, transaction mode included (Supabase's
port 6543, pgbouncer): no server-side prepared statements (``prepare_threshold=None``), no session
state (settings a statement needs are ``SET LOCAL`` inside its transaction; temporary tables are
``ON COMMIT DROP``; the sync lock is a row, see :mod:`.lock`).

Timeouts: a connection must open *and answer a first query* within ``DB_CONNECT_TIMEOUT`` seconds
(3 by default).  The first answer matters behind a pooler: a pooler whose server is down accepts the
login and then holds every query (pgbouncer for ``query_wait_timeout``, 120 s by default, and a cancel
request does not reach it), so the socket is shut after the deadline and the attempt fails as transient.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Mapping

from ...errors import DestinationError, first_line, missing_dependency
from ...settings import Settings

# SQLSTATE classes that a retry can fix.
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300"}
TRANSIENT_TEXT = ("connection refused", "could not connect", "server closed the connection", "connection reset",
                  "terminating connection", "the database system is starting up", "the database system is shutting down",
                  "consuming input failed", "lost synchronization", "connection timed out", "no connection to the server",
                  "broken pipe", "ssl syscall error", "timeout expired", "the connection is closed", "the connection is lost",
                  "ssl connection has been closed unexpectedly", "terminating connection due to administrator command",
                  "no such file or directory",  # a Unix socket vanishes while its server restarts
                  "another command is already in progress")  # a connection an interrupted statement left busy: dropped, retried
RETRY_HINT = "check that the server is up and reachable (nw sync retries such faults MAX_RETRIES times)"
# pgbouncer's (and Supavisor's) words for "my server is down"
POOLER_DOWN_TEXT = ("server_login_retry", "query_wait_timeout", "server conn crashed", "pgbouncer cannot connect to server",
                    "client_login_timeout", "database is not available")
PASSWORD_TEXT = ("password authentication failed", "sasl authentication failed", "authentication failed for user",
                 "no password supplied", "password is required", "scram", "wrong password")
CERTIFICATE_TEXT = ("certificate", "ssl error", "sslmode", "root cert", "tlsv1 alert", "server does not support ssl",
                    "ssl is not enabled", "ssl negotiation", "ssl connection is required", "sslrootcert")

# TCP keepalives unless the URL sets its own: a long COPY through a NAT or a cloud load balancer is not
# cut as idle, and a peer that vanished is noticed in about a minute instead of never.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}


def psycopg_module():
    try:
        import psycopg
    except ImportError:
        raise missing_dependency("psycopg[binary]") from None
    return psycopg


class NoAnswer(Exception):
    """The server (or the pooler in front of it) accepted the connection but did not answer in time."""


def classify(exc: Exception, settings: Settings | None = None, where: str = "", lost: bool = False) -> DestinationError:
    """Turn a driver error into one clear line, transient or not.  ``lost``: the error left its connection
    unusable (broken, or a statement still unanswered after the transaction ended), whatever its words."""
    psycopg = psycopg_module()
    text = first_line(exc)
    for said_twice in ("connection failed: ", "connection is bad: "):   # psycopg's prefixes before libpq's own words
        while text.startswith(said_twice):
            text = text[len(said_twice):]
    if settings:
        text = settings.redact(text)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    low = text.lower()
    prefix = f"{where}: " if where else ""
    timeout = settings.db_connect_timeout if settings else 3
    if isinstance(exc, NoAnswer) or isinstance(exc, psycopg.errors.ConnectionTimeout) or "timeout expired" in low:
        return DestinationError(f"{prefix}PostgreSQL did not answer within {timeout} s (DB_CONNECT_TIMEOUT); behind a pooler, "
                                "its server may be down or its pool busy",
                                "check that the database is up; on a slow network or a busy pooler raise DB_CONNECT_TIMEOUT",
                                transient=True)
    if sqlstate == "28P01" or any(t in low for t in PASSWORD_TEXT):
        return DestinationError(f"{prefix}PostgreSQL (or its pooler) refused the password for this user",
                                "check DB_USER/DB_PASSWORD or the password in DATABASE_URL (Supabase: the database password, "
                                "user postgres.<project-ref> on the pooler)")
    if sqlstate == "3D000" or ("database" in low and "does not exist" in low) or "no such database" in low:
        return DestinationError(f"{prefix}{text}", "check DB_NAME (or the database in DATABASE_URL)")
    if sqlstate in ("42501",) or "permission denied" in low:
        return DestinationError(f"{prefix}{text}", "grant the sync user CREATE/INSERT/UPDATE/DELETE on DB_SCHEMA, or use another DB_USER")
    if sqlstate == "25006" or "read-only transaction" in low:
        return DestinationError(f"{prefix}the destination refuses writes ({text})", "point DB_HOST at a writable primary, or grant write access")
    if lost and isinstance(exc, psycopg.OperationalError):
        return DestinationError(f"{prefix}PostgreSQL connection failed: {text}", RETRY_HINT, transient=True)
    if isinstance(exc, psycopg.OperationalError) and any(t in low for t in CERTIFICATE_TEXT) and "connection refused" not in low:
        return DestinationError(f"{prefix}the TLS connection failed: {text}",
                                "check DB_SSLMODE (verify-full checks the host name) and DB_SSLROOTCERT (the CA certificate file, "
                                "e.g. Supabase's prod-ca-2021.crt)")
    if "no more connections allowed" in low or "too many clients" in low or "too many connections" in low:
        return DestinationError(f"{prefix}the server (or its pooler) has no room for another connection ({text})",
                                "close idle clients or raise the pooler's max_client_conn / the server's max_connections; "
                                "nw sync needs two connections (three on a fresh machine)", transient=True)
    if any(t in low for t in POOLER_DOWN_TEXT):
        return DestinationError(f"{prefix}the pooler cannot reach its PostgreSQL server ({text})",
                                "check that the database behind the pooler is up (Supabase: is the project paused?)", transient=True)
    if sqlstate in TRANSIENT_SQLSTATES or isinstance(exc, psycopg.OperationalError) and any(t in low for t in TRANSIENT_TEXT):
        return DestinationError(f"{prefix}PostgreSQL connection failed: {text}", RETRY_HINT, transient=True)
    if sqlstate.startswith("54"):       # program limit exceeded: an OperationalError to psycopg, yet no network matter
        return DestinationError(f"{prefix}{text}", "this table exceeds a PostgreSQL limit (1,600 columns, the size of a row or of "
                                "a key's index entry): leave columns out or shorten values (a view in the lake, or split the table) and rerun")
    if isinstance(exc, psycopg.OperationalError):
        return DestinationError(f"{prefix}{text}", "check DB_HOST, DB_PORT, DB_SSLMODE and the network")
    return DestinationError(f"{prefix}{text}", "see controle_cargas for the run; fix the data or schema and rerun")


@contextlib.contextmanager
def answer_within(conn, seconds: float) -> Iterator[None]:
    """Raise :class:`NoAnswer` if the statements inside have not returned after ``seconds``.

    A timer shuts the connection's socket down (a cancel request would not help: a pooler holding the
    query for a server it cannot reach does not forward it); the blocked read then fails at once."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        with contextlib.suppress(OSError, ValueError):
            dup = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if fired.is_set():
            raise NoAnswer(f"no answer within {seconds:g} s") from None
        raise
    finally:
        timer.cancel()
        timer.join()             # a timer that fired just now has shut the socket before we look (never a later one's)
    if fired.is_set():           # answered at the very moment the timer fired: the socket is gone anyway
        raise NoAnswer(f"no answer within {seconds:g} s")


def connect(params: Mapping[str, str], settings: Settings, application_name: str = "nwlib", where: str = "connect"):
    """A new autocommit connection that answered ``SELECT 1`` within DB_CONNECT_TIMEOUT; safe behind any pooler."""
    import time

    psycopg = psycopg_module()
    timeout = settings.db_connect_timeout
    kwargs = {**KEEPALIVES, "connect_timeout": str(timeout), "application_name": application_name, **params}
    started = time.monotonic()
    conn = None
    try:
        conn = psycopg.connect(autocommit=True, prepare_threshold=None, **kwargs)
        with answer_within(conn, max(1.0, timeout - (time.monotonic() - started))):
            conn.execute("SELECT 1").fetchone()
    except (psycopg.Error, NoAnswer) as exc:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        raise classify(exc, settings, where) from None
    return conn


def local_settings(conn) -> None:
    """Inside a transaction: the session settings nwlib's SQL relies on, for this transaction only
    (``SET LOCAL``: a pooled server connection keeps nothing for the next client)."""
    conn.execute("SELECT set_config('TimeZone', 'UTC', true), set_config('IntervalStyle', 'postgres', true), "
                 "set_config('DateStyle', 'ISO, YMD', true), set_config('extra_float_digits', '1', true)")


class Session:
    """One lazily opened connection, reopened after a transient failure or when an error left it mid-statement."""

    def __init__(self, params: Mapping[str, str], settings: Settings, application_name: str = "nwlib"):
        self.params = dict(params)
        self.settings = settings
        self.application_name = application_name
        self._conn = None
        self._depth = 0          # errors() blocks open (a transaction's statements nest inside one)

    @property
    def conn(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._depth > 1:
                # Inside a transaction of several steps (an FK cycle's deletes): a new connection would run the
                # next step outside it, committing on its own.  Fail the step; the whole transaction retries.
                raise DestinationError("PostgreSQL connection failed: the connection was lost inside a transaction",
                                       RETRY_HINT, transient=True)
            self._conn = connect(self.params, self.settings, self.application_name)
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
        self._depth += 1
        try:
            yield
        except BaseException as exc:
            # Only the outermost block drops the connection: an inner one is under an open transaction, whose
            # own exit rolls it back first.
            outermost = self._depth == 1
            lost = outermost and not self._idle()
            err = classify(exc, self.settings, where, lost) if isinstance(exc, psycopg.Error) else None
            if lost or outermost and err is not None and err.transient:
                self.reset()
            if err is None:
                raise
            raise err from None
        finally:
            self._depth -= 1

    def _idle(self) -> bool:
        """Outside every errors() block the connection must be idle: no transaction open, no statement
        unanswered.  An error that left it otherwise (a statement interrupted half-way) makes it unusable:
        the next use would fail with 'another command is already in progress'."""
        conn = self._conn
        if conn is None:
            return True
        return not conn.broken and (conn.closed or conn.info.transaction_status == psycopg_module().pq.TransactionStatus.IDLE)
