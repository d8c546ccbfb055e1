"""``nw transform``: build the repository's dbt project inside the lake (dbt-core + dbt-duckdb, offline).

dbt runs as a child process (its logging and global state stay out of nw's), on the lake file itself
(``DUCKDB_PATH``), with the project in ``DBT_PROJECT_DIR`` (default ``transform/``) and its ``target/``
and ``logs/`` under ``DESTINATION_PATH/.nw/dbt`` so the repository stays clean.  dbt's usage statistics
and version check are off: nothing leaves the machine.  Its lines stream to the caller as progress; the
outcome is read from dbt's ``run_results.json`` into small values: one :class:`NodeResult` per model and
test.  A model that fails or a test that fails (severity error) makes :class:`~nwlib.errors.TransformFailed`,
naming them; a lake another process holds open is one :class:`~nwlib.errors.LakeError` line.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import ConfigError, LakeError, MissingDependency, TransformFailed
from .settings import Settings

PASSED = ("success", "pass")
FAILED_STATUSES = ("error", "fail", "runtime error")
INSTALL = "pip install 'nwlib[transform]'  (dbt-core>=1.11,<1.12 and dbt-duckdb)"


@dataclass(frozen=True)
class NodeResult:
    """One model (or test, seed, snapshot) of a dbt run."""

    name: str
    kind: str             # model, test, seed, snapshot
    status: str           # dbt's: success, error, skipped (models); pass, fail, warn, error, skipped (tests)
    seconds: float
    message: str = ""
    failures: int | None = None      # a test's failing rows
    model: str | None = None         # a test: the model it tests

    @property
    def ok(self) -> bool:
        return self.status in PASSED or self.status == "warn"


@dataclass(frozen=True)
class TransformResult:
    nodes: tuple[NodeResult, ...]
    seconds: float
    finished_at: datetime
    selected: str = ""

    @property
    def models(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if n.kind == "model")

    @property
    def tests(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if n.kind == "test")

    @property
    def failed(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if n.status in FAILED_STATUSES)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict:
        return {"ok": self.ok, "seconds": round(self.seconds, 3), "finished_at": self.finished_at.isoformat(), "select": self.selected,
                "nodes": [{"name": n.name, "kind": n.kind, "model": n.model, "status": n.status, "seconds": round(n.seconds, 3),
                           "failures": n.failures, "message": n.message} for n in self.nodes]}


def dbt_dir(settings: Settings) -> Path:
    """Where dbt's target/ and logs/ go: absolute, since dbt reads a relative path from the project's folder."""
    return (settings.destination_path / ".nw" / "dbt").resolve()


def project_dir(settings: Settings) -> Path:
    path = Path(settings.dbt_project_dir)
    if not (path / "dbt_project.yml").is_file():
        raise ConfigError(f"DBT_PROJECT_DIR={path}: no dbt_project.yml there", "point DBT_PROJECT_DIR at a dbt project (the sample is transform/)")
    return path.resolve()


def transform(settings: Settings, select: str | Sequence[str] | None = None, full_refresh: bool = False,
              echo: Callable[[str], None] | None = None) -> TransformResult:
    """``dbt build`` (models, then their tests) of the project; ``select`` as dbt's ``--select``."""
    try:
        import dbt.version  # noqa: F401  (only to say clearly that dbt is missing)
        import dbt.adapters.duckdb  # noqa: F401
    except ImportError:
        raise MissingDependency("dbt-core and dbt-duckdb are not installed", INSTALL) from None
    project = project_dir(settings)
    lake = Path(settings.duckdb_path).resolve()
    if not lake.is_file():
        raise LakeError(f"lake file not found: {lake}", "run `nw bootstrap` to create the sample lake, or set DUCKDB_PATH")
    work = dbt_dir(settings)
    work.mkdir(parents=True, exist_ok=True)
    picked = " ".join(select) if isinstance(select, (list, tuple)) else (select or "")
    args = ["build", "--project-dir", str(project), "--profiles-dir", str(project), "--target-path", str(work / "target"),
            "--log-path", str(work / "logs"), "--no-use-colors", "--log-format", "text"]
    if picked.strip():
        args += ["--select", *picked.replace(",", " ").split()]
    if full_refresh:
        args.append("--full-refresh")
    env = {**os.environ, "NW_DBT_DUCKDB_PATH": str(lake), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false",
           "DO_NOT_TRACK": "1"}
    results = work / "target" / "run_results.json"
    results.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from dbt.cli.main import cli; sys.exit(cli())", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if echo is not None and line.strip():
            echo(line)
    code = proc.wait()
    seconds = time.perf_counter() - started
    if not results.is_file():
        raise _no_results(code, tail, lake, work / "logs")
    result = read_results(results, seconds, picked)
    if picked.strip() and not result.nodes:
        raise ConfigError(f"dbt --select {picked!r} matched no model or test of {project}",
                          "check the names (the models are the .sql files under models/)")
    if not result.ok:
        failed = TransformFailed(_failure_line(result), "fix the model or the data, then rerun `nw transform` (nothing was published)")
        failed.result = result
        raise failed
    return result


