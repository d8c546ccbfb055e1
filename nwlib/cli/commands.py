"""The ``nw`` commands: each reads its settings, calls the library, prints the result (:mod:`.output`) and
returns 0, or raises the library's ``NwError`` for :func:`nwlib.cli.main` to turn into one line and a code."""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

from ..errors import ConfigError, TransformFailed, VerifyMismatch, split_hint
from .output import Out, ago, json_value, local, plain, print_json, print_report, redacted, span
from .process import skip_unused_imports


def overrides(args) -> dict:
    """Settings given as flags (None: not given)."""
    return {
        "duckdb_path": getattr(args, "duckdb_path", None),
        "destination_type": getattr(args, "destination_type", None),
        "database_url": getattr(args, "database_url", None),
        "db_schema": getattr(args, "schema", None),
        "batch_size": getattr(args, "batch_size", None),
    }


def _settings(args):
    from ..settings import load_settings

    settings = load_settings(overrides=overrides(args), dotenv=args.env_file)
    if getattr(args, "lean", False) and settings.destination_type == "POSTGRES":
        skip_unused_imports()      # the other destinations' drivers may want pandas
    return settings



def _tables_arg(args) -> list[str] | None:
    return [x.strip() for x in (args.tables or "").split(",") if x.strip()] or None



def cmd_bootstrap(args) -> int:
    from ..bootstrap import PER_SCALE, bootstrap, mutate

    s = _settings(args)
    out = Out()
    if args.mutate:
        changed = mutate(s.duckdb_path, args.fraction, args.seed)
        out.say(f"changes applied to {s.duckdb_path}")
        counts = ("inserted", "updated", "deleted")
        out.table(("table", *counts), [[name, *(f"{changed[name][k]:,}" for k in counts)] for name in PER_SCALE], right=counts)
        return 0
    res = bootstrap(s.duckdb_path, args.scale, args.seed)
    out.say(f"sample lake written to {res.path}: " + ", ".join(f"{k} {v:,}" for k, v in res.counts.items()))
    return 0


def cmd_sync(args) -> int:
    s = _settings(args)      # first: it decides which imports the process skips
    from ..engine import raise_for_failures, sync
    if args.watch or args.every is not None:
        return _watch(s, args)
    report = sync(s, _tables_arg(args), full_refresh=args.full_refresh, dry_run=args.dry_run,
                  show_progress=not (args.no_progress or args.json))
    if args.json:
        print_json(report.to_json(), s)
    else:
        print_report(report, Out())
    if not report.dry_run:
        _metrics(s, report)
    raise_for_failures(report)
    return 0


def _watch(settings, args) -> int:
    """``nw sync --watch`` / ``--every``: one line (or one JSON document, JSON Lines) per sync until Ctrl-C."""
    from ..watch import watch

    if args.dry_run or args.full_refresh:
        raise ConfigError("--watch and --every take no --dry-run or --full-refresh", "run those once, without watching")
    done = []

    def on_cycle(c) -> None:
        done.append(c)
        when = datetime.fromtimestamp(c.started, timezone.utc).strftime("%H:%M:%S")
        if args.json:
            doc = {"cycle": c.number, "started": datetime.fromtimestamp(c.started, timezone.utc).isoformat(), "seconds": round(c.seconds, 3),
                   "error": c.error, "report": c.report.to_json() if c.report else None}
            print(json.dumps(redacted(doc, settings), ensure_ascii=False, default=json_value), flush=True)
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
        from ..metrics import after_run

        after_run(settings, report)


def cmd_transform(args) -> int:
    from ..transform import transform

    s = _settings(args)
    echo = None if args.json or args.no_progress else (lambda line: print(line, file=sys.stderr))
    try:
        result = transform(s, args.select, args.full_refresh, echo=echo)
    except TransformFailed as exc:
        if args.json and exc.result is not None:
            print_json(exc.result.to_json(), s)          # the node results, then the one-line error
        raise
    if args.json:
        print_json(result.to_json(), s)
        return 0
    out = Out()
    out.say(f"dbt build: {len(result.models)} model(s), {len(result.tests)} test(s) in {result.seconds:.1f} s")
    rows = [[n.name, n.kind, n.status, f"{n.seconds:.2f}", "" if n.failures is None else f"{n.failures:,}"] for n in result.nodes]
    out.table(("node", "kind", "status", "secs", "failing"), rows, right=("secs", "failing"))
    return 0


