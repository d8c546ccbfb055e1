"""The sync engine: settings → lake → plan → destination → ledger.

``sync`` reads the lake's model and orders it (:mod:`nwlib.plan`), works out
every table's change set by comparing fingerprints (:mod:`nwlib.cdc`, whose
docstring is the contract), sends each step's rows (one atomic destination
call per step, retried when the failure is transient), creates foreign keys,
then deletes children-first, and writes one ledger row per table.  A table
that fails (or cannot be synced at all) does not stop independent tables;
tables that depend on it are skipped.  The lake is only read.
"""
from __future__ import annotations

import contextlib
import logging
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from . import cdc, clock, destinations, evolution, fingerprint, graph
from .cdc import ChangeSet
from .destinations.base import DeleteResult, Destination
from .errors import HINT, DestinationError, NwError, QualityGateFailed, SchemaChangeError, SyncFailed, SyncInProgress, split_hint
from .holdings import Holdings, holdings_path
from .holdings import last_written as holdings_written
from .holdings import sent_keys as holdings_keys
from .lake import open_lake, stream_cursor
from .lake.files import last_written as lake_written
from .model import APPEND, FAILED, HELD, MERGE, OK, PLANNED, REPLACE, SKIPPED, Plan, SyncReport, TableReport, TableSpec, TableState
from .plan import read_plan
from .progress import ProgressSink
from .records import new_run_id, now
from .settings import Settings
from .sql import ident

log = logging.getLogger("nwlib.engine")
ProgressFactory = Callable[[int], ProgressSink]


def _retrying(settings: Settings) -> Retrying:
    """Retries of one destination call after a transient failure.

    At most MAX_RETRIES retries, waiting RETRY_BASE_SECONDS × 2ⁿ (at most 2 s, plus jitter) before each,
    and none that would start more than RETRY_WINDOW_SECONDS after the call's first failure.  The window
    counts from the first *failure*, so a long COPY cut near its end is still retried.  The longest a run
    waits on a server that does not answer is therefore DB_CONNECT_TIMEOUT (the first attempt) +
    RETRY_WINDOW_SECONDS + DB_CONNECT_TIMEOUT (the last attempt): 3 + 7 + 3 = 13 s by default."""
    first_failure: list[float] = []

    def window_closed(state) -> bool:
        if not first_failure:
            first_failure.append(time.monotonic())
        return time.monotonic() - first_failure[0] + (state.upcoming_sleep or 0) > settings.retry_window_seconds

    return Retrying(
        stop=stop_after_attempt(settings.max_retries + 1) | window_closed,
        wait=wait_exponential_jitter(multiplier=settings.retry_base_seconds, max=2, jitter=settings.retry_base_seconds),
        retry=retry_if_exception(lambda e: isinstance(e, DestinationError) and e.transient),
        reraise=True,
    )


def _mode(cs: ChangeSet) -> str:
    return cs.spec.mode + (" full" if cs.full else " incremental")


@dataclass
class _Run:
    settings: Settings
    con: duckdb.DuckDBPyConnection
    dest: Destination
    plan: Plan
    run_id: str
    holdings: Holdings
    totals: cdc.LakeTotals
    stream: duckdb.DuckDBPyConnection | None = None
    progress: ProgressSink = field(default_factory=lambda: ProgressSink(0, False))
    states: dict[str, TableState] = field(default_factory=dict)
    changes: dict[str, ChangeSet] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)        # tables a quality check holds back, and why
    checks: tuple = ()                                         # the quality checks' results (nwlib.quality.CheckResult)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sent: dict[str, TableSpec] = field(default_factory=dict)   # the lake spec each table is sent with (SCHEMA_CHANGES applied)
    stopped: SyncInProgress | None = None     # this run lost its lock: it writes nothing more
    _commits: itertools.count = field(default_factory=itertools.count)

    def reader(self, cs: ChangeSet):
        return cs.reader(self.stream or self.con, self.settings.batch_size)

    def call(self, fn):
        return _retrying(self.settings)(fn)

    def revision(self) -> str:
        """A new revision token: it changes with every commit nwlib makes to a table."""
        return f"{self.run_id}.{next(self._commits)}"

    def note(self, table: str, *notes: str) -> None:
        self.notes[table] = self.notes.get(table, ()) + tuple(n for n in notes if n)


