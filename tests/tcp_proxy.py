"""A loopback TCP proxy the test controls: cut, stall or refuse connections on cue.

It listens on 127.0.0.1 (a free port) and forwards each connection to a target,
which is either a ``(host, port)`` pair or the path of a Unix socket (the
embedded PostgreSQL listens only on one).  Faults:

* ``cut_after(n, times)`` — the next ``times`` connections are reset as soon as
  they have sent more than ``n`` bytes upstream (a COPY in flight);
* ``drop_all()`` — reset every open connection now;
* ``stall(seconds)``, ``stall_after(n, seconds)`` — stop moving bytes in both directions for a while;
* ``refuse(seconds)`` — stop listening, so new connections are refused, then
  listen again on the same port.

Counters (``connections``, ``cuts``, ``refused_for``) let a test say what happened.
"""
from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from urllib.parse import parse_qs, urlsplit


class TcpProxy:
    def __init__(self, target: tuple[str, int] | str):
        self.target = target
        self.lock = threading.Lock()
        self.connections = 0
        self.cuts = 0
        self.stalls = 0
        self._stall_bytes: int | None = None
        self._stall_seconds = 0.0
        self._cut_bytes: int | None = None
        self._cut_left = 0
        self._stall_until = 0.0
        self._open: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    # --- public controls ---------------------------------------------------------
    def url(self, user: str = "postgres", password: str | None = None, database: str = "postgres") -> str:
        auth = user + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def cut_after(self, nbytes: int, times: int = 1) -> None:
        with self.lock:
            self._cut_bytes, self._cut_left = nbytes, times

    def stall_after(self, nbytes: int, seconds: float) -> None:
        """The next connection to send more than ``nbytes`` upstream freezes everything for ``seconds``."""
        with self.lock:
            self._stall_bytes, self._stall_seconds = nbytes, seconds

    def drop_all(self) -> None:
        with self.lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            _reset(*pair)

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    def refuse(self, seconds: float) -> None:
        """Close the listening socket now; listen again after ``seconds`` (in the background)."""
        old = self._listener
        self._listener = None
        with contextlib.suppress(OSError):
            old.close()
        self._accepting.join(timeout=2)

        def reopen():
            if self._closed.wait(seconds):
                return
            self._listener = self._listen(self.port)
            self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
            self._accepting.start()
        threading.Thread(target=reopen, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        self.drop_all()

    # --- plumbing ------------------------------------------------------------------
    @staticmethod
    def _listen(port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        s.settimeout(0.2)
        return s

    def _upstream(self) -> socket.socket:
        if isinstance(self.target, str):
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        up.connect(self.target)
        return up

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._closed.is_set() and listener is self._listener and listener is not None:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = self._upstream()
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self._open.append((client, up))
            threading.Thread(target=self._pump, args=(client, up), daemon=True).start()

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        sent_up = 0
        try:
            while not self._closed.is_set():
                if time.monotonic() < self._stall_until:
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([client, up], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    dst = up if src is client else client
                    if src is client:
                        sent_up += len(data)
                        if self._should_cut(sent_up):
                            return
                        self._maybe_stall(sent_up)
                    dst.sendall(data)
        except OSError:
            return
        finally:
            with self.lock:
                if (client, up) in self._open:
                    self._open.remove((client, up))
            _reset(client, up)

    def _should_cut(self, sent: int) -> bool:
        with self.lock:
            if self._cut_bytes is None or self._cut_left <= 0 or sent <= self._cut_bytes:
                return False
            self._cut_left -= 1
            self.cuts += 1
            return True


    def _maybe_stall(self, sent: int) -> None:
        with self.lock:
            if self._stall_bytes is None or sent <= self._stall_bytes:
                return
            self._stall_bytes = None
            self.stalls += 1
        self.stall(self._stall_seconds)


def _reset(*socks: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset', as after a network cut."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            s.close()


# --- PostgreSQL URLs -------------------------------------------------------------------

def proxy_target(url: str):
    """Where the server behind ``url`` listens: a Unix socket path or (host, port)."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{parts.port or 5432}"
    return (host, parts.port or 5432)


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return proxy.url(user=parts.username or "postgres", password=parts.password or None,
                     database=(parts.path or "/postgres").lstrip("/") or "postgres")