def error_cause(message: str) -> str:
    """The line of a dbt error that says what is wrong: not dbt's "Runtime Error in model x (path)" heading."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    telling = [ln for ln in lines if not re.match(r"^(Runtime|Compilation|Database|Parsing) Error( in \w+ .*)?$", ln)]
    return (telling or lines or [""])[0]


def _no_results(code: int, tail: list[str], lake: Path, logs: Path) -> Exception:
    text = "\n".join(tail)
    if "lock" in text.lower() and "conflicting lock" in text.lower() or "Could not set lock" in text:
        return LakeError(f"lake file {lake} is locked by another process", "close the other writer (a notebook or `nw bootstrap`) and retry")
    lines = [re.sub(r"^\S*\d\d:\d\d:\d\d\s+", "", ln).strip() for ln in tail]
    heading = next((i for i, ln in enumerate(lines) if re.search(r"\b(Compilation|Parsing|Runtime) Error\b", ln)), None)
    if heading is not None:
        why = " ".join(ln for ln in lines[heading:heading + 3] if ln)
    else:
        errors = [ln for ln in lines if "error" in ln.lower()]
        why = errors[-1] if errors else (lines[-1] if lines else f"exit code {code}")
    return TransformFailed(f"dbt could not build the project: {why}", f"fix it and run `nw transform` again (dbt's log: {logs})")


def _failure_line(result: TransformResult) -> str:
    parts = []
    for n in result.failed[:3]:
        what = f"{n.failures:,} failing rows" if n.kind == "test" and n.failures else (error_cause(n.message) or n.status)
        parts.append(f"{n.kind} {n.name} {n.status}: {what}")
    more = f" (and {len(result.failed) - 3} more)" if len(result.failed) > 3 else ""
    return "dbt build: " + "; ".join(parts) + more


def read_results(path: Path, seconds: float | None = None, selected: str = "") -> TransformResult:
    """dbt's ``run_results.json`` as a :class:`TransformResult`."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    manifest = Path(path).with_name("manifest.json")
    graph = json.loads(manifest.read_text(encoding="utf-8")).get("nodes", {}) if manifest.is_file() else {}
    nodes = []
    for r in doc.get("results", []):
        uid = r.get("unique_id", "")
        kind, _, rest = uid.partition(".")
        name = rest.split(".", 1)[-1] if kind != "test" else rest.split(".", 1)[-1].rsplit(".", 1)[0]
        model = None
        if kind == "test":
            node = graph.get(uid, {})
            attached = node.get("attached_node") or next((n for n in node.get("depends_on", {}).get("nodes", []) if n.startswith("model.")), None)
            model = attached.split(".")[-1] if attached else None
        nodes.append(NodeResult(name, kind, str(r.get("status", "")), float(r.get("execution_time") or 0.0),
                                str(r.get("message") or ""), r.get("failures"), model))
    finished = doc.get("metadata", {}).get("generated_at")
    when = datetime.fromisoformat(finished.replace("Z", "+00:00")) if finished else datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc)
    return TransformResult(tuple(nodes), float(seconds if seconds is not None else doc.get("elapsed_time") or 0.0), when, selected)


def last_run(settings: Settings) -> TransformResult | None:
    """The last ``nw transform`` (its ``run_results.json``), or None when there was none."""
    path = dbt_dir(settings) / "target" / "run_results.json"
    return read_results(path) if path.is_file() else None


def failed_models(settings: Settings) -> dict[str, str]:
    """Models whose last dbt build failed, or whose tests failed, each with why (a sync holds them back until
    dbt passes again: the lake may hold a model that its own tests reject)."""
    result = last_run(settings)
    if result is None:
        return {}
    out: dict[str, str] = {}
    for m in result.models:
        if m.status in FAILED_STATUSES:
            out[m.name] = f"its last dbt build failed ({error_cause(m.message) or m.status}) — fix it and run `nw transform`"
    for t in result.tests:
        if t.model and t.status in FAILED_STATUSES and t.model not in out:
            out[t.model] = (f"its dbt test {t.name} failed" + (f" ({t.failures:,} rows)" if t.failures else "")
                            + " in the last `nw transform` — fix it and run `nw transform`")
    return out