def sync(settings: Settings, tables: Iterable[str] | None = None, full_refresh: bool = False,
         dry_run: bool = False, show_progress: bool = True, destination: Destination | None = None,
         progress: ProgressFactory | None = None, run_id: str | None = None,
         steps: Sequence[TableReport] = ()) -> SyncReport:
    """Run one sync; returns the report (``report.ok`` says if every table made it).

    ``dry_run`` works out the same change sets and reports them (inserts, updates, deletes per table)
    without writing to the destination.  ``progress(total_rows)`` makes the progress display
    (a dashboard's bar); default tqdm.  ``run_id`` and ``steps``: a pipeline's run (``nw run``) whose
    earlier steps (dbt's models) are recorded in ``controle_cargas`` under the same run id."""
    run_id = run_id or new_run_id()
    with open_lake(settings) as con:
        plan = read_plan(settings, con, tables, full_refresh)
        # The lake is hashed while the destination connects, locks and reads its state; its (key, fingerprint)
        # pairs are kept for the comparison when changes are likely: the lake was written since the local copy.
        copy_written = holdings_written(settings.destination_path)
        totals = cdc.LakeTotals(con, (s for s in (plan.specs[n] for n in plan.order) if s.mode != APPEND and not s.problem),
                                keep_pairs=copy_written is None or lake_written(settings.duckdb_path) > copy_written)
        dest = None
        try:
            dest = destination or destinations.create(settings)
            if dry_run:
                return _dry_run(settings, con, dest, plan, run_id, totals)
            with contextlib.ExitStack() as held:
                # Taking the lock connects first: a refused connection is retried like any other.
                _retrying(settings)(lambda: held.enter_context(dest.lock()))
                return _sync(settings, con, dest, plan, run_id, totals, show_progress, progress, tuple(steps))
        finally:
            totals.close()
            if destination is None and dest is not None:
                dest.close()


def _open_run(settings: Settings, con, dest: Destination, plan: Plan, run_id: str, totals: cdc.LakeTotals) -> _Run:
    return _Run(settings, con, dest, plan, run_id, Holdings(con, holdings_path(settings.destination_path, dest.describe())), totals)


def _dry_run(settings: Settings, con, dest: Destination, plan: Plan, run_id: str, totals: cdc.LakeTotals) -> SyncReport:
    run = _open_run(settings, con, dest, plan, run_id, totals)
    try:
        run.states = dest.states(plan.order)
        _run_checks(run)
        _work_out_changes(run, apply_policy=True)
        reports = []
        for name in plan.order:
            spec = plan.specs[name]
            if name in run.problems:
                reports.append(TableReport(name, spec.mode, FAILED, error=run.problems[name]))
                continue
            cs = run.changes[name]
            status, error = (HELD, run.held[name]) if name in run.held else (PLANNED, None)
            reports.append(TableReport(name, _mode(cs), status, inserted=cs.inserts, updated=cs.rows - cs.inserts, deleted=cs.deletes,
                                       watermark_before=cs.watermark_before, watermark_after=cs.watermark_after, error=error,
                                       notes=run.notes.get(name, ()) + cs.notes))
        return SyncReport(run_id, dest.capabilities.name, tuple(reports), dry_run=True, checks=run.checks)
    finally:
        run.holdings.close()


