"""How a sync shows its progress: a terminal bar, or one line that a saved notebook keeps.

The engine calls a :class:`ProgressSink` (``table``, ``advance``, ``close``);
any display can subclass it (the dashboard's widget bar does).  By default a
terminal gets tqdm's bar; inside a Jupyter kernel (a notebook, papermill) a
widget bar would be saved as its text stand-in ("sync: 0%|"), so the kernel
gets one text line, updated in place, that ends as what was done: the saved
notebook shows ``sync: done · 10,875 rows in 1.2 s``.
"""
from __future__ import annotations

import sys
import time


def in_kernel() -> bool:
    """Is this code running inside a Jupyter kernel (a notebook, papermill, Voila)?"""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class ProgressSink:
    """What the engine tells a progress display: the table being sent, rows sent (and deleted), the end."""

    def __init__(self, total: int, enabled: bool = True):
        self._bar = None
        self._line = None
        if enabled and total:
            if in_kernel():
                self._line = _KernelLine(total)
            else:
                from tqdm import tqdm
                self._bar = tqdm(total=total, unit="rows", unit_scale=True, desc="sync", leave=False)

    def table(self, name: str) -> None:
        if self._bar is not None:
            self._bar.set_description(name)
        elif self._line is not None:
            self._line.table(name)

    def advance(self, table: str, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)
        elif self._line is not None:
            self._line.advance(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._line is not None:
            self._line.close()


class _KernelLine:
    """One ``text/plain`` output updated in place (at most five times a second); its last text is what was done."""

    EVERY = 0.2

    def __init__(self, total: int):
        from IPython.display import display

        self.total, self.done, self.current = total, 0, ""
        self.started = self._shown = time.monotonic()
        self.handle = display(_Text(self._text()), display_id=True)

    def _text(self) -> str:
        share = min(100, 100 * self.done // max(self.total, 1))
        where = f" · {self.current}" if self.current else ""
        return f"sync{where}: {share}% · {self.done:,} / {self.total:,} rows · {time.monotonic() - self.started:.1f} s"

    def table(self, name: str) -> None:
        self.current = name
        self._show(force=True)

    def advance(self, rows: int) -> None:
        self.done += rows
        self._show()

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.handle is not None and (force or now - self._shown >= self.EVERY):
            self._shown = now
            self.handle.update(_Text(self._text()))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.update(_Text(f"sync: done · {self.done:,} rows in {time.monotonic() - self.started:.1f} s "
                                     "(per table below)"))


class _Text:
    """Plain text as a display object (no quotes around it, unlike a str)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text
