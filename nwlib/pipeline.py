"""``nw run``: transform → check → sync, one run id across the three steps.

1. **transform** — ``dbt build`` of the project (:mod:`nwlib.transform`); if a model or a test fails the run
   stops there: nothing is published (the destination keeps its last good state) and the failure is
   recorded in ``controle_cargas``;
2. **check** — the quality gate (:mod:`nwlib.quality`) runs inside the sync, before anything is sent;
3. **sync** — publishes what passed; held tables keep their last good state.

Each dbt model gets a ``controle_cargas`` row (``modo`` ``transform``, named ``dbt:<model>``, with its tests'
outcome), under the same ``run_id`` as the tables the sync publishes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from . import engine
from .errors import TransformFailed
from .model import FAILED, OK, SKIPPED, TRANSFORM, SyncReport, TableReport
from .quality import CheckResult
from .records import new_run_id, now
from .settings import Settings
from .transform import TransformResult, error_cause, transform

LEDGER_PREFIX = "dbt:"


@dataclass(frozen=True)
class CheckReport:
    """``nw check``: the checks' results, the tables a sync would hold back and why, checks not run."""

    results: tuple[CheckResult, ...]
    held: dict[str, str]
    absent: tuple[str, ...]          # tables the checks file names that the lake does not have
    published_known: bool            # the destination answered (row_count_change compared with its counts)

    @property
    def ok(self) -> bool:
        return not self.held

    def to_json(self) -> dict:
        return {"ok": self.ok, "checks": [r.to_json() for r in self.results], "held": self.held, "not_run": list(self.absent),
                "published_counts_known": self.published_known}

    def raise_for_held(self) -> None:
        """``nw check``'s verdict: QualityGateFailed when a sync would hold a table back."""
        from .errors import QualityGateFailed

        if self.held:
            first = next(iter(self.held))
            more = f" (and {len(self.held) - 1} more table(s))" if len(self.held) > 1 else ""
            raise QualityGateFailed(f"table {first!r} would be held back{more}: {self.held[first]}",
                                    "fix the data (or the check in CHECKS_FILE); a sync publishes the other tables meanwhile")


def check(settings: Settings, tables: Iterable[str] | None = None) -> CheckReport:
    """Run the quality checks on the lake, publishing nothing.  The last published row counts (for
    ``row_count_change``) come from the destination when it answers; without it those checks pass."""
    from . import destinations, graph, quality
    from .errors import NwError
    from .transform import failed_models
    from .lake import open_lake
    from .plan import read_plan

    checks = quality.load_checks(settings.checks_path, explicit=settings.checks_file is not None)
    with open_lake(settings) as con:
        plan = read_plan(settings, con, tables)
        published: dict[str, int | None] = {}
        known = False
        if any(c.kind == "row_count_change" for c in checks):
            try:
                dest = destinations.create(settings)
                try:
                    wanted = sorted(graph.with_parents(plan.model or plan.specs, plan.order))
                    published = {t: (st.row_count if st.loaded else None) for t, st in dest.states(wanted).items()}
                    known = True
                finally:
                    dest.close()
            except NwError:
                known = False
        verdict = quality.gate(con, plan.model or plan.specs, plan.order, checks, published, failed_models(settings),
                               source=str(settings.checks_path))
    return CheckReport(verdict.results, verdict.held, verdict.absent, known)


@dataclass(frozen=True)
class PipelineReport:
    run_id: str
    transform: TransformResult
    sync: SyncReport

    @property
    def ok(self) -> bool:
        return self.transform.ok and self.sync.ok


def model_reports(result: TransformResult) -> tuple[TableReport, ...]:
    """One ledger row per dbt model: its status, its time, its tests."""
    finished = result.finished_at
    out = []
    for m in result.models:
        tests = [t for t in result.tests if t.model == m.name]
        bad = [t for t in tests if t.status in ("fail", "error")]
        warned = [t for t in tests if t.status == "warn"]
        status = OK if m.status == "success" and not bad else (SKIPPED if m.status == "skipped" else FAILED)
        error = None
        if m.status not in ("success", "skipped"):
            error = error_cause(m.message) or m.status
        elif bad:
            error = "; ".join(f"test {t.name} {t.status}" + (f" ({t.failures:,} rows)" if t.failures else "") for t in bad)
        notes = (f"dbt: {len(tests) - len(bad) - len(warned)} of {len(tests)} tests passed" + (f", {len(warned)} warned" if warned else ""),)
        out.append(TableReport(LEDGER_PREFIX + m.name, TRANSFORM, status, started_at=finished - timedelta(seconds=m.seconds),
                               finished_at=finished, error=error, notes=notes if tests else ()))
    return tuple(out)


def failed_transform(settings: Settings, run_id: str, started, exc: TransformFailed) -> SyncReport:
    """A dbt build that failed, as a run that published nothing: its steps recorded in ``controle_cargas``
    (the report says so when that fails too) and the report metrics are made from."""
    from .errors import NwError

    steps = model_reports(exc.result) if exc.result is not None else (
        TableReport(LEDGER_PREFIX + "build", TRANSFORM, FAILED, started_at=started, finished_at=now(), error=str(exc)),)
    ledger_error = None
    try:
        engine.record_steps(settings, run_id, steps)
    except NwError as err:
        ledger_error = str(err)
    return SyncReport(run_id, settings.destination_type, (), steps=steps, ledger_error=ledger_error)


def run(settings: Settings, select: str | Sequence[str] | None = None, full_refresh: bool = False,
        tables: Iterable[str] | None = None, echo: Callable[[str], None] | None = None,
        show_progress: bool = True) -> PipelineReport:
    """Transform, check, publish.  Raises :class:`~nwlib.errors.TransformFailed` (recorded in the ledger, nothing
    published) when dbt fails; otherwise returns the report (``raise_for_failures`` on ``.sync`` as for a sync)."""
    run_id = new_run_id()
    started = now()
    try:
        result = transform(settings, select, full_refresh, echo)
    except TransformFailed as exc:
        exc.report = failed_transform(settings, run_id, started, exc)
        raise
    report = engine.sync(settings, tables, show_progress=show_progress, run_id=run_id, steps=model_reports(result))
    return PipelineReport(run_id, result, report)