def _sync(settings: Settings, con, dest: Destination, plan: Plan, run_id: str, totals: cdc.LakeTotals, show_progress: bool,
          make_progress: ProgressFactory | None = None, steps: tuple[TableReport, ...] = ()) -> SyncReport:
    run = _open_run(settings, con, dest, plan, run_id, totals)
    reports: dict[str, TableReport] = {}
    try:
        run.states = run.call(lambda: dest.states(plan.order))
        _run_checks(run)
        sent = _apply_policies(run)
        schema_changes = run.call(lambda: dest.prepare([cdc.transfer_spec(s) for s in sent.values()], plan.full_refresh))
        for name, error in dest.schema_errors().items():
            run.problems.setdefault(name, error)
        clock.mark("destination ready")
        _work_out_changes(run, apply_policy=False, specs=sent)
        clock.mark("changes worked out")
        total = sum(cs.rows + cs.deletes for cs in run.changes.values())
        run.progress = make_progress(total) if make_progress else ProgressSink(total, show_progress)
        run.stream = stream_cursor(con)
        for step in plan.steps:
            _load_step(run, step.tables, reports, schema_changes)
        if dest.capabilities.foreign_keys and not run.stopped:
            _foreign_keys(run, reports)
        clock.mark("rows sent")
        for step in reversed(plan.steps):
            if not run.stopped:
                _delete_step(run, step.tables, reports)
        clock.mark("deletes sent")
    finally:
        run.progress.close()
        run.holdings.close()
        if run.stream is not None:
            run.stream.close()
    final = tuple(reports[t] for t in plan.order)
    # Each table's ledger row was written with its rows (status ok); the final statuses (a later failure
    # such as the foreign-key step, skips, notes) go in now.  If that cannot be written the report says so.
    try:
        run.call(lambda: dest.record(run_id, steps + final))
        clock.mark("ledger written")
    except NwError as exc:
        return SyncReport(run_id, dest.capabilities.name, final, ledger_error=str(exc), checks=run.checks, steps=steps)
    return SyncReport(run_id, dest.capabilities.name, final, checks=run.checks, steps=steps)


def record_steps(settings: Settings, run_id: str, steps: Sequence[TableReport]) -> None:
    """Record a pipeline's steps in ``controle_cargas`` when no sync follows them (dbt failed: nothing is published)."""
    dest = destinations.create(settings)
    try:
        with contextlib.ExitStack() as held:
            _retrying(settings)(lambda: held.enter_context(dest.lock()))
            _retrying(settings)(lambda: dest.prepare([], frozenset()))
            _retrying(settings)(lambda: dest.record(run_id, tuple(steps)))
    finally:
        dest.close()


def _run_checks(run: _Run) -> None:
    """The quality gate, before anything is sent: a failed ``error`` check (CHECKS_FILE) — or a dbt model whose
    last build or tests failed — holds its table and the tables that depend on it back this run; a failed
    ``warn`` check is noted on its table.  With ``--tables``, the checks of the chosen tables' parents (at any
    depth) run too: a child is not published while its parent fails."""
    from . import quality
    from .transform import failed_models

    model = run.plan.model or run.plan.specs
    dbt_failed = failed_models(run.settings)
    checks = quality.load_checks(run.settings.checks_path, explicit=run.settings.checks_file is not None)
    if not checks and not any(name in model for name in dbt_failed):
        return
    chosen = set(run.plan.order)
    states = dict(run.states)
    parents = sorted(graph.with_parents(model, chosen) - set(states))
    if parents and any(c.kind == "row_count_change" for c in checks):
        states.update(run.call(lambda: run.dest.states(parents)))
    published = {t: (st.row_count if st.loaded else None) for t, st in states.items()}
    verdict = quality.gate(run.con, model, chosen, checks, published, dbt_failed, source=str(run.settings.checks_path))
    run.checks, run.held = verdict.results, verdict.held
    if verdict.absent:
        log.warning("%s names table(s) the lake does not have, whose checks did not run: %s", run.settings.checks_path,
                    ", ".join(verdict.absent))
    for r in run.checks:
        if not r.passed and not r.blocking and r.check.table in chosen:
            run.note(r.check.table, r.line())


# --- change sets ------------------------------------------------------------------------------

def _apply_policies(run: _Run) -> dict[str, TableSpec]:
    """The spec each table is sent with under SCHEMA_CHANGES; a table the policy stops gets a problem."""
    sent = {}
    for name in run.plan.order:
        spec = run.plan.specs[name]
        if spec.problem:
            run.problems[name] = spec.problem
            continue
        if fingerprint.COLUMN in spec.column_names:
            run.problems[name] = (f"table {name!r} has a column named {fingerprint.COLUMN!r}, which nwlib adds to every destination "
                                  "table — rename that column in the lake")
            continue
        last = tuple(c for c in run.states[name].columns if c.name != fingerprint.COLUMN)
        try:
            sent[name] = evolution.apply_policy(spec, run.settings.schema_policy(name), last, name in run.plan.full_refresh)
        except SchemaChangeError as exc:
            run.problems[name] = str(exc)
            continue
        run.note(name, *evolution.discarded(spec, sent[name]))
    return sent


