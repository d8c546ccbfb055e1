"""The sync engine: settings → lake → plan → destination → ledger.

``plan`` reads the lake's model and orders it; ``sync`` sends each step's
change set (one atomic destination call per step, retried when the failure is
transient), creates foreign keys, then reconciles deletes children-first.
A failed table does not stop independent tables; tables that depend on it
are skipped.  The lake is only read.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from . import cdc, destinations, lake
from .cdc import ChangeSet
from .destinations.base import Destination
from .errors import DestinationError, NwError, SyncFailed
from .keyset import KeySet, keyset_path
from .lake import open_lake, stream_connection
from .model import FAILED, MERGE, OK, PLANNED, SKIPPED, Plan, SyncReport, TableReport, TableSpec, Watermark
from .plan import read_plan
from .records import new_run_id, now
from .settings import Settings
from .sql import ident
from .typemap import send_expr

ProgressFactory = Callable[[int], "ProgressSink"]


class ProgressSink:
    """What the engine tells a progress display (tqdm by default)."""

    def __init__(self, total: int, enabled: bool = True):
        self._bar = None
        if enabled and total:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, unit="rows", unit_scale=True, desc="sync", leave=False)

    def table(self, name: str) -> None:
        if self._bar is not None:
            self._bar.set_description(name)

    def advance(self, table: str, rows: int) -> None:
        if self._bar is not None:
            self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _retrying(settings: Settings) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(settings.max_retries + 1),
        wait=wait_exponential_jitter(multiplier=settings.retry_base_seconds, max=30, jitter=settings.retry_base_seconds),
        retry=retry_if_exception(lambda e: isinstance(e, DestinationError) and e.transient),
        reraise=True,
    )


@dataclass
class _Run:
    settings: Settings
    con: duckdb.DuckDBPyConnection
    dest: Destination
    plan: Plan
    run_id: str
    progress: ProgressSink
    keys: KeySet | None = None
    stream: duckdb.DuckDBPyConnection | None = None

    def reader(self, cs: ChangeSet):
        return cs.reader(self.stream or self.con, self.settings.batch_size)

    def call(self, fn):
        return _retrying(self.settings)(fn)


def sync(settings: Settings, tables: Iterable[str] | None = None, full_refresh: bool = False,
         dry_run: bool = False, show_progress: bool = True, destination: Destination | None = None,
         progress: ProgressFactory | None = None) -> SyncReport:
    """Run one sync; returns the report (``report.ok`` says if every table made it).

    ``progress(total_rows)`` makes the progress display (a dashboard's bar); default tqdm."""
    run_id = new_run_id()
    with open_lake(settings) as con:
        plan = read_plan(settings, con, tables, full_refresh)
        dest = destination or destinations.create(settings)
        try:
            if dry_run:
                return _dry_run(settings, con, dest, plan, run_id)
            with contextlib.ExitStack() as held:
                # Taking the lock connects first: a refused connection is retried like any other.
                _retrying(settings)(lambda: held.enter_context(dest.lock()))
                return _sync(settings, con, dest, plan, run_id, show_progress, progress)
        finally:
            if destination is None:
                dest.close()


def _dry_run(settings: Settings, con: duckdb.DuckDBPyConnection, dest: Destination, plan: Plan, run_id: str) -> SyncReport:
    states = dest.states(plan.order)
    reports = []
    for name in plan.order:
        spec = plan.specs[name]
        full = name in plan.full_refresh or not states[name].loaded
        cs = cdc.change_set(con, spec, Watermark() if full else states[name].watermark, settings.cdc_lookback_seconds, full,
                            dest.capabilities.append_replaces_tail)
        reports.append(TableReport(name, spec.mode + (" full" if cs.full else " incremental"), PLANNED, inserted=cs.rows,
                                   watermark_before=cs.watermark_before, watermark_after=cs.watermark_after))
    return SyncReport(run_id, dest.capabilities.name, tuple(reports), dry_run=True)


def _sync(settings: Settings, con: duckdb.DuckDBPyConnection, dest: Destination, plan: Plan, run_id: str, show_progress: bool,
          make_progress: ProgressFactory | None = None) -> SyncReport:
    specs = [plan.specs[t] for t in plan.order]
    schema_changes = _retrying(settings)(lambda: dest.prepare(specs, plan.full_refresh))
    full = set(plan.full_refresh) | set(dest.needs_full())
    states = _retrying(settings)(lambda: dest.states(plan.order))
    changes: dict[str, ChangeSet] = {}
    for name in plan.order:
        refresh = name in full or not states[name].loaded
        wm = Watermark() if refresh else states[name].watermark
        changes[name] = cdc.change_set(con, plan.specs[name], wm, settings.cdc_lookback_seconds, refresh,
                                       dest.capabilities.append_replaces_tail)
    total = sum(c.rows for c in changes.values())
    progress = make_progress(total) if make_progress else ProgressSink(total, show_progress)
    keys = KeySet(con, keyset_path(settings.destination_path, dest.describe()), settings.duckdb_memory_limit)
    run = _Run(settings, con, dest, plan, run_id, progress, keys, stream_connection(settings))
    reports: dict[str, TableReport] = {}
    try:
        for step in plan.steps:
            _load_step(run, step.tables, changes, reports, schema_changes)
        if dest.capabilities.foreign_keys:
            _foreign_keys(run, reports)
        for step in reversed(plan.steps):
            names = [n for n in step.tables if reports[n].status == OK and plan.specs[n].mode == MERGE]
            if len(names) > 1 and dest.capabilities.joint_transactions:
                _reconcile_cycle(run, names, reports)
            else:
                for name in names:
                    reports[name] = _reconcile(run, plan.specs[name], reports[name])
    finally:
        progress.close()
        keys.close()
        run.stream.close()
    return SyncReport(run_id, dest.capabilities.name, tuple(reports[t] for t in plan.order))


def _foreign_keys(run: _Run, reports: dict[str, TableReport]) -> None:
    """Create the lake's foreign keys; a failure fails every table that loaded (their FKs are missing)."""
    try:
        for table, note in run.call(run.dest.ensure_foreign_keys) or ():
            reports[table] = replace(reports[table], schema_changes=reports[table].schema_changes + (note,))
            run.call(lambda: run.dest.note_schema_changes(run.run_id, table, (note,)))  # noqa: B023 (called at once)
    except NwError as exc:
        for name in run.plan.order:
            if reports[name].status == OK:
                reports[name] = replace(reports[name], status=FAILED, error=f"foreign keys: {exc}")


def _load_step(run: _Run, tables: Sequence[str], changes, reports, schema_changes) -> None:
    plan, dest = run.plan, run.dest
    started = now()
    blocked = [fk.ref_table for t in tables for fk in plan.specs[t].foreign_keys
               if fk.ref_table in reports and reports[fk.ref_table].status != OK]
    if blocked:
        for t in tables:
            reports[t] = TableReport(t, plan.specs[t].mode, SKIPPED, started_at=started, finished_at=now(),
                                     error=f"skipped: parent table {blocked[0]} did not load")
            dest.record_skipped(run.run_id, t, plan.specs[t].mode, reports[t].error)
        return
    step_changes = [changes[t] for t in tables]
    for t in tables:
        run.progress.table(t)
    try:
        results = run.call(lambda: dest.load(step_changes, run.reader, run.run_id, run.progress.advance))
    except NwError as exc:
        error = _explain(run, [cs.spec for cs in step_changes], exc)
        for cs in step_changes:
            dest.record_failure(run.run_id, cs.spec.name, cs.spec.mode, error)
            reports[cs.spec.name] = TableReport(cs.spec.name, cs.spec.mode, FAILED, watermark_before=cs.watermark_before,
                                                watermark_after=cs.watermark_before, started_at=started, finished_at=now(), error=error)
        return
    for cs in step_changes:
        if cs.spec.mode == MERGE and run.keys is not None:
            if cs.full:
                run.keys.rebuild(cs.spec)
            else:
                run.keys.add(cs.spec, cs.where, cs.params)
        r = results[cs.spec.name]
        notes = tuple(schema_changes.get(cs.spec.name, ())) + r.schema_changes
        if notes:
            run.call(lambda: dest.note_schema_changes(run.run_id, cs.spec.name, notes))  # noqa: B023 (called at once)
        reports[cs.spec.name] = TableReport(cs.spec.name, cs.spec.mode + (" full" if cs.full else " incremental"), OK,
                                            r.inserted, r.updated, 0, cs.watermark_before, cs.watermark_after,
                                            started, now(), None, notes)


def _explain(run: _Run, specs: Sequence[TableSpec], exc: NwError) -> str:
    """Name duplicate keys when the lake has them (the usual cause of a merge conflict)."""
    for spec in specs:
        if spec.mode != MERGE:
            continue
        keys = ", ".join(ident(k) for k in spec.primary_key)
        dup = run.con.execute(
            f"SELECT {keys} FROM {ident(spec.name)} GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 5").fetchall()
        if dup:
            shown = "; ".join(str(d if len(d) > 1 else d[0]) for d in dup)
            return (f"table {spec.name!r} has duplicate primary keys in the lake ({', '.join(spec.primary_key)} = {shown}) — "
                    "remove the duplicates in the lake and rerun")
    return str(exc)


def _reconcile(run: _Run, spec: TableSpec, report: TableReport) -> TableReport:
    """Make the destination's key set equal the lake's (see cdc's rules on deletes)."""
    dest, con, keys = run.dest, run.con, run.keys
    try:
        lake_rows = lake.row_count(con, spec.name)
        # The destination's row count is kept exactly, in the same transactions as its rows.
        actual = run.call(lambda: dest.states([spec.name]))[spec.name].row_count
        if actual == lake_rows:
            return report
        lake.raise_memory(con, run.settings)  # room for the key joins (kept to the end of the run)
        if actual < lake_rows:
            # Rows arrived with timestamps older than the cursor: re-merge the whole table.
            cs = cdc.change_set(con, spec, Watermark(), run.settings.cdc_lookback_seconds, full=True)
            cs = replace(cs, watermark_after=report.watermark_after)
            res = run.call(lambda: dest.load([cs], run.reader, run.run_id, run.progress.advance))[spec.name]
            report = replace(report, inserted=report.inserted + res.inserted, updated=report.updated + res.updated)
            actual = run.call(lambda: dest.row_count(spec.name))
        deleted = 0
        if actual > lake_rows and keys is not None and keys.has(spec):
            # Fast path: keys we remember sending, minus the lake's keys.
            n = _delete(run, spec, keys.gone_sql(spec))
            deleted, actual = deleted + n, actual - n
        if actual != lake_rows:
            actual = run.call(lambda: dest.row_count(spec.name))  # trust, but count before the slow path
        if actual > lake_rows:
            # Slow path: ask the destination for every key.
            def gone_from_destination():
                con.register("nw_dest_keys", dest.keys(spec))
                try:
                    con.execute("CREATE OR REPLACE TEMP TABLE nw_dest_keys_t AS SELECT * FROM nw_dest_keys")
                finally:
                    con.unregister("nw_dest_keys")
            run.call(gone_from_destination)
            n = _delete(run, spec, cdc.missing_keys_sql(spec, "nw_dest_keys_t"))
            deleted, actual = deleted + n, actual - n
            if keys is not None:
                keys.rebuild(spec)
        run.call(lambda: dest.set_row_count(spec.name, lake_rows))
        return replace(report, deleted=report.deleted + deleted, finished_at=now())
    except NwError as exc:
        error = _explain(run, [spec], exc)  # the full re-merge meets duplicate keys too
        error = f"deletes: {exc}" if error == str(exc) else error
        dest.record_failure(run.run_id, spec.name, "merge deletes", error)
        return replace(report, status=FAILED, error=error, finished_at=now())


class _RollBack(Exception):
    pass


def _reconcile_cycle(run: _Run, names: Sequence[str], reports: dict[str, TableReport]) -> None:
    """Deletes of an FK cycle in one destination transaction: a row and the row that references it
    back (a department and its manager) can only leave together."""
    before = {n: reports[n] for n in names}
    try:
        with run.dest.transaction():
            for name in names:
                reports[name] = _reconcile(run, run.plan.specs[name], reports[name])
            if any(reports[n].status == FAILED for n in names):
                raise _RollBack
    except (NwError, _RollBack) as exc:
        error = next((reports[n].error for n in names if reports[n].status == FAILED), None) if isinstance(exc, _RollBack) else f"deletes: {exc}"
        for name in names:
            run.dest.record_failure(run.run_id, name, "merge deletes", error)
            reports[name] = replace(before[name], status=FAILED, error=error, finished_at=now())
        if run.keys is not None:
            for name in names:
                run.keys.forget(run.plan.specs[name])  # it may list deletes that were rolled back


def _delete(run: _Run, spec: TableSpec, gone_sql: str) -> int:
    """Delete the keys ``gone_sql`` selects (lake-typed) from the destination; forget them."""
    con = run.con
    con.execute(f"CREATE OR REPLACE TEMP TABLE nw_gone AS {gone_sql}")
    if not con.execute("SELECT count(*) FROM nw_gone").fetchone()[0]:
        return 0
    send = ", ".join(f"{send_expr(ident(k), spec.column(k).type)} AS {ident(k)}" for k in spec.primary_key)
    n = run.call(lambda: run.dest.delete(spec, con.execute(f"SELECT {send} FROM nw_gone").to_arrow_reader(run.settings.batch_size), run.run_id))
    if run.keys is not None:
        run.keys.remove(spec, "temp.main.nw_gone")
    return n


def raise_for_failures(report: SyncReport) -> SyncReport:
    if not report.ok:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise SyncFailed(f"table {first.table!r} failed{more}: {first.error}", "fix the cause and rerun `nw sync`; loaded tables are kept")
    return report
