"""Debian's PostgreSQL 15 and pgbouncer, started by the tests (no service runs on the machine).

Both refuse to run as root, so under root they run as the ``postgres`` OS user (``runuser``; pgbouncer
with its own ``-u``).  They get directories of their own under /tmp that this user owns.

* :class:`Pg15` — ``initdb`` + ``pg_ctl`` on a free 127.0.0.1 port; the superuser ``postgres`` logs in
  without a password (Unix socket and loopback), every other role with scram-sha-256.
* :class:`PgBouncer` — in front of a server, with scram-sha-256 for clients and TLS (a CA and a server
  certificate for 127.0.0.1 made with ``openssl``); one database alias per pool mode:
  ``<db>_tx`` (transaction mode, like Supabase's port 6543) and ``<db>_session`` (session mode).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from clirun import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _own_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    path.chmod(0o700)
    return path


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}:\n{text}")


def pg15_bin() -> Path:
    """Debian's PostgreSQL 15 binaries (NW_TEST_PG15_BIN to point elsewhere)."""
    found = os.environ.get("NW_TEST_PG15_BIN") or next(iter(sorted(glob.glob("/usr/lib/postgresql/15/bin"))), "")
    if not found or not (Path(found) / "postgres").exists():
        raise RuntimeError("PostgreSQL 15 is not installed: apt-get install -y postgresql-15 (.ci/run does), or set NW_TEST_PG15_BIN")
    return Path(found)


def pgbouncer_bin() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else "")
    if not found:
        raise RuntimeError("pgbouncer is not installed: apt-get install -y pgbouncer (.ci/run does)")
    return found


class Pg15:
    def __init__(self):
        self.bin = pg15_bin()
        self.dir = _own_dir("nw-pg15-")
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"
        subprocess.run([*_as_postgres(), str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                        "--auth-local=trust", "--auth-host=scram-sha-256"], check=True, capture_output=True)
        hba = self.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
        self.start()

    @property
    def version(self) -> str:
        return self.sql("SHOW server_version")[0][0]

    def _ctl(self, *args: str) -> None:
        subprocess.run([*_as_postgres(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args], check=True, capture_output=True,
                       timeout=60)

    def start(self) -> None:
        self._ctl("-l", str(self.log), "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start")
        _wait_port(self.port, None, "PostgreSQL 15", self.log)

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def url(self, user: str = "postgres", password: str | None = None, database: str = "postgres") -> str:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        return self.url()

    def sql(self, statement: str, params=()) -> list:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as c:
            cur = c.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def add_role(self, role: str, password: str) -> None:
        """A login role with a scram password that may create schemas (what a sync user needs)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
            c.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(role)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def make_certificates(where: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=nw test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2",
        "-extfile", "san.ext")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt", "-days", "2", "-subj", "/CN=other CA")
    for name in ("server.key", "server.crt", "ca.crt"):
        _chown(where / name)
    (where / "server.key").chmod(0o600)
    return {"ca": where / "ca.crt", "other_ca": where / "other.crt", "cert": where / "server.crt", "key": where / "server.key"}


class PgBouncer:
    def __init__(self, server_port: int, users: dict[str, str], database: str = "postgres"):
        self.dir = _own_dir("nw-pgbouncer-")
        self.port = free_port()
        self.database = database
        self.certs = make_certificates(self.dir)
        self.log = self.dir / "pgbouncer.log"
        userlist = self.dir / "userlist.txt"
        userlist.write_text("".join(f'"{u}" "{p.replace(chr(34), chr(34) * 2)}"\n' for u, p in users.items()))
        _chown(userlist)
        target = f"host=127.0.0.1 port={server_port} dbname={database}"
        self.ini = self.dir / "pgbouncer.ini"
        self.ini.write_text(f"""[databases]
{database}_tx = {target} pool_mode=transaction
{database}_session = {target} pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
client_tls_sslmode = allow
client_tls_key_file = {self.certs['key']}
client_tls_cert_file = {self.certs['cert']}
logfile = {self.log}
pidfile = {self.dir / 'pgbouncer.pid'}
""")
        _chown(self.ini)
        self._extra: list[str] = []
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen([pgbouncer_bin(), *user, str(self.ini)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.proc, "pgbouncer", self.log)

    def add_database(self, alias: str, port: int, mode: str = "transaction", database: str | None = None) -> None:
        """One more database alias, to a server on ``port`` (reloaded at once: SIGHUP)."""
        import signal

        line = f"{alias} = host=127.0.0.1 port={port} dbname={database or self.database} pool_mode={mode}\n"
        text = self.ini.read_text()
        self.ini.write_text(text.replace("[pgbouncer]", line + "\n[pgbouncer]", 1))
        reloads = self.log.read_text(errors="replace").count("re-reading config")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.log.read_text(errors="replace").count("re-reading config") == reloads and time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, user: str, password: str, mode: str = "transaction", encode: bool = True, query: str = "",
            database: str | None = None) -> str:
        """A URL through the pooler; ``encode=False`` writes the password as people paste it."""
        db = database or f"{self.database}_{'tx' if mode == 'transaction' else 'session'}"
        secret = quote(password, safe="") if encode else password
        return f"postgresql://{quote(user, safe='')}:{secret}@127.0.0.1:{self.port}/{db}" + (f"?{query}" if query else "")

    def close(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Pushgateway:
    """Debian's prometheus-pushgateway on a free loopback port (no persistence: a fresh one per session)."""

    def __init__(self, base: Path):
        exe = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
        if not Path(exe).exists():
            raise RuntimeError("prometheus-pushgateway is not installed: apt-get install -y prometheus-pushgateway (.ci/run does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "pushgateway.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "pushgateway", self.log_path)

    def series(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample the gateway serves, keyed by (name, sorted labels)."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(self.url + "/metrics", timeout=5).read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}

    def stop(self) -> None:
        stop_process(self.proc, self.log)
