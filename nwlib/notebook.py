"""Helpers that keep the notebooks thin: settings from parameters, reports as tables and charts.

Notebooks run with their own folder as the working directory (Jupyter, Voila,
papermill); :func:`load` moves to the project root first so ``.env`` and
relative paths such as ``data/nw_lake.duckdb`` mean what they mean for `nw`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .model import SyncReport
from .settings import Settings, load_settings


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder (upwards) holding nwlib's pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        f = d / "pyproject.toml"
        if f.is_file() and 'name = "nwlib"' in f.read_text(encoding="utf-8", errors="replace"):
            return d
    return None


def load(**overrides) -> Settings:
    """Settings for a notebook: ``.env`` + environment, then the notebook's parameters (empty ones ignored)."""
    root = project_root()
    if root is not None and Path.cwd().resolve() != root:
        os.chdir(root)
    clean = {k: v for k, v in overrides.items() if v is not None and v != ""}
    return load_settings(overrides=clean, dotenv=".env")


def table_list(tables: str | Iterable[str] | None) -> list[str] | None:
    """A papermill ``tables`` parameter (``"a,b"``, a list, or empty for all) as a list or None."""
    if tables is None:
        return None
    items = tables.split(",") if isinstance(tables, str) else list(tables)
    items = [t.strip() for t in items if t and t.strip()]
    return items or None


def report_frame(report: SyncReport):
    """One row per table: what moved, how long it took, and the error if it failed."""
    import pandas as pd

    return pd.DataFrame(
        [{"table": t.table, "mode": t.mode, "status": t.status, "inserted": t.inserted, "updated": t.updated,
          "deleted": t.deleted, "seconds": round(t.seconds, 3), "watermark before": t.watermark_before.value,
          "watermark after": t.watermark_after.value, "error": t.error or ""} for t in report.tables],
        columns=["table", "mode", "status", "inserted", "updated", "deleted", "seconds", "watermark before", "watermark after", "error"])


def rows_moved_chart(report: SyncReport, title: str | None = None):
    """A stacked bar per table: rows inserted / updated / deleted, as an image a saved notebook keeps."""
    from .charts import rows_moved

    return rows_moved(report, title)


def histogram(con, table: str, column: str, bins: int = 30):
    """The histogram of a numeric lake column, counted by DuckDB (see :mod:`nwlib.histogram`), as an image."""
    from . import charts
    from .histogram import histogram as count

    return charts.histogram(count(con, table, column, bins))


def bar_chart(frame, x: str, y: str, title: str):
    """A bar per row of a query result (a pandas DataFrame: ``result.DataFrame()`` of a jupysql result), as an image."""
    from .charts import bars

    return bars(list(frame[x]), list(frame[y]), title, ylabel=y)


def dbt_line(line: str) -> None:
    """dbt's progress lines as a notebook shows them (its 'n of N OK …' lines; the rest is in .nw/dbt/logs)."""
    if " of " in line and any(w in line for w in ("OK", "PASS", "FAIL", "ERROR", "WARN", "SKIP")) or "Completed" in line:
        print(line.split(" ", 1)[-1] if line[:2].isdigit() else line)


def transform_frame(result):
    """One row per dbt model and test: kind, status, seconds, failing rows."""
    import pandas as pd

    return pd.DataFrame([{"node": n.name, "kind": n.kind, "model": n.model or (n.name if n.kind == "model" else ""), "status": n.status,
                          "seconds": round(n.seconds, 3), "failing rows": n.failures or 0} for n in result.nodes],
                        columns=["node", "kind", "model", "status", "seconds", "failing rows"])


def transform_chart(result):
    """Seconds per dbt model, as an image."""
    from .charts import bars

    return bars([m.name for m in result.models], [m.seconds for m in result.models],
                f"dbt models: {len(result.models)} built, {len(result.tests)} tests, {result.seconds:.1f} s in all", ylabel="seconds")


def checks_frame(report: SyncReport):
    """The quality checks a sync ran before publishing: table, check, severity, result, bad rows, sample keys."""
    import pandas as pd

    return pd.DataFrame([{"table": r.check.table, "check": r.check.name, "severity": r.check.severity,
                          "result": "passed" if r.passed else "FAILED", "bad rows": r.bad_rows, "sample": ", ".join(r.sample)}
                         for r in report.checks], columns=["table", "check", "severity", "result", "bad rows", "sample"])


def explore_connection(duckdb_path: str | Path | None = None):
    """A read-only DuckDB connection to the lake for jupysql (``%sql conn``).

    The lake file itself is the connection's database (not attached into an
    in-memory one as :func:`nwlib.lake.connect` does), because jupysql runs
    queries on cursors, which start in the default database.
    """
    import duckdb

    from . import lake
    from .errors import LakeError, first_line

    os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")  # jupysql's telemetry: no network calls
    settings = load(duckdb_path=str(duckdb_path) if duckdb_path else None)
    lake.connect(settings.duckdb_path, read_only=True).close()  # one clear line if it is missing or not DuckDB
    try:
        con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    except duckdb.Error as exc:
        raise LakeError(f"cannot open lake file {settings.duckdb_path}: {first_line(exc)}",
                        "close the process writing it (a running `nw bootstrap`) and retry") from None
    con.execute("SET TimeZone = 'UTC'")
    return con
