"""Slow reads off the page's first render: the work runs in a thread, its answer is shown from the kernel's loop.

In a kernel (Voila, Jupyter) the cell that builds the dashboard returns at once
and the page appears; ``done`` runs later on the kernel's event loop, the same
place a button's click handler runs, so widgets are only ever changed from
there.  Outside a kernel (a script, the tests) there is no running loop and
both run at once, in order.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

Done = Callable[[Any, BaseException | None], None]


def _call(work: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return work(), None
    except Exception as exc:  # noqa: BLE001 - handed to `done`, which shows it as one line
        return None, exc


def run_later(work: Callable[[], Any], done: Done) -> bool:
    """Run ``work()`` in a thread, then ``done(result, error)`` on the running event loop; True if it was deferred."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        done(*_call(work))
        return False

    def worker() -> None:
        result = _call(work)
        try:
            loop.call_soon_threadsafe(done, *result)
        except RuntimeError:
            pass  # the kernel is shutting down (page closed): nobody to show it to

    threading.Thread(target=worker, name="nw-dashboard-read", daemon=True).start()
    return True
