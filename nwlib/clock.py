"""Where a process's time goes, for ``NW_TIMINGS=1``: seconds since the process started (the kernel's own
record, so interpreter start-up and imports count), and named moments such as the first SQL statement."""
from __future__ import annotations

import os

_marks: dict[str, float] = {}


def since_process_start() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere), at 10 ms resolution."""
    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)


def mark(name: str) -> None:
    """Remember the first time ``name`` happened (seconds since the process started)."""
    if name not in _marks:
        now = since_process_start()
        if now is not None:
            _marks[name] = now


def marks() -> dict[str, float]:
    return dict(_marks)


def report() -> str:
    """``process start → first SQL 0.31 s; rows sent 0.52 s; total 0.66 s``: the marks so far, each in seconds
    since the process started."""
    total = since_process_start()
    parts = [f"{name} {seconds:.2f} s" for name, seconds in _marks.items()] + ([f"total {total:.2f} s"] if total is not None else [])
    return "process start → " + "; ".join(parts)