def _work_out_changes(run: _Run, apply_policy: bool, specs: dict[str, TableSpec] | None = None) -> None:
    if apply_policy:
        specs = _apply_policies(run)
    run.sent = dict(specs)
    for name in run.plan.order:
        if name in run.problems or name not in specs:
            continue
        try:
            run.changes[name] = _changes(run, specs[name], run.states[name])
        except SchemaChangeError as exc:
            run.problems[name] = str(exc)
        except DestinationError as exc:
            run.problems[name] = str(exc)


def _changes(run: _Run, spec: TableSpec, state: TableState) -> ChangeSet:
    if spec.mode == APPEND:
        full = spec.name in run.plan.full_refresh or spec.name in run.dest.needs_full() or not state.loaded
        return cdc.append_changes(run.con, spec, state.watermark, full, run.dest.capabilities.append_replaces_tail)
    version = fingerprint.version()
    refresh = spec.name in run.plan.full_refresh
    n, total = run.totals.get(run.con, spec)
    same = state.loaded and not refresh and state.fingerprint_version == version and (state.row_count, state.fingerprint_sum) == (n, total)
    if same:
        run.totals.release(run.con, spec)
        return ChangeSet(cdc.transfer_spec(spec), "", (), 0, state.watermark, state.watermark, False, state_after=state)
    _import_arrow_meanwhile()
    wm_after = cdc.next_watermark(run.con, spec, state.watermark)
    if spec.mode == REPLACE:
        after = TableState(wm_after, n, (), True, total, version, run.revision())
        return ChangeSet(cdc.transfer_spec(spec), cdc.transfer_select(spec), (), n, state.watermark, wm_after, True, state_after=after)
    return _compare(run, spec, state, version, wm_after, (n, total))


def _import_arrow_meanwhile() -> None:
    """Rows will move: import Arrow (about 0.1 s) in a thread while DuckDB compares, which releases the GIL.
    A sync with nothing to send never imports it; the first ``import pyarrow`` elsewhere waits for this one."""
    import sys
    import threading

    if "pyarrow" not in sys.modules and not any(t.name == "nw-import-arrow" for t in threading.enumerate()):
        threading.Thread(target=lambda: (__import__("pyarrow"), __import__("pyarrow.compute")), name="nw-import-arrow").start()


