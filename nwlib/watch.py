"""Near-real-time publishing: one warm process that syncs as the lake changes (``nw sync --watch``) or on a
fixed interval (``nw sync --every SECONDS``).

The process keeps what a cold ``nw sync`` pays for at every start: Python and its libraries imported, one
destination (and its connection) opened once, the local holdings cache.  ``--watch`` looks at the lake
file and its write-ahead log every ``poll`` seconds (their size and modification time: no lake connection,
so a writer is never blocked by the watcher) and syncs when they change.  A lake held open by a writer at
that moment is tried again at the next look; any other failure of a cycle is reported and the watch goes
on, so a scheduler-less deployment survives a destination restart.  Each cycle is an ordinary run: the
lock, the ledger row, exactness.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import destinations, engine
from .errors import LakeError, NwError
from .model import SyncReport
from .settings import Settings


@dataclass(frozen=True)
class Cycle:
    """One sync of a watch: its report, or the one-line error that stopped it."""

    number: int
    started: float               # time.time()
    seconds: float
    report: SyncReport | None = None
    error: str | None = None

    @property
    def moved(self) -> int:
        return sum(t.moved for t in self.report.tables) if self.report else 0


def lake_signature(path: Path | str) -> tuple:
    """What changes when a writer commits to the lake: the file's and its WAL's size and modification time."""
    out = []
    for p in (Path(path), Path(f"{path}.wal")):
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def watch(settings: Settings, tables: Iterable[str] | None = None, every: float | None = None, poll: float = 0.1,
          on_cycle: Callable[[Cycle], None] | None = None, stop: threading.Event | None = None,
          max_cycles: int | None = None) -> int:
    """Sync now, then again whenever the lake changes (``every`` None) or every ``every`` seconds, until ``stop``
    is set or ``max_cycles`` syncs ran.  Returns the number of syncs that ran."""
    stop = stop or threading.Event()
    chosen = list(tables) if tables else None
    dest = destinations.create(settings)          # one destination and connection for every cycle
    cycles, seen, retry = 0, None, False
    next_tick = time.monotonic()
    try:
        while not stop.is_set() and (max_cycles is None or cycles < max_cycles):
            if every is not None:
                if stop.wait(max(0.0, next_tick - time.monotonic())):
                    break
                next_tick = max(next_tick + every, time.monotonic())
            else:
                signature = lake_signature(settings.duckdb_path)
                if signature == seen and not retry:
                    stop.wait(poll)
                    continue
                seen = signature
            cycles += 1
            started, t0 = time.time(), time.perf_counter()
            retry = False
            try:
                report = engine.sync(settings, chosen, show_progress=False, destination=dest)
                cycle = Cycle(cycles, started, time.perf_counter() - t0, report=report)
            except LakeError as exc:           # a writer holds the lake: look again shortly
                retry = "locked" in str(exc)
                cycle = Cycle(cycles, started, time.perf_counter() - t0, error=settings.redact(str(exc)))
                if retry:
                    stop.wait(poll)
            except NwError as exc:
                cycle = Cycle(cycles, started, time.perf_counter() - t0, error=settings.redact(str(exc)))
            if on_cycle is not None:
                on_cycle(cycle)
    finally:
        dest.close()
    return cycles
