"""``nw``: a thin command line over nwlib.

It parses flags, calls the library, prints results (a table for people, one
JSON document with ``--json``), and turns an ``NwError`` into one line on
stderr and an exit code (:data:`EXIT_CODES`).  Set ``NW_DEBUG=1`` to see
tracebacks.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from . import __version__
from .errors import ConfigError, NwError, TransformFailed, VerifyMismatch, first_line, is_interrupt, split_hint
from .settings import DESTINATION_ALIASES, DESTINATION_TYPES

# Every code nw exits with (README, "Command line", has the same table; a test keeps each NwError's code here).
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "ok; for `nw status`: every table in sync and its last run ok"),
    (1, "a table failed (SyncFailed), `nw verify` found a difference (VerifyMismatch)"),
    (2, "usage error (bad flag or option); a setting missing or malformed (ConfigError); bad input (InputRejected); "
        "an optional driver not installed (MissingDependency)"),
    (3, "the lake file is missing, locked or not DuckDB (LakeError); its metadata does not add up (SourceModelError)"),
    (4, "the destination refused or failed: connection, password, permissions (DestinationError)"),
    (5, "a schema change the destination cannot follow under SCHEMA_CHANGES (SchemaChangeError)"),
    (6, "another sync holds the destination's lock (SyncInProgress)"),
    (7, "`nw status`: a table is behind the lake (TablesBehind): differs, never synced, or unknown"),
    (8, "`nw status`: a table failed in its last run (LastRunFailed); it wins over 7"),
    (9, "`nw sync` / `nw run` / `nw check`: an error-severity quality check failed; its table and those depending on it "
        "were not published (QualityGateFailed)"),
    (10, "`nw transform` / `nw run`: a dbt model or test failed; nothing was published (TransformFailed)"),
    (70, "unexpected error: a bug in nwlib (NW_DEBUG=1 shows the traceback)"),
    (130, "interrupted (Ctrl-C); rerun the same command to finish"),
)


# --- settings ----------------------------------------------------------------------------------

def _overrides(args) -> dict:
    return {
        "duckdb_path": getattr(args, "duckdb_path", None),
        "destination_type": getattr(args, "destination_type", None),
        "database_url": getattr(args, "database_url", None),
        "db_schema": getattr(args, "schema", None),
        "batch_size": getattr(args, "batch_size", None),
    }


def _settings(args):
    from .settings import load_settings

    settings = load_settings(overrides=_overrides(args), dotenv=args.env_file)
    if getattr(args, "lean", False) and settings.destination_type == "POSTGRES":
        _skip_unused_imports()      # the other destinations' drivers may want pandas
    return settings


# --- output ------------------------------------------------------------------------------------

class _Out:
    """Output for people: lines at most ``width`` wide (the terminal's, else COLUMNS, else 80 in a pipe or a
    log).  Tables are plain text made to fit it; notes and errors go below them, never inside a cell."""

    def __init__(self):
        import shutil

        self.width = max(40, shutil.get_terminal_size((80, 24)).columns)

    def say(self, text: str) -> None:
        """A line, wrapped at the width (continuation lines indented)."""
        print("\n".join(_wrap(text, self.width, indent="  ", fold=False)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[str] = (),
              optional: Sequence[str] = (), one_line: bool = False) -> None:
        """A header, a rule, a line per row.  ``right`` columns are right-aligned (numbers); ``optional``
        columns (watermarks, checksums) are left out, from the right, until the table fits.  When it does not fit,
        headers wrap first, then the widest text column (a long table name, a URL) folds; nothing is cut.
        ``one_line``: a row is never wrapped, however wide it is."""
        keep = list(range(len(headers)))

        def natural(i: int) -> int:
            return max(len(x) for x in [headers[i], *(r[i] for r in rows)])

        def total(w: dict) -> int:
            return sum(w.values()) + 2 * (len(w) - 1)

        w = {i: natural(i) for i in keep}
        for i in reversed(keep):          # the optional columns, from the right, until the table fits
            if headers[i] in optional and total(w) > self.width:
                del w[i]
        if not one_line and total(w) > self.width:
            for i in w:
                w[i] = max([len(r[i]) for r in rows] + [len(word) for word in headers[i].split()])
            while total(w) > self.width:
                text = [i for i in w if headers[i] not in right and w[i] > 10]
                if not text:
                    break
                widest = max(text, key=lambda i: w[i])
                w[widest] = max(10, w[widest] - (total(w) - self.width))

        def line(cells: Sequence[str]) -> list[str]:
            parts = {i: _wrap(cells[i], w[i]) for i in w}
            height = max(len(p) for p in parts.values())
            return ["  ".join((str.rjust if headers[i] in right else str.ljust)(p[k] if k < len(p) else "", w[i]) for i, p in parts.items())
                    .rstrip() for k in range(height)]

        out = line(headers) + ["─" * total(w)]
        for r in rows:
            out += line(r)
        print("\n".join(out))


def _wrap(text: str, width: int, indent: str = "", fold: bool = True) -> list[str]:
    """``text`` in lines of at most ``width``, broken between words; a short phrase in parentheses
    ("(transaction pooler)") stays on one line; a word longer than a line is folded (in a table cell) or, with
    ``fold=False``, kept whole on its own line (a URL or a path in a sentence: a reader copies it)."""
    import re
    import textwrap

    keep = lambda m: m.group(0).replace(" ", "\xa0") if len(m.group(0)) <= width // 2 else m.group(0)
    lines = []
    for part in text.splitlines() or [""]:
        lines += textwrap.wrap(re.sub(r"\([^()]*\)", keep, part), width, subsequent_indent=indent,
                               break_long_words=fold, break_on_hyphens=False) or [""]
    return [line.replace("\xa0", " ") for line in lines]


def _print_json(doc, settings=None) -> None:
    """One JSON document on stdout; every string passed through the settings' redaction first."""
    if settings is not None:
        doc = _redacted(doc, settings)
    print(json.dumps(doc, indent=2, ensure_ascii=False, default=_json_value))