def _compare(run: _Run, spec: TableSpec, state: TableState, version: str, wm_after, totals: tuple[int, int]) -> ChangeSet:
    """A keyed table whose lake differs from the destination's recorded state: compare row by row."""
    con, holdings = run.con, run.holdings
    refresh = spec.name in run.plan.full_refresh
    notes = []
    if refresh or not holdings.current(spec, state) or (state.loaded and state.fingerprint_sum is None):
        rows_held = run.call(lambda: run.dest.fingerprints(cdc.transfer_spec(spec)))
        holdings.load(spec, rows_held, state)
        held_n, held_sum, unknown = holdings.totals(spec)
        if state.loaded and (held_n, held_sum) != (state.row_count, state.fingerprint_sum) and not unknown:
            notes.append(f"recorded state corrected from the destination's rows ({state.row_count:,} → {held_n:,} rows)")
    new_version = state.loaded and state.fingerprint_version not in (None, version)
    if new_version:
        notes.append(f"fingerprint function changed ({state.fingerprint_version} → {version}): compared every row once")
    if not spec.primary_key_enforced:
        nulls = cdc.null_key_columns(con, spec)
        if nulls:
            shown = ", ".join(f"{k} ({n:,} row{'s' if n > 1 else ''})" for k, n in nulls)
            raise SchemaChangeError(f"table {spec.name!r} has NULL in its primary key in the lake: {shown}",
                                    "give those rows a key in the lake (or leave them out with a view) and rerun")
    if cdc.lossy_key(spec) or not spec.primary_key_enforced:
        dups = cdc.duplicate_keys(con, spec)
        if dups:
            shown = "; ".join(str(d if len(d) > 1 else d[0]) for d in dups)
            why = " once sent (nanoseconds are cut to microseconds)" if cdc.lossy_key(spec) else ""
            raise SchemaChangeError(f"table {spec.name!r} has duplicate primary keys in the lake{why} ({', '.join(spec.primary_key)} = {shown})",
                                    "make the key unique in the lake (or cast it in a view) and rerun")
    full = refresh or new_version or not state.loaded or spec.name in run.dest.needs_full()
    up, gone = cdc.compare(con, spec, holdings, full, totals[0], pairs=run.totals.pairs(spec), reserved=run.totals.held)
    rows = totals[0] if up is None else con.execute(f"SELECT count(*) FROM {up}").fetchone()[0]
    only = None   # stream every lake row: all are sent, or most changed (a rebuilt lake) and filtering would cost more
    if up is not None and not (totals[0] >= 100_000 and rows > totals[0] // 2):
        only = cdc.only_keys(con, spec, up)
    deletes = con.execute(f"SELECT count(*) FROM {gone}").fetchone()[0]
    after, inserts = cdc.state_after_upserts(con, spec, holdings, up, totals, gone, version, run.revision())
    after = replace(after, watermark=wm_after)
    if only is None:
        rows = totals[0]
    else:
        run.totals.release(con, spec)     # kept only for the local copy of a table sent whole (_remember_load)
    select = cdc.transfer_select(spec) if only is None else cdc.only_select(spec, only)
    return ChangeSet(cdc.transfer_spec(spec), select, (), rows, state.watermark, wm_after, full or only is None, None,
                     only, inserts, deletes, after, tuple(notes), lake_sum=totals[1] if only is None else None)


# --- loading ----------------------------------------------------------------------------------

def _load_step(run: _Run, tables: Sequence[str], reports: dict[str, TableReport], schema_changes) -> None:
    plan, dest = run.plan, run.dest
    started = now()
    if run.stopped:
        for t in tables:
            reports[t] = TableReport(t, plan.specs[t].mode, SKIPPED, started_at=started, finished_at=now(), error=f"skipped: {run.stopped.what}")
        return
    held = [t for t in tables if t in run.held]
    if held:
        for t in tables:
            why = run.held.get(t) or f"held back with {held[0]} (loaded in one step): {run.held[held[0]]}"
            kept = run.states[t].watermark       # the destination keeps its last good state, watermark included
            reports[t] = TableReport(t, plan.specs[t].mode, HELD, watermark_before=kept, watermark_after=kept, started_at=started,
                                     finished_at=now(), error=why, notes=run.notes.get(t, ()))
        return
    blocked = [fk.ref_table for t in tables for fk in plan.specs[t].foreign_keys
               if fk.ref_table in reports and reports[fk.ref_table].status != OK]
    if blocked:
        for t in tables:
            reports[t] = TableReport(t, plan.specs[t].mode, SKIPPED, started_at=started, finished_at=now(),
                                     error=f"skipped: parent table {blocked[0]} did not load")
        return
    failed = {t: run.problems[t] for t in tables if t in run.problems}
    if not failed:
        failed = _lake_problems(run, tables)
    if failed:
        first = next(iter(failed.values()))
        for t in tables:
            error = failed.get(t) or f"failed with {next(iter(failed))} (loaded in one step): {first}"
            reports[t] = TableReport(t, plan.specs[t].mode, FAILED, started_at=started, finished_at=now(), error=error)
        return
    step = [run.changes[t] for t in tables]
    # A table is loaded when it has rows to send, or its recorded state must change (a schema change noted,
    # a repaired sum): the state (columns included) is written with its rows.
    busy = [cs for cs in step if not cs.nothing or cs.state_after != run.states[cs.spec.name] or schema_changes.get(cs.spec.name)]
    results = {}
    if busy:
        for cs in busy:
            run.progress.table(cs.spec.name)
        try:
            results = run.call(lambda: dest.load(busy, run.reader, run.run_id, run.progress.advance))
        except NwError as exc:
            if isinstance(exc, SyncInProgress):
                run.stopped = exc
            error = _explain(run, [plan.specs[cs.spec.name] for cs in busy], exc)
            for cs in step:
                reports[cs.spec.name] = TableReport(cs.spec.name, _mode(cs), FAILED, watermark_before=cs.watermark_before,
                                                    watermark_after=cs.watermark_before, started_at=started, finished_at=now(), error=error)
            return
    for cs in step:
        name = cs.spec.name
        r = results.get(name)
        if r is not None and plan.specs[name].mode == MERGE:
            _remember_load(run, run.sent[name], cs, r)
        notes = tuple(schema_changes.get(name, ())) + (r.schema_changes if r else ())
        reports[name] = TableReport(name, _mode(cs), OK, r.inserted if r else 0, r.updated if r else 0, 0, cs.watermark_before,
                                    cs.watermark_after, started, now(), None, notes, run.notes.get(name, ()) + cs.notes)


def _remember_load(run: _Run, spec: TableSpec, cs: ChangeSet, result) -> None:
    """After a commit: the local copy of what the destination holds follows, unless the destination did
    something else than expected (then the copy is read again next time)."""
    revision, version = cs.state_after.revision, cs.state_after.fingerprint_version
    if result.inserted != cs.inserts:
        run.holdings.forget(spec)
    elif cs.only is None and cs.rows:
        # Every lake row was sent: the destination now holds them, and the keys still to delete.
        pairs = run.totals.pairs(spec)
        lake = (f"SELECT * FROM {pairs}" if pairs else
                f"SELECT {holdings_keys(spec)}, {fingerprint.of(spec)} AS {ident(fingerprint.COLUMN)} FROM {spec.source}")
        run.holdings.replace_with(spec, f"{lake} UNION ALL SELECT * FROM {cdc.temp_name('gone', spec)}", revision, version)
        run.totals.release(run.con, spec)
    elif cs.rows:
        run.holdings.upsert(spec, cdc.temp_name("up", spec), revision, version)
    else:
        run.holdings.stamp(spec, cs.state_after.revision, cs.state_after.fingerprint_version)


def _lake_problems(run: _Run, tables: Sequence[str]) -> dict[str, str]:
    """Lake rows a destination that enforces foreign keys (or jsonb) would refuse: one line per table, before writing."""
    out = {}
    caps = run.dest.capabilities
    for t in tables:
        cs = run.changes[t]
        spec = run.plan.specs[t]
        # A child is checked when it sends rows, or when a parent loses rows (its unchanged rows may point at them).
        parent_deletes = any(run.changes[fk.ref_table].deletes for fk in spec.foreign_keys if fk.ref_table in run.changes)
        problem = None
        if caps.foreign_keys and (cs.rows or cs.full or parent_deletes):
            problem = _orphans(run, spec)
        if not problem and caps.strict_json and (cs.rows or cs.full):
            problem = _json_problem(run, spec, cs)
        if problem:
            out[t] = problem
    return out


def _orphans(run: _Run, spec: TableSpec) -> str | None:
    """Child rows whose parent row is not in the lake (possible when keys live only in metadata)."""
    for fk in spec.foreign_keys:
        parent = run.plan.model.get(fk.ref_table)
        if parent is None or tuple(parent.primary_key) != tuple(fk.ref_columns):
            continue   # not a constraint the destination enforces
        cols = ", ".join(ident(c) for c in fk.columns)
        refs = ", ".join(ident(c) for c in fk.ref_columns)
        not_null = " AND ".join(f"{ident(c)} IS NOT NULL" for c in fk.columns)
        sample = run.con.execute(f"SELECT {cols} FROM {spec.source} WHERE {not_null} EXCEPT SELECT {refs} FROM {parent.source} "
                                 "ORDER BY ALL LIMIT 5").fetchall()
        if sample:
            shown = "; ".join(str(r if len(r) > 1 else r[0]) for r in sample)
            return (f"table {spec.name!r} column {', '.join(fk.columns)} has values with no {fk.ref_table} row in the lake "
                    f"({', '.join(fk.columns)} = {shown}) — the lake breaks its own foreign key: fix those rows (or the key in fk_metadata) and rerun")
    return None


def _json_problem(run: _Run, spec: TableSpec, cs: ChangeSet) -> str | None:
    """JSON values PostgreSQL's jsonb cannot hold exactly: NaN/Infinity, \\u0000, duplicate keys."""
    from .typemap import pg_type

    for c in spec.columns:
        if pg_type(c.type).pg != "jsonb":
            continue
        col = ident(c.name)
        from .typemap import send_expr

        rows = f"(SELECT {send_expr(col, c.type)} AS j FROM {spec.source} WHERE {col} IS NOT NULL)"
        if cs.only is not None:
            rows = f"(SELECT {send_expr(col, c.type)} AS j FROM {spec.source} {cdc.only_rows(spec, cs.only)} WHERE {col} IS NOT NULL)"
        try:
            bad = run.con.execute(
                f"SELECT count(*) FILTER (WHERE t.type = 'DOUBLE' AND lower(t.value) IN ('nan', '-nan', 'infinity', '-infinity', 'inf', '-inf')), "
                f"count(*) FILTER (WHERE contains(coalesce(t.key, ''), chr(0)) OR (t.type = 'VARCHAR' AND contains(json_extract_string(t.value, '$'), chr(0)))) "
                f"FROM {rows} r, json_tree(r.j) t").fetchone()
            dup = run.con.execute(f"SELECT count(*) FROM (SELECT r.rowid_, t.parent, t.key FROM (SELECT row_number() OVER () AS rowid_, j FROM {rows}) r, "
                                  "json_tree(r.j) t WHERE t.key IS NOT NULL GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        except duckdb.Error as exc:
            return f"table {spec.name!r} column {c.name!r} holds a value that is not valid JSON ({exc.__class__.__name__}) — fix it in the lake"
        if bad[0]:
            return (f"table {spec.name!r} column {c.name!r}: {bad[0]} value(s) hold NaN or Infinity, which PostgreSQL jsonb cannot store — "
                    "replace them in the lake (NULL, or a string) and rerun")
        if bad[1]:
            return (f"table {spec.name!r} column {c.name!r}: {bad[1]} value(s) hold the character \\u0000, which PostgreSQL jsonb cannot store — "
                    "remove it in the lake and rerun")
        if dup:
            return (f"table {spec.name!r} column {c.name!r}: {dup} JSON object(s) repeat a key, which jsonb would collapse to the last one — "
                    "make the keys unique in the lake and rerun")
    return None


def _foreign_keys(run: _Run, reports: dict[str, TableReport]) -> None:
    """Create the lake's foreign keys; a failure fails every table that loaded (their FKs are missing)."""
    try:
        for table, note in run.call(run.dest.ensure_foreign_keys) or ():
            if table in reports:
                reports[table] = replace(reports[table], schema_changes=reports[table].schema_changes + (note,))
    except NwError as exc:
        for name in run.plan.order:
            if reports[name].status == OK:
                hint = f"{HINT}{exc.hint}" if exc.hint else ""
                reports[name] = replace(reports[name], status=FAILED,
                                        error=f"foreign keys: {exc.what} (this run's rows are loaded; the constraint is not){hint}")


def _explain(run: _Run, specs: Sequence[TableSpec], exc: NwError) -> str:
    """Name duplicate keys when the lake has them (the usual cause of a merge conflict)."""
    for spec in specs:
        if spec.mode != MERGE:
            continue
        dup = cdc.duplicate_keys(run.con, spec)
        if dup:
            shown = "; ".join(str(d if len(d) > 1 else d[0]) for d in dup)
            return (f"table {spec.name!r} has duplicate primary keys in the lake ({', '.join(spec.primary_key)} = {shown}) — "
                    "remove the duplicates in the lake and rerun")
    return str(exc)


# --- deletes ----------------------------------------------------------------------------------

class _RollBack(Exception):
    pass


def _delete_step(run: _Run, tables: Sequence[str], reports: dict[str, TableReport]) -> None:
    """Delete what the lake lost, for one step; the tables of an FK cycle in one destination transaction
    (a row and the row that references it back can only leave together)."""
    names = [n for n in tables if reports.get(n) and reports[n].status == OK and n in run.changes and run.changes[n].deletes]
    if not names:
        return
    if len(names) > 1 and run.dest.capabilities.joint_transactions:
        before = {n: reports[n] for n in names}
        try:
            with run.dest.transaction():
                for name in names:
                    reports[name] = _delete(run, name, reports[name], in_transaction=True)
                if any(reports[n].status == FAILED for n in names):
                    raise _RollBack
        except (NwError, _RollBack) as exc:
            error = next((reports[n].error for n in names if reports[n].status == FAILED), None) if isinstance(exc, _RollBack) else f"deletes: {exc}"
            for name in names:
                reports[name] = replace(before[name], status=FAILED, error=error, finished_at=now())
                run.holdings.forget(run.plan.specs[name])  # it may list deletes that were rolled back
        return
    for name in names:
        if not run.stopped:
            reports[name] = _delete(run, name, reports[name])


def _delete(run: _Run, name: str, report: TableReport, in_transaction: bool = False) -> TableReport:
    spec = run.plan.specs[name]
    cs = run.changes[name]
    gone = cdc.temp_name("gone", spec)
    same_step = set(next(s.tables for s in run.plan.steps if name in s.tables))
    protect = tuple(fk for other in run.plan.model.values() for fk in other.foreign_keys
                    if fk.ref_table == name and other.name not in same_step and not other.problem)
    revision = run.revision()

    def send() -> DeleteResult:
        keys = run.con.execute(f"SELECT * FROM {gone}").to_arrow_reader(run.settings.batch_size)
        return run.dest.delete(cs.spec, keys, run.run_id, revision, protect)
    try:
        result = send() if in_transaction else run.call(send)
    except NwError as exc:
        run.holdings.forget(spec)
        if isinstance(exc, SyncInProgress):
            run.stopped = exc
        return replace(report, status=FAILED, error=f"deletes: {exc}", finished_at=now())
    run.progress.advance(name, cs.deletes)
    if result.held_back:
        run.holdings.forget(spec)   # which keys stayed is the destination's to say: read it again next time
        referencing = sorted({fk.table for fk in protect})
        note = (f"{result.held_back:,} delete(s) held back: rows of {', '.join(referencing)} in the destination still reference them "
                "(sync those tables too, e.g. without --tables)")
        return replace(report, deleted=report.deleted + result.deleted, finished_at=now(), notes=report.notes + (note,))
    run.holdings.remove(spec, gone, revision, fingerprint.version())
    return replace(report, deleted=report.deleted + result.deleted, finished_at=now())


def raise_for_failures(report: SyncReport) -> SyncReport:
    """Raise :class:`SyncFailed` naming the first failed table, its cause and what to do (said once: the
    table's own hint when its error has one, else a general one)."""
    ledger_what = split_hint(report.ledger_error)[0] if report.ledger_error else ""
    ledger = f" (and controle_cargas could not record this: {ledger_what})" if report.ledger_error else ""
    if report.failed:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        what, hint = split_hint(first.error or "no error recorded")
        raise SyncFailed(f"table {first.table!r} failed{more}: {what}{ledger}",
                         f"{hint}; tables that loaded are kept" if hint else "tables that loaded are kept; fix the cause and rerun `nw sync`")
    if report.held:
        first = report.held[0]
        more = f" (and {len(report.held) - 1} more table(s))" if len(report.held) > 1 else ""
        if report.dry_run:
            raise QualityGateFailed(f"table {first.table!r} would be held back{more}: {first.error}",
                                    "fix the data (or the check in CHECKS_FILE) before the sync")
        raise QualityGateFailed(f"table {first.table!r} was held back{more}: {first.error}{ledger}",
                                "fix the data (or the check in CHECKS_FILE) and rerun; the destination keeps its last good state")
    if report.ledger_error:
        raise SyncFailed(f"every table synced, but the run's final statuses could not be written to controle_cargas: {ledger_what}",
                         "the data is committed; rerun `nw sync` to record a run that agrees with it")
    return report
