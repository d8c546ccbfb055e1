"""What the ``nw`` process itself does around a command: its log lines, the imports it skips, and Ctrl-C at
any moment as one line and exit 130."""
from __future__ import annotations

import contextlib
import os
import sys


def quiet_logging() -> None:
    """Warnings nwlib logs (a lock taken over) as ``nw: note: …`` lines; drivers' own chatter (psycopg's
    "error ignored terminating …" after a dropped connection, which nw retries) stays out of the output."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nw: note: %(message)s"))
    nwlog = logging.getLogger("nwlib")
    nwlog.addHandler(handler)
    nwlog.setLevel(logging.DEBUG if os.environ.get("NW_DEBUG") else logging.WARNING)
    nwlog.propagate = False
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)


class NotImported:
    """A meta path finder that makes ``import pandas`` (and tornado) fail in the ``nw`` process.

    nw's sync, status and verify into PostgreSQL never use them, but DuckDB imports pandas the first time it binds a
    query parameter (to check whether a value is a pandas type): about 0.3 s and 40 MB on every command,
    a third of a no-change sync.  tenacity imports tornado if it can.  Both handle the ImportError.  Only
    those commands of the ``nw`` process do this: a notebook or a program that imports nwlib keeps its pandas."""

    SKIPPED = ("pandas", "tornado")

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.SKIPPED and top not in sys.modules:     # one already loaded keeps its submodules
            raise ModuleNotFoundError(f"{name} is not used by the nw command", name=name)
        return None


def skip_unused_imports() -> None:
    if not any(isinstance(f, NotImported) for f in sys.meta_path):
        sys.meta_path.insert(0, NotImported())



def note_interrupts():
    """Remember every SIGINT (then raise KeyboardInterrupt as usual)."""
    import signal
    import threading

    seen = threading.Event()

    def on_sigint(signum, frame):
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return seen


def interrupt_after_the_work() -> None:
    """From the moment the command's work has returned, a Ctrl-C ends the process at once, as one line and exit
    130 like any other: the interpreter's shutdown (closing DuckDB, joining threads, atexit) would otherwise meet
    it as a KeyboardInterrupt and die by the signal, saying nothing."""
    import signal

    def on_sigint(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):     # it may have been writing when the signal came
                stream.flush()
        os.write(2, f"{INTERRUPTED}\n".encode())
        os._exit(130)

    signal.signal(signal.SIGINT, on_sigint)


INTERRUPTED = "nw: interrupted; rerun the same command to finish (nothing is half-applied)"


def say_interrupted() -> int:
    print(INTERRUPTED, file=sys.stderr)
    return 130


def reader_gone() -> int:
    """The reader of nw's output went away (``nw runs | head -3``): stop quietly, as a Unix tool stopped by SIGPIPE
    does (exit 141); the rest of the output goes nowhere instead of failing again at exit."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141
