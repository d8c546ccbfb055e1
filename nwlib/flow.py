"""A Prefect 3 flow of the pipeline: transform → check → sync (the ``prefect`` extra).

Each step is a Prefect task.  Prefect's own retries are off on every task: nwlib already retries what is
worth retrying (a dropped connection, a busy pooler) inside a step, with a bounded window, and a failed
dbt model or quality check is not something a retry fixes.  The run report goes to Prefect as a table
artifact (key ``nw-run-report``) and, when METRICS_FILE / PUSHGATEWAY_URL are set, to Prometheus.  The
flow fails (so Prefect alerts) when a table fails or a quality check holds one back.

Serve it on a schedule from the project folder (settings from ``.env`` and the environment, as ``nw``); a
schedule needs a Prefect API (``prefect server start``, or PREFECT_API_URL pointing at one)::

    python -m nwlib.flow --cron "17 * * * *"          # = nw_pipeline.serve(name="nw", cron=...)
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import os

from .errors import MissingDependency

# Prefect's own usage statistics: off (the workbench makes no calls outside the machine).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

try:
    from prefect import flow, task
    from prefect.artifacts import create_table_artifact
except ImportError:      # pragma: no cover - the module says how to get it when used
    flow = task = create_table_artifact = None


def _require() -> None:
    if flow is None:
        raise MissingDependency("Prefect is not installed", "pip install 'nwlib[prefect]'")


def _settings():
    from .settings import load_settings

    return load_settings(dotenv=".env")


def _transform(select: str | None, full_refresh: bool):
    from .transform import transform

    return transform(_settings(), select, full_refresh, echo=print)


def _check(tables: list[str] | None):
    from .pipeline import check

    report = check(_settings(), tables)
    for r in report.results:
        if not r.passed:
            print(r.line())
    return report


def _sync(tables: list[str] | None, run_id: str, steps):
    from .engine import sync

    return sync(_settings(), tables, show_progress=False, run_id=run_id, steps=steps)


def _report_rows(report) -> list[dict]:
    return [{"table": t.table, "status": t.status, "inserted": t.inserted, "updated": t.updated, "deleted": t.deleted,
             "seconds": round(t.seconds, 3), "error": t.error or ""} for t in (*report.steps, *report.tables)]


def build():
    """The flow object (built when Prefect is there)."""
    _require()
    transform_task = task(name="transform", retries=0, log_prints=True)(_transform)
    check_task = task(name="check", retries=0, log_prints=True)(_check)
    sync_task = task(name="sync", retries=0, log_prints=True)(_sync)

    @flow(name="nw-pipeline", retries=0, log_prints=True)
    def nw_pipeline(select: str = "", tables: str = "", full_refresh: bool = False, transform: bool = True) -> dict:
        """Transform the lake with dbt, run the quality checks, publish what passed."""
        from . import metrics
        from .engine import raise_for_failures
        from .notebook import table_list
        from .errors import TransformFailed
        from .pipeline import failed_transform, model_reports
        from .records import new_run_id, now

        chosen = table_list(tables)
        run_id = new_run_id()
        started = now()
        try:
            steps = model_reports(transform_task(select or None, full_refresh)) if transform else ()
        except TransformFailed as exc:        # recorded in controle_cargas and the metrics, as `nw run` does
            metrics.after_run(_settings(), failed_transform(_settings(), run_id, started, exc))
            raise
        checked = check_task(chosen)
        report = sync_task(chosen, run_id, steps)
        create_table_artifact(_report_rows(report), key="nw-run-report",
                              description=f"nw run {run_id}: {sum(t.moved for t in report.tables):,} rows; "
                                          f"{len(checked.results)} checks, {len(checked.held)} table(s) held back")
        metrics.after_run(_settings(), report)
        raise_for_failures(report)
        return {"run_id": run_id, "ok": report.ok, "rows": sum(t.moved for t in report.tables)}

    return nw_pipeline


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nwlib.flow", description="Serve the nw pipeline as a Prefect deployment on a schedule.",
                                epilog='Example: python -m nwlib.flow --cron "17 * * * *" --tables clientes,pedidos')
    p.add_argument("--cron", default="17 * * * *", help="when to run (cron syntax; default: every hour at :17)")
    p.add_argument("--name", default="nw", help="the deployment's name (default: nw)")
    p.add_argument("--tables", default="", help="comma-separated tables to publish (default: all)")
    p.add_argument("--select", default="", help="dbt --select (default: every model)")
    args = p.parse_args(argv)
    try:
        from cronsim import CronSim, CronSimError
        from datetime import datetime

        CronSim(args.cron, datetime.now())
    except ImportError:
        pass
    except CronSimError as exc:
        p.error(f"--cron {args.cron!r} is not a cron schedule ({exc})")
    build().serve(name=args.name, cron=args.cron, parameters={"tables": args.tables, "select": args.select})
    return 0


if __name__ == "__main__":
    sys.exit(main())
