"""``nw``: a thin command line over nwlib.

It parses flags, calls the library, prints results, and turns an ``NwError``
into one line and an exit code.  Set ``NW_DEBUG=1`` to see tracebacks.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import NwError, VerifyMismatch, first_line, is_interrupt


def _settings(args):
    from .settings import load_settings

    overrides = {
        "duckdb_path": getattr(args, "duckdb_path", None),
        "destination_type": getattr(args, "destination_type", None),
        "database_url": getattr(args, "database_url", None),
        "db_schema": getattr(args, "schema", None),
        "batch_size": getattr(args, "batch_size", None),
    }
    settings = load_settings(overrides=overrides, dotenv=args.env_file)
    if getattr(args, "lean", False) and settings.destination_type == "POSTGRES":
        _skip_unused_imports()      # the other destinations' drivers may want pandas
    return settings


def _console():
    from rich.console import Console
    # Piped into a file or a scheduler's log, rich would squeeze tables into 80 columns and cut table names.
    wide = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 220
    return Console(stderr=False, highlight=False, width=wide)


def _fmt_wm(wm) -> str:
    if wm is None or wm.value is None:
        return "-"
    return wm.value + (f" / {','.join(map(str, wm.key))}" if wm.key else "")


def cmd_bootstrap(args) -> int:
    from .bootstrap import PER_SCALE, bootstrap, mutate

    s = _settings(args)
    con = _console()
    if args.mutate:
        out = mutate(s.duckdb_path, args.fraction, args.seed)
        from rich.table import Table
        t = Table("table", "inserted", "updated", "deleted", title=f"changes applied to {s.duckdb_path}")
        for name in PER_SCALE:
            t.add_row(name, *(str(out[name][k]) for k in ("inserted", "updated", "deleted")))
        con.print(t)
        return 0
    res = bootstrap(s.duckdb_path, args.scale, args.seed)
    con.print(f"sample lake written to {res.path}: " + ", ".join(f"{k} {v:,}" for k, v in res.counts.items()))
    return 0


def print_report(report, con) -> None:
    from rich.table import Table

    title = ("plan (dry run)" if report.dry_run else "sync report") + f" — run {report.run_id} → {report.destination}"
    t = Table(title=title)
    counts = ["to insert", "to update", "to delete"] if report.dry_run else ["inserted", "updated", "deleted", "seconds"]
    for c in ["#", "table", "mode", "status", *counts, "watermark"]:
        t.add_column(c, justify="right" if c == "#" or c in counts else "left")
    for i, r in enumerate(report.tables, 1):
        nums = [f"{r.inserted:,}", f"{r.updated:,}", f"{r.deleted:,}"] + ([] if report.dry_run else [f"{r.seconds:.2f}"])
        status = r.status if not r.error else f"{r.status}: {r.error}"
        t.add_row(str(i), r.table, r.mode, status, *nums, _fmt_wm(r.watermark_after))
    con.print(t)
    for r in report.tables:
        for note in r.notes:
            con.print(f"  {r.table}: {note}")


def cmd_sync(args) -> int:
    from .engine import raise_for_failures, sync

    s = _settings(args)
    tables = [x for x in (args.tables or "").split(",") if x.strip()] or None
    report = sync(s, tables, full_refresh=args.full_refresh, dry_run=args.dry_run, show_progress=not args.no_progress)
    print_report(report, _console())
    raise_for_failures(report)
    return 0


def cmd_status(args) -> int:
    from rich.table import Table

    from .status import status

    s = _settings(args)
    st = status(s)
    con = _console()
    con.print(f"destination: {st.destination}  (round trip {st.latency_ms:.1f} ms)")
    con.print(f"lake: {s.duckdb_path}")
    if st.running:
        con.print(st.running)
    t = Table("table", "lake rows", "dest rows", "compared", "watermark", "source max", "lag (s)", "last run", "status")
    for r in st.tables:
        t.add_row(r.table, f"{r.lake_rows:,}", "-" if r.dest_rows is None else f"{r.dest_rows:,}", r.sync, r.watermark or "-",
                  r.source_max or "-", "-" if r.lag_seconds is None else f"{r.lag_seconds:,.0f}",
                  str(r.last_run or "-"), r.last_status or "never")
    con.print(t)
    for r in st.tables:
        if r.problem:
            con.print(f"  {r.table}: {r.problem}")
    return 0


def cmd_verify(args) -> int:
    from rich.table import Table

    from .verification import verify

    s = _settings(args)
    tables = [x for x in (args.tables or "").split(",") if x.strip()] or None
    checks = verify(s, tables)
    t = Table("table", "lake rows", "dest rows", "missing", "extra", "checksum", "result", title="verify: lake vs destination")
    for c in checks:
        t.add_row(c.table, f"{c.lake_rows:,}", f"{c.dest_rows:,}", str(c.missing), str(c.extra), c.checksum,
                  "equal" if c.ok else f"DIFFERENT (e.g. keys {list(c.sample)[:3]})")
    _console().print(t)
    bad = [c.table for c in checks if not c.ok]
    if bad:
        raise VerifyMismatch(f"{len(bad)} table(s) differ: {', '.join(bad)}", "run `nw sync` (or `nw sync --full-refresh --tables ...`) and verify again")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env-file", default=".env", help="read settings from this .env file (default: .env)")
    common.add_argument("--duckdb-path", help="lake file (overrides DUCKDB_PATH)")
    common.add_argument("--destination-type", help="POSTGRES (SUPABASE) … (overrides DESTINATION_TYPE)")
    common.add_argument("--database-url", help="PostgreSQL URL (overrides DATABASE_URL)")
    common.add_argument("--schema", help="destination schema (overrides DB_SCHEMA)")
    common.add_argument("--batch-size", type=int, help="rows per transfer batch (overrides BATCH_SIZE)")

    p = argparse.ArgumentParser(prog="nw", description="Sync a DuckDB lake into PostgreSQL/Supabase, S3, Delta or Databricks.")
    p.add_argument("--version", action="version", version=f"nw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("bootstrap", parents=[common], help="build the sample lake (or --mutate it)")
    b.add_argument("--scale", type=float, default=1, help="1 ≈ 1k clientes / 10k pedidos / 30k itens / 10k pagamentos")
    b.add_argument("--seed", type=int, default=42, help="same seed, same data")
    b.add_argument("--mutate", action="store_true", help="apply a batch of updates, inserts and deletes instead")
    b.add_argument("--fraction", type=float, default=0.01, help="share of rows changed by --mutate")
    b.set_defaults(func=cmd_bootstrap)

    s = sub.add_parser("sync", parents=[common], help="send changed rows to the destination")
    s.add_argument("--tables", help="comma-separated tables (default: all)")
    s.add_argument("--full-refresh", action="store_true", help="ignore watermarks: resend whole tables, delete what the lake lacks")
    s.add_argument("--dry-run", action="store_true", help="show the load order and rows to send; change nothing")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sync)

    st = sub.add_parser("status", parents=[common], help="per table: watermark, last run, rows, lag")
    st.set_defaults(func=cmd_status)

    v = sub.add_parser("verify", parents=[common], help="compare every table, lake vs destination")
    v.add_argument("--tables", help="comma-separated tables (default: all)")
    v.set_defaults(func=cmd_verify)
    return p


def _quiet_logging() -> None:
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


class _NotImported:
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


def _skip_unused_imports() -> None:
    if not any(isinstance(f, _NotImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _NotImported())


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:       # the `nw` command itself (tests calling main([...]) in process keep their logging)
        _quiet_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.lean = argv is None and args.command in ("sync", "status", "verify")
    interrupted = _note_interrupts() if argv is None else None
    try:
        code = args.func(args)
        # A Ctrl-C a library took for an error and fell back from: the run went on, but it was asked to stop.
        return _interrupted() if interrupted and interrupted.is_set() else code
    except NwError as exc:
        print(f"nw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # a bug in nwlib: one line unless debugging
        if is_interrupt(exc):        # Ctrl-C inside a DuckDB query arrives as DuckDB's own error
            return _interrupted()
        if os.environ.get("NW_DEBUG"):
            raise
        print(f"nw: unexpected error: {type(exc).__name__}: {first_line(exc)} "
              "(set NW_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 70


def _note_interrupts():
    """Remember every SIGINT (then raise KeyboardInterrupt as usual)."""
    import signal
    import threading

    seen = threading.Event()

    def on_sigint(signum, frame):
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return seen


def _interrupted() -> int:
    print("nw: interrupted; rerun the same command to finish (nothing is half-applied)", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