def cmd_check(args) -> int:
    from ..pipeline import check

    s = _settings(args)
    report = check(s, _tables_arg(args))
    if args.json:
        print_json(report.to_json(), s)
        report.raise_for_held()
        return 0
    out = Out()
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
    from ..engine import raise_for_failures
    from ..pipeline import run

    s = _settings(args)
    quiet = args.json or args.no_progress
    try:
        result = run(s, args.select, args.full_refresh, _tables_arg(args), show_progress=not quiet,
                     echo=None if quiet else (lambda line: print(line, file=sys.stderr)))
    except TransformFailed as exc:
        if exc.report is not None:
            if args.json:
                print_json({**exc.report.to_json(), "transform": exc.result.to_json() if exc.result else None}, s)
            _metrics(s, exc.report)
        raise
    report = result.sync
    if args.json:
        print_json({**report.to_json(), "transform": result.transform.to_json()}, s)
    else:
        out = Out()
        out.say(f"transform: {len(result.transform.models)} model(s) built, {len(result.transform.tests)} test(s) passed "
                f"in {result.transform.seconds:.1f} s")
        print_report(report, out)
    _metrics(s, report)
    raise_for_failures(report)
    return 0


def cmd_status(args) -> int:
    s = _settings(args)      # first: it decides which imports the process skips
    from ..status import raise_for_status, status
    st = status(s)
    if args.json:
        print_json({**st.to_json(), "lake": str(s.duckdb_path)}, s)
        raise_for_status(st)
        return 0
    out = Out()
    out.say(f"destination: {st.destination}  (round trip {st.latency_ms:.1f} ms)")
    out.say(f"lake: {s.duckdb_path}")
    if st.running:
        out.say(st.running)
    rows = [[r.table, f"{r.lake_rows:,}", "-" if r.dest_rows is None else f"{r.dest_rows:,}", r.sync, span(r.lag_seconds),
             f"{r.last_status} {ago(r.last_run)}" if r.last_status else "never", r.watermark or "-", r.source_max or "-"]
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
    s = _settings(args)      # first: it decides which imports the process skips
    from ..verification import verify
    checks = verify(s, _tables_arg(args))
    bad = [c.table for c in checks if not c.ok]
    if args.json:
        print_json({"equal": not bad, "tables": [c.to_json() for c in checks]}, s)
    else:
        out = Out()
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
    s = _settings(args)      # first: it decides which imports the process skips
    from ..ledger import recent_runs
    history = recent_runs(s, args.limit)
    if args.json:
        print_json({"destination": history.destination, "runs": list(history.runs)}, s)
        return 0
    out = Out()
    out.say(f"runs in {history.destination} (newest first)" if history.runs else f"no runs recorded in {history.destination}")
    if not history.runs:
        return 0
    counts = ("tables", "inserted", "updated", "deleted", "secs")
    rows = []
    for r in history.runs:
        started, finished = local(r["started"]), local(r["finished"])
        if finished[:10] == started[:10]:
            finished = finished[11:]           # the same day: the time says it
        rows.append([r["run_id"], started, finished, r["status"], str(r["tables"]), f"{r['inserted']:,}", f"{r['updated']:,}",
                     f"{r['deleted']:,}", "-" if r["seconds"] is None else f"{r['seconds']:.1f}"])
    out.table(("run id", "started", "finished", "status", *counts), rows, right=counts, one_line=True)
    return 0


def cmd_config(args) -> int:
    from ..settings import effective_settings

    rows = effective_settings(overrides=overrides(args), dotenv=args.env_file)
    env_file = {"path": args.env_file, "found": os.path.isfile(args.env_file)}
    if args.json:
        print_json({"env_file": env_file, "settings": {e.variable: {"value": e.value, "source": e.source} for e in rows}})
        return 0
    out = Out()
    out.say(f"env file: {args.env_file}" + ("" if env_file["found"] else " (not found)"))
    out.table(("setting", "from", "value"), [[e.variable, e.source, plain(e.value)] for e in rows])
    return 0
