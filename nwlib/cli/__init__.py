"""``nw``: a thin command line over nwlib.

It parses flags (:mod:`.parser`), runs a command (:mod:`.commands`), prints its results (:mod:`.output`: a
table for people, one JSON document with ``--json``), and turns an ``NwError`` into one line on stderr and an
exit code (:data:`.codes.EXIT_CODES`).  Set ``NW_DEBUG=1`` to see tracebacks.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import NwError, first_line, is_interrupt
from .codes import EXIT_CODES
from .parser import build_parser
from .process import interrupt_after_the_work, note_interrupts, quiet_logging, reader_gone, say_interrupted

__all__ = ["EXIT_CODES", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:       # the `nw` command itself (tests calling main([...]) in process keep their logging)
        quiet_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.lean = argv is None and args.command in ("sync", "status", "verify", "runs")
    interrupted = note_interrupts() if argv is None else None
    try:
        code = _run(args, interrupted)
        sys.stdout.flush()               # a reader that went away is found here, not in the interpreter's last flush
        return code
    except KeyboardInterrupt:            # one that came as the work returned
        return say_interrupted()
    except BrokenPipeError:
        return reader_gone()
    finally:
        if interrupted is not None:
            interrupt_after_the_work()


def _run(args, interrupted) -> int:
    if os.environ.get("NW_TIMINGS"):
        import atexit

        from .. import clock

        atexit.register(lambda: print(f"nw: timings: {clock.report()}", file=sys.stderr))
    try:
        code = args.func(args)
        # A Ctrl-C a library took for an error and fell back from: the run went on, but it was asked to stop.
        # (--watch / --every end with Ctrl-C by design: that is their normal stop.)
        return say_interrupted() if interrupted and interrupted.is_set() and not getattr(args, "watching", False) else code
    except NwError as exc:
        print(f"nw: error: {_redacted(args, str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return say_interrupted()
    except BrokenPipeError:
        return reader_gone()
    except Exception as exc:  # a bug in nwlib: one line unless debugging
        if is_interrupt(exc):        # Ctrl-C inside a DuckDB query arrives as DuckDB's own error
            return say_interrupted()
        if os.environ.get("NW_DEBUG"):
            raise
        print(f"nw: unexpected error: {type(exc).__name__}: {_redacted(args, first_line(exc))} "
              "(set NW_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 70


def _redacted(args, line: str) -> str:
    """The last line of defence before stderr: every secret the settings know of, and any URL's password, masked.
    (Errors are written redacted; a library's own message may not be.)"""
    from ..connstr import mask_userinfo
    from ..settings import load_settings
    from .commands import overrides

    line = mask_userinfo(line)
    try:
        return load_settings(overrides=overrides(args), dotenv=getattr(args, "env_file", None)).redact(line)
    except Exception:  # noqa: BLE001 - settings that do not load: the URL mask is what there is
        return line
