"""A run's Prometheus metrics: written to a textfile-collector file and pushed to a Pushgateway.

After each ``nw sync`` / ``nw run`` (and the Prefect flow), when ``METRICS_FILE`` is set the metrics are
written there atomically (for node_exporter's textfile collector), and when ``PUSHGATEWAY_URL`` is set they
are pushed (job ``nw``, grouped by ``instance``, the host name).  Per table: rows inserted / updated /
deleted, seconds, the lag of the incremental column behind the run, failed (1 when it failed or was held
back), held, failed checks by severity, and the last success time (this run's, or the last ``ok`` row of
``controle_cargas``).  Per run: seconds, tables failed, ok, when it ran.  A metrics file or gateway that
cannot be reached is one warning; the run's outcome does not change.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from .errors import MissingDependency
from .model import FAILED, HELD, OK, SyncReport
from .settings import Settings

log = logging.getLogger("nwlib.metrics")
JOB = "nw"


def _prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependency("prometheus-client is not installed (METRICS_FILE / PUSHGATEWAY_URL need it)",
                                "pip install 'nwlib[metrics]'") from None
    return prometheus_client


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def _lag(watermark: str | None, now: float) -> float | None:
    """Seconds from the incremental column's newest loaded value to now, when that value is a time."""
    if not watermark:
        return None
    try:
        return max(0.0, now - _epoch(datetime.fromisoformat(watermark.replace("Z", "+00:00"))))
    except ValueError:
        return None     # a number cursor: no lag in seconds


def registry(report: SyncReport, last_success: Mapping[str, datetime] | None = None, now: float | None = None):
    """The metrics of one run, in a fresh CollectorRegistry (``last_success``: from ``controle_cargas``)."""
    pc = _prometheus()
    now = time.time() if now is None else now
    reg = pc.CollectorRegistry()
    table = ("table",)
    rows = pc.Gauge("nw_table_rows", "Rows the last run moved, by operation", ("table", "operation"), registry=reg)
    seconds = pc.Gauge("nw_table_seconds", "Seconds the last run spent on the table", table, registry=reg)
    failed = pc.Gauge("nw_table_failed", "1 when the table failed or was held back in the last run", table, registry=reg)
    held = pc.Gauge("nw_table_held", "1 when a quality check held the table back in the last run", table, registry=reg)
    lag = pc.Gauge("nw_table_lag_seconds", "Seconds from the newest incremental value loaded to the run", table, registry=reg)
    success = pc.Gauge("nw_table_last_success_timestamp_seconds", "When the table last synced ok", table, registry=reg)
    checks = pc.Gauge("nw_checks_failed", "Quality checks that failed in the last run", ("table", "severity"), registry=reg)
    for t in report.tables:
        for op in ("inserted", "updated", "deleted"):
            rows.labels(t.table, op).set(getattr(t, op))
        seconds.labels(t.table).set(t.seconds)
        failed.labels(t.table).set(1 if t.status in (FAILED, HELD) else 0)
        held.labels(t.table).set(1 if t.status == HELD else 0)
        behind = _lag(t.watermark_after.value, now)
        if behind is not None:
            lag.labels(t.table).set(behind)
        when = now if t.status == OK else _epoch((last_success or {}).get(t.table))
        if when is not None:
            success.labels(t.table).set(when)
    for r in report.checks:
        checks.labels(r.check.table, r.check.severity).inc(0 if r.passed else 1)
    started = [s for s in (_epoch(t.started_at) for t in (*report.steps, *report.tables)) if s is not None]
    run = pc.Gauge("nw_run_seconds", "Seconds of the last run", registry=reg)
    run.set(max(0.0, now - min(started)) if started else 0.0)
    pc.Gauge("nw_run_failed_tables", "Tables that failed or were held back in the last run", registry=reg).set(
        sum(1 for t in report.tables if t.status in (FAILED, HELD)))
    pc.Gauge("nw_run_failed_models", "dbt models of the last `nw run` that failed (or whose tests did)", registry=reg).set(
        sum(1 for t in report.steps if t.status == FAILED))
    pc.Gauge("nw_run_ok", "1 when every table of the last run made it", registry=reg).set(1 if report.ok else 0)
    pc.Gauge("nw_run_timestamp_seconds", "When the last run ended", registry=reg).set(now)
    return reg


def last_successes(history: Iterable[dict]) -> dict[str, datetime]:
    """Each table's last ``ok`` from ``controle_cargas`` rows (as destinations' ``history()`` returns them)."""
    out: dict[str, datetime] = {}
    for row in history:
        name, status, when = row.get("tabela_nome"), row.get("status"), row.get("finalizado_em") or row.get("ultima_carga")
        if status == OK and name and isinstance(when, datetime) and (name not in out or when > out[name]):
            out[name] = when
    return out


def _gateway(url: str):
    """A gateway URL without its credentials, and the handler that sends them (basic auth), if it had any."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    from prometheus_client.exposition import basic_auth_handler, default_handler

    parts = urlsplit(url)
    if not parts.username:
        return url, default_handler
    bare = urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    user, password = unquote(parts.username), unquote(parts.password or "")
    def handler(url, method, timeout, headers, data):
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return bare, handler


def publish(settings: Settings, report: SyncReport, history: Iterable[dict] = ()) -> list[str]:
    """Write METRICS_FILE and push to PUSHGATEWAY_URL (each when set); returns a line per thing done."""
    if not settings.metrics_file and not settings.pushgateway_url:
        return []
    pc = _prometheus()
    reg = registry(report, last_successes(history))
    done = []
    if settings.metrics_file:
        try:
            settings.metrics_file.parent.mkdir(parents=True, exist_ok=True)
            pc.write_to_textfile(str(settings.metrics_file), reg)
            done.append(f"metrics written to {settings.metrics_file}")
        except OSError as exc:
            log.warning("metrics not written to METRICS_FILE=%s: %s", settings.metrics_file, exc.strerror or exc)
    if settings.pushgateway_url:
        try:
            url, handler = _gateway(settings.pushgateway_url)
            pc.push_to_gateway(url, job=JOB, registry=reg, grouping_key={"instance": socket.gethostname()}, timeout=5, handler=handler)
            done.append(f"metrics pushed to {settings.redact(settings.pushgateway_url)}")
        except Exception as exc:  # noqa: BLE001 - a monitoring hiccup must not fail the run it reports on
            log.warning("metrics not pushed to PUSHGATEWAY_URL=%s: %s", settings.redact(settings.pushgateway_url),
                        settings.redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__)
    return done


def after_run(settings: Settings, report: SyncReport) -> list[str]:
    """:func:`publish` for a finished run; the last success of a table that did not make it is read from
    the destination's ``controle_cargas``."""
    if not settings.metrics_file and not settings.pushgateway_url:
        return []
    history: list[dict] = []
    if any(t.status != OK for t in report.tables):
        from . import destinations
        from .errors import NwError

        try:
            dest = destinations.create(settings)
            try:
                history = dest.history(2000)
            finally:
                dest.close()
        except NwError as exc:
            log.warning("metrics: the last successes could not be read from controle_cargas: %s", exc)
    return publish(settings, report, history)