def _redacted(value, settings):
    if isinstance(value, str):
        return settings.redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, settings) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v, settings) for v in value]
    return value


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)      # Decimal, UUID, date … as text


def _span(seconds: float | None) -> str:
    """12s, 5m, 3h, 2d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _ago(when) -> str:
    if not isinstance(when, datetime):
        return "-"
    now = datetime.now(timezone.utc) if when.tzinfo else datetime.now()
    return _span(max(0.0, (now - when).total_seconds())) + " ago"


def _local(when) -> str:
    if not isinstance(when, datetime):
        return "-"
    return (when.astimezone() if when.tzinfo else when).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_wm(wm) -> str:
    if wm is None or wm.value is None:
        return "-"
    return wm.value + (f" / {','.join(map(str, wm.key))}" if wm.key else "")


def _tables_arg(args) -> list[str] | None:
    return [x.strip() for x in (args.tables or "").split(",") if x.strip()] or None


# --- commands ----------------------------------------------------------------------------------

def cmd_bootstrap(args) -> int:
    from .bootstrap import PER_SCALE, bootstrap, mutate

    s = _settings(args)
    out = _Out()
    if args.mutate:
        changed = mutate(s.duckdb_path, args.fraction, args.seed)
        out.say(f"changes applied to {s.duckdb_path}")
        counts = ("inserted", "updated", "deleted")
        out.table(("table", *counts), [[name, *(f"{changed[name][k]:,}" for k in counts)] for name in PER_SCALE], right=counts)
        return 0
    res = bootstrap(s.duckdb_path, args.scale, args.seed)
    out.say(f"sample lake written to {res.path}: " + ", ".join(f"{k} {v:,}" for k, v in res.counts.items()))
    return 0


def print_report(report, out) -> None:
    """The sync report (or dry-run plan): one line per table; errors, schema changes and notes below.

    The first failed table's hint is left to the error line nw ends with (said once); another table's
    hint is shown when it says something else."""
    kind = "plan (dry run)" if report.dry_run else "sync report"
    out.say(f"{kind} — run {report.run_id} → {report.destination}")
    counts = ["to insert", "to update", "to delete"] if report.dry_run else ["inserted", "updated", "deleted", "secs"]
    rows = [[r.table, r.mode.replace(" incremental", ""), r.status, f"{r.inserted:,}", f"{r.updated:,}", f"{r.deleted:,}",
             *([] if report.dry_run else [f"{r.seconds:.2f}"]), _fmt_wm(r.watermark_after)] for r in report.tables]
    out.table(("table", "mode", "status", *counts, "watermark"), rows, right=counts, optional=("secs", "watermark"))
    said = split_hint(report.failed[0].error or "")[1] if report.failed else None
    if report.checks:
        failed = sum(1 for c in report.checks if not c.passed)
        out.say(f"quality checks: {len(report.checks) - failed} of {len(report.checks)} passed"
                + (f"; {len(report.held)} table(s) held back" if report.held else ""))
    for r in report.tables:
        if r.error:
            what, hint = split_hint(r.error)
            out.say(f"{r.table}: {r.status}: {what}" + (f" — {hint}" if hint and hint != said else ""))
        for change in r.schema_changes:
            out.say(f"{r.table}: schema: {change}")
        for note in r.notes:
            out.say(f"{r.table}: {note}")


def cmd_sync(args) -> int:
    from .engine import raise_for_failures, sync

    s = _settings(args)
    if args.watch or args.every is not None:
        return _watch(s, args)
    report = sync(s, _tables_arg(args), full_refresh=args.full_refresh, dry_run=args.dry_run,
                  show_progress=not (args.no_progress or args.json))
    if args.json:
        _print_json(report.to_json(), s)
    else:
        print_report(report, _Out())
    if not report.dry_run:
        _metrics(s, report)
    raise_for_failures(report)
    return 0


def _watch(settings, args) -> int:
    """``nw sync --watch`` / ``--every``: one line (or one JSON document, JSON Lines) per sync until Ctrl-C."""
    from .watch import watch

    if args.dry_run or args.full_refresh:
        raise ConfigError("--watch and --every take no --dry-run or --full-refresh", "run those once, without watching")
    done = []

    def on_cycle(c) -> None:
        done.append(c)
        when = datetime.fromtimestamp(c.started, timezone.utc).strftime("%H:%M:%S")
        if args.json:
            doc = {"cycle": c.number, "started": datetime.fromtimestamp(c.started, timezone.utc).isoformat(), "seconds": round(c.seconds, 3),
                   "error": c.error, "report": c.report.to_json() if c.report else None}
            print(json.dumps(_redacted(doc, settings), ensure_ascii=False, default=_json_value), flush=True)
        elif c.error:
            print(f"{when} sync #{c.number} failed: {c.error}", flush=True)
        else:
            r = c.report
            state = "ok" if r.ok else f"{len(r.failed)} failed, {len(r.held)} held"
            print(f"{when} sync #{c.number} {state}: {sum(t.inserted for t in r.tables):,} inserted, {sum(t.updated for t in r.tables):,} "
                  f"updated, {sum(t.deleted for t in r.tables):,} deleted in {c.seconds:.2f} s", flush=True)
        if c.report is not None:
            _metrics(settings, c.report)

    args.watching = True
    what = "on every change of the lake" if args.watch else f"every {args.every:g} s"
    if not args.json:
        print(f"watching {settings.duckdb_path}: syncing {what} (Ctrl-C stops)", flush=True)
    try:
        watch(settings, _tables_arg(args), every=args.every, on_cycle=on_cycle)
    except KeyboardInterrupt:
        if not args.json:
            print(f"stopped after {len(done)} sync(s); a sync cut short resumes at the next run", flush=True)
        return 0
    return 0


def _metrics(settings, report) -> None:
    """METRICS_FILE / PUSHGATEWAY_URL, when set (a failure to write them is a note, not the run's failure)."""
    if settings.metrics_file or settings.pushgateway_url:
        from .metrics import after_run

        after_run(settings, report)


def _failed_checks(report, out) -> None:
    for r in report.checks:
        if not r.passed:
            out.say(f"{r.check.table}: {r.line()}")


def cmd_transform(args) -> int:
    from .transform import transform

    s = _settings(args)
    echo = None if args.json or args.no_progress else (lambda line: print(line, file=sys.stderr))
    try:
        result = transform(s, args.select, args.full_refresh, echo=echo)
    except TransformFailed as exc:
        if args.json and exc.result is not None:
            _print_json(exc.result.to_json(), s)          # the node results, then the one-line error
        raise
    if args.json:
        _print_json(result.to_json(), s)
        return 0
    out = _Out()
    out.say(f"dbt build: {len(result.models)} model(s), {len(result.tests)} test(s) in {result.seconds:.1f} s")
    rows = [[n.name, n.kind, n.status, f"{n.seconds:.2f}", "" if n.failures is None else f"{n.failures:,}"] for n in result.nodes]
    out.table(("node", "kind", "status", "secs", "failing"), rows, right=("secs", "failing"))
    return 0


def cmd_check(args) -> int:
    from .pipeline import check

    s = _settings(args)
    report = check(s, _tables_arg(args))
    if args.json:
        _print_json(report.to_json(), s)
        report.raise_for_held()
        return 0
    out = _Out()
    if not report.results and not report.absent:
        out.say(f"no checks: {s.checks_path} is absent or empty")
        return 0
    out.say(f"checks of {s.checks_path}")
    rows = [[r.check.table, r.check.name, r.check.severity, "passed" if r.passed else "FAILED", f"{r.bad_rows:,}"] for r in report.results]
    out.table(("table", "check", "severity", "result", "bad rows"), rows, right=("bad rows",))
    for r in report.results:
        if not r.passed and r.sample:
            out.say(f"{r.check.table}: {r.line()}")
    for table, why in report.held.items():
        out.say(f"{table}: a sync would hold it back — {why}")
    for table in report.absent:
        out.say(f"{table}: not in the lake; its checks did not run")
    if not report.published_known and any(r.check.kind == "row_count_change" for r in report.results):
        out.say("row_count_change: the destination did not answer, so the last published counts were not compared")
    report.raise_for_held()
    return 0


def cmd_run(args) -> int:
    from .engine import raise_for_failures
    from .pipeline import run

    s = _settings(args)
    quiet = args.json or args.no_progress
    try:
        result = run(s, args.select, args.full_refresh, _tables_arg(args), show_progress=not quiet,
                     echo=None if quiet else (lambda line: print(line, file=sys.stderr)))
    except TransformFailed as exc:
        if exc.report is not None:
            if args.json:
                _print_json({**exc.report.to_json(), "transform": exc.result.to_json() if exc.result else None}, s)
            _metrics(s, exc.report)
        raise
    report = result.sync
    if args.json:
        _print_json({**report.to_json(), "transform": result.transform.to_json()}, s)
    else:
        out = _Out()
        out.say(f"transform: {len(result.transform.models)} model(s) built, {len(result.transform.tests)} test(s) passed "
                f"in {result.transform.seconds:.1f} s")
        print_report(report, out)
    _metrics(s, report)
    raise_for_failures(report)
    return 0


def cmd_status(args) -> int:
    from .status import raise_for_status, status

    s = _settings(args)
    st = status(s)
    if args.json:
        _print_json({**st.to_json(), "lake": str(s.duckdb_path)}, s)
        raise_for_status(st)
        return 0
    out = _Out()
    out.say(f"destination: {st.destination}  (round trip {st.latency_ms:.1f} ms)")
    out.say(f"lake: {s.duckdb_path}")
    if st.running:
        out.say(st.running)
    rows = [[r.table, f"{r.lake_rows:,}", "-" if r.dest_rows is None else f"{r.dest_rows:,}", r.sync, _span(r.lag_seconds),
             f"{r.last_status} {_ago(r.last_run)}" if r.last_status else "never", r.watermark or "-", r.source_max or "-"]
            for r in st.tables]
    out.table(("table", "lake rows", "dest rows", "compared", "lag", "last run", "watermark", "source max"), rows,
          right=("lake rows", "dest rows", "lag"), optional=("watermark", "source max"))
    for r in st.tables:
        if r.problem:
            out.say(f"{r.table}: {r.problem}")
        elif r.failed and r.last_error:
            out.say(f"{r.table}: last run failed: {split_hint(r.last_error)[0]}")
    raise_for_status(st)
    return 0


def cmd_verify(args) -> int:
    from .verification import verify

    s = _settings(args)
    checks = verify(s, _tables_arg(args))
    bad = [c.table for c in checks if not c.ok]
    if args.json:
        _print_json({"equal": not bad, "tables": [c.to_json() for c in checks]}, s)
    else:
        out = _Out()
        out.say("verify: lake vs destination")
        rows = [[c.table, f"{c.lake_rows:,}", f"{c.dest_rows:,}", f"{c.missing:,}", f"{c.extra:,}", "equal" if c.ok else "DIFFERENT",
                 c.checksum] for c in checks]
        out.table(("table", "lake rows", "dest rows", "missing", "extra", "result", "checksum"), rows,
              right=("lake rows", "dest rows", "missing", "extra"), optional=("checksum",))
        for c in checks:
            if not c.ok:
                keys = ", ".join(str(k if len(k) > 1 else k[0]) for k in c.sample[:3])
                out.say(f"{c.table}: {c.missing:,} lake row(s) missing from the destination, {c.extra:,} extra there"
                          + (f"; e.g. keys {keys}" if keys else ""))
    if bad:
        raise VerifyMismatch(f"{len(bad)} table(s) differ: {', '.join(bad)}", "run `nw sync` (or `nw sync --full-refresh --tables ...`) and verify again")
    return 0


def cmd_runs(args) -> int:
    from .ledger import recent_runs

    s = _settings(args)
    history = recent_runs(s, args.limit)
    if args.json:
        _print_json({"destination": history.destination, "runs": list(history.runs)}, s)
        return 0
    out = _Out()
    out.say(f"runs in {history.destination} (newest first)" if history.runs else f"no runs recorded in {history.destination}")
    if not history.runs:
        return 0
    counts = ("tables", "inserted", "updated", "deleted", "secs")
    rows = []
    for r in history.runs:
        started, finished = _local(r["started"]), _local(r["finished"])
        if finished[:10] == started[:10]:
            finished = finished[11:]           # the same day: the time says it
        rows.append([r["run_id"], started, finished, r["status"], str(r["tables"]), f"{r['inserted']:,}", f"{r['updated']:,}",
                     f"{r['deleted']:,}", "-" if r["seconds"] is None else f"{r['seconds']:.1f}"])
    out.table(("run id", "started", "finished", "status", *counts), rows, right=counts, one_line=True)
    return 0


def cmd_config(args) -> int:
    from .settings import effective_settings

    rows = effective_settings(overrides=_overrides(args), dotenv=args.env_file)
    env_file = {"path": args.env_file, "found": os.path.isfile(args.env_file)}
    if args.json:
        _print_json({"env_file": env_file, "settings": {e.variable: {"value": e.value, "source": e.source} for e in rows}})
        return 0
    out = _Out()
    out.say(f"env file: {args.env_file}" + ("" if env_file["found"] else " (not found)"))
    out.table(("setting", "from", "value"), [[e.variable, e.source, _plain(e.value)] for e in rows])
    return 0


def _plain(value) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" if k else str(v) for k, v in value.items())
    return str(value)


# --- the parser --------------------------------------------------------------------------------

class _Help(argparse.HelpFormatter):
    """Descriptions and epilogs wrapped line by line (an indented line keeps its indent, a numbered one hangs),
    so examples and the exit-code table keep their shape; "(default: …)" added where an option's default is a value."""

    def __init__(self, prog, **kwargs):
        super().__init__(prog, **kwargs)
        self._action_max_length = 16      # room for the longest command name in `nw --help`

    def _fill_text(self, text, width, indent):
        import re
        import textwrap

        out = []
        for line in text.splitlines():
            lead, number = re.match(r"(\s*)(\d+\s+)?", line).groups()
            hang = lead + " " * len(number or "")
            out.append(textwrap.fill(line.strip(), width, initial_indent=indent + lead, subsequent_indent=indent + hang) or "")
        return "\n".join(out)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _destination_type(raw: str) -> str:
    return raw.strip().upper()


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must be more than 0")
    return value


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be 1 or more")
    return value


def _options() -> dict[str, argparse.ArgumentParser]:
    """Groups of options, given to the commands they apply to."""
    def group():
        return argparse.ArgumentParser(add_help=False, formatter_class=_Help)

    env = group()
    env.add_argument("--env-file", default=".env", metavar="PATH",
                     help="read settings from this .env file; the environment wins over it, flags over both")
    lake = group()
    lake.add_argument("--duckdb-path", metavar="PATH",
                      help="the lake file (overrides DUCKDB_PATH; default: DUCKDB_PATH, else DESTINATION_PATH/nw_lake.duckdb)")
    dest = group()
    aliases = ", ".join(f"{a}={t}" for a, t in DESTINATION_ALIASES.items())
    dest.add_argument("--destination-type", type=_destination_type, choices=DESTINATION_TYPES + tuple(DESTINATION_ALIASES),
                      metavar="TYPE", help=f"one of {', '.join(DESTINATION_TYPES)} (aliases: {aliases}); overrides DESTINATION_TYPE "
                                           "(default: DESTINATION_TYPE, else POSTGRES)")
    dest.add_argument("--database-url", metavar="URL",
                      help="PostgreSQL URL, postgresql://user:password@host:5432/db (overrides DATABASE_URL; default: "
                           "DATABASE_URL, else DB_HOST…, else an embedded server under DESTINATION_PATH)")
    dest.add_argument("--schema", metavar="NAME", help="destination schema (overrides DB_SCHEMA; default: DB_SCHEMA, else public)")
    batch = group()
    batch.add_argument("--batch-size", type=_positive, metavar="ROWS",
                       help="rows per transfer batch (overrides BATCH_SIZE; default: BATCH_SIZE, else 100000)")
    as_json = group()
    as_json.add_argument("--json", action="store_true",
                         help="print one JSON document on stdout instead of the table (errors stay one line on stderr; default: off)")
    tables = group()
    tables.add_argument("--tables", metavar="A,B", help="comma-separated tables (default: all)")
    dbt = group()
    dbt.add_argument("--select", default="", metavar="SPEC", help="dbt --select (default: every model)")
    dbt.add_argument("--full-refresh", action="store_true", help="dbt --full-refresh (default: off)")
    return {"env": env, "lake": lake, "dest": dest, "batch": batch, "json": as_json, "tables": tables, "dbt": dbt}


def _epilog(*examples: str, more: str = "") -> str:
    return "Example:\n" + "\n".join(f"  {e}" for e in examples) + (f"\n\n{more}" if more else "")


def _exit_code_table() -> str:
    return "Exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


def build_parser() -> argparse.ArgumentParser:
    o = _options()
    p = argparse.ArgumentParser(
        prog="nw", formatter_class=_Help,
        description="Sync a DuckDB lake into PostgreSQL/Supabase, S3, Delta or Databricks, incrementally and exactly; "
                    "every run is recorded in the destination's controle_cargas.",
        epilog=_epilog("nw bootstrap && nw sync && nw status", "nw sync --json > run.json || echo \"sync failed: $?\"",
                       more="Settings come from flags, then the environment, then --env-file (.env); `nw config` shows "
                            "which. NW_DEBUG=1 shows tracebacks.\n\n" + _exit_code_table()))
    p.add_argument("--version", action="version", version=f"nw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, groups, summary, description, epilog):
        c = sub.add_parser(name, parents=[o[g] for g in groups], help=summary, description=description, epilog=epilog,
                           formatter_class=_Help)
        return c

    b = command("bootstrap", ("env", "lake"), "build the sample lake (or --mutate it)",
                "Write the sample lake (clientes, pedidos, itens_pedido, pagamentos, with table_metadata and fk_metadata) "
                "to the lake file, or with --mutate apply a batch of updates, inserts and deletes to it. Touches no destination.",
                _epilog("nw bootstrap --scale 2 && nw bootstrap --mutate --fraction 0.05"))
    b.add_argument("--scale", type=float, default=1, help="1 ≈ 1k clientes / 10k pedidos / 30k itens / 10k pagamentos")
    b.add_argument("--seed", type=int, default=42, help="same seed, same data")
    b.add_argument("--mutate", action="store_true", help="apply a batch of updates, inserts and deletes instead (default: off)")
    b.add_argument("--fraction", type=float, default=0.01, help="share of rows changed by --mutate")
    b.set_defaults(func=cmd_bootstrap)

    s = command("sync", ("env", "lake", "dest", "batch", "tables", "json"), "send changed rows to the destination",
                "Send what changed in the lake since the last run (inserts, updates, deletes) to the destination, table by "
                "table in foreign-key order, and record the run in controle_cargas. The quality checks of CHECKS_FILE run "
                "first: a table failing an error check, and the tables depending on it, are held back (exit 9). A table "
                "that fails does not stop independent ones; exit 1 names it.",
                _epilog("nw sync --tables clientes,pedidos --dry-run", "nw sync --watch --no-progress", more="--json prints the report as JSON (keys: run_id, "
                        "destination, dry_run, ok, ledger_error, checks[], steps[], tables[]) and shows no progress bar."))
    s.add_argument("--full-refresh", action="store_true",
                   help="ignore watermarks: resend whole tables, delete what the lake lacks (default: off)")
    s.add_argument("--dry-run", action="store_true", help="show the load order and rows to send; change nothing (default: off)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (default: shown)")
    keep = s.add_mutually_exclusive_group()
    keep.add_argument("--watch", action="store_true",
                      help="stay running and sync whenever the lake changes, one line per sync, until Ctrl-C (default: off)")
    keep.add_argument("--every", type=_seconds, metavar="SECONDS",
                      help="stay running and sync every SECONDS (at most one sync at a time) until Ctrl-C (default: off)")
    s.set_defaults(func=cmd_sync)

    st = command("status", ("env", "lake", "dest", "json"), "per table: in sync or behind, last run, lag",
                 "Per table: rows in the lake and in the destination, whether they differ (from the row count and fingerprint "
                 "sum the destination recorded, without reading its rows), lag, last run. A table is behind when that "
                 "comparison is not 'in sync': 'differs' (rows changed in the lake since), 'never synced', or 'unknown' "
                 "(nothing recorded to compare with, e.g. after a change of fingerprint function); `nw sync` catches "
                 "each up.",
                 _epilog("nw status --json | jq '.behind'", more="Exit 0: every table in sync and its last run ok; 7: a table "
                         "is behind; 8: a table failed in its last run (wins over 7)."))
    st.set_defaults(func=cmd_status)

    v = command("verify", ("env", "lake", "dest", "batch", "tables", "json"), "compare every table, lake vs destination",
                "Read every row of each table from the destination and compare it with the lake, value for value; "
                "exit 1 when any table differs.",
                _epilog("nw verify --tables pedidos --json"))
    v.set_defaults(func=cmd_verify)

    r = command("runs", ("env", "dest", "json"), "list past runs from controle_cargas",
                "The run history the destination's controle_cargas holds: one line per run with its id, start, finish, "
                "status (failed when any table failed), number of tables, rows inserted/updated/deleted, seconds.",
                _epilog("nw runs --limit 5"))
    r.add_argument("--limit", type=_positive, default=20, metavar="N", help="show the newest N runs")
    r.set_defaults(func=cmd_runs)

    t = command("transform", ("env", "lake", "dbt", "json"), "build the dbt project inside the lake (models, then tests)",
                "dbt build of the project in DBT_PROJECT_DIR (dbt-core + dbt-duckdb, offline) on the lake file: its models, "
                "then their tests. dbt's lines stream to stderr as it goes. A model or test that fails is one line naming it "
                "(exit 10); nothing is published.",
                _epilog("nw transform --select cliente_valor+"))
    t.add_argument("--no-progress", action="store_true", help="do not stream dbt's lines (default: streamed)")
    t.set_defaults(func=cmd_transform)

    k = command("check", ("env", "lake", "dest", "tables", "json"), "run the quality checks alone (publish nothing)",
                "Run the checks of CHECKS_FILE (checks.yml) on the lake: each check's result, its bad rows and a sample of "
                "their keys, and which tables a sync would hold back. The destination is asked only for the last published "
                "row counts (row_count_change). Exit 9 when an error-severity check fails.",
                _epilog("nw check --tables pedidos,clientes", "nw check --json | jq '.held'"))
    k.set_defaults(func=cmd_check)

    rn = command("run", ("env", "lake", "dest", "batch", "tables", "dbt", "json"), "transform → check → sync, one run id",
                 "The pipeline: dbt build (as nw transform), then the quality checks, then the sync of what passed, all "
                 "recorded in controle_cargas under one run id (dbt's models as rows named dbt:<model>). A failed dbt model "
                 "or test stops before anything is published (exit 10); a held table exits 9; a failed one exits 1.",
                 _epilog("nw run --tables clientes,pedidos,cliente_valor", "nw run --json > run.json"))
    rn.add_argument("--no-progress", action="store_true", help="no dbt lines, no progress bar (default: shown)")
    rn.set_defaults(func=cmd_run)

    c = command("config", ("env", "lake", "dest", "batch", "json"), "show the effective settings and where each came from",
                "Every setting as a run would use it and where its value came from: default, .env (--env-file), "
                "environment, or flag. Passwords (in DATABASE_URL too), S3 keys and tokens are masked. Connects to nothing.",
                _epilog("nw config --env-file prod.env --json"))
    c.set_defaults(func=cmd_config)
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
    args.lean = argv is None and args.command in ("sync", "status", "verify", "runs")
    interrupted = _note_interrupts() if argv is None else None
    try:
        return _run(args, interrupted)
    except KeyboardInterrupt:            # one that came as the work returned
        return _interrupted()
    finally:
        if interrupted is not None:
            _interrupt_after_the_work()


def _run(args, interrupted) -> int:
    if os.environ.get("NW_TIMINGS"):
        import atexit

        from . import clock

        atexit.register(lambda: print(f"nw: timings: {clock.report()}", file=sys.stderr))
    try:
        code = args.func(args)
        # A Ctrl-C a library took for an error and fell back from: the run went on, but it was asked to stop.
        # (--watch / --every end with Ctrl-C by design: that is their normal stop.)
        return _interrupted() if interrupted and interrupted.is_set() and not getattr(args, "watching", False) else code
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


def _interrupt_after_the_work() -> None:
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


def _interrupted() -> int:
    print(INTERRUPTED, file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
