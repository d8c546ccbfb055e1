"""Run the real ``nw`` command line in a child process (the way a scheduler does)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nwlib.settings import Settings

ENV_KEYS = ("DATABASE_URL", "DB_SCHEMA", "DUCKDB_PATH", "DESTINATION_PATH", "MAX_RETRIES", "RETRY_BASE_SECONDS",
            "CDC_LOOKBACK_SECONDS")


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """A child environment carrying ``settings`` (and nothing from a developer's .env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "DUCKDB_", "DESTINATION_"))}
    env.update({
        "DATABASE_URL": settings.database_url or "",
        "DB_SCHEMA": settings.db_schema,
        "DUCKDB_PATH": str(settings.duckdb_path),
        "DESTINATION_PATH": str(settings.destination_path),
        "MAX_RETRIES": str(settings.max_retries),
        "RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
        "CDC_LOOKBACK_SECONDS": str(settings.cdc_lookback_seconds),
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def nw_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "nwlib", *args, "--env-file", "/nonexistent/.env"]


def start_nw(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(nw_args(*args), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_nw(env: dict[str, str], *args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(nw_args(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failing run's message: exactly one ``nw: error:`` line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("nw: error:")]
    assert len(errors) == 1, proc.stderr
    assert "unexpected error" not in proc.stderr, proc.stderr
    return errors[0]


def object_store_env(kind: str, request, tmp_path) -> dict[str, str]:
    env = {"DESTINATION_TYPE": kind, "DUCKDB_PATH": str(tmp_path / "lake.duckdb"), "DESTINATION_PATH": str(tmp_path),
           "MAX_RETRIES": "2", "RETRY_BASE_SECONDS": "0.05"}
    if kind == "DELTA":
        env["DELTA_URI"] = str(tmp_path / "delta")
    else:
        env.update(S3_BUCKET_NAME=request.getfixturevalue("s3_bucket"), AWS_ENDPOINT_URL=request.getfixturevalue("moto_server"),
                   AWS_ACCESS_KEY_ID="testing-key", AWS_SECRET_ACCESS_KEY="testing-secret", AWS_REGION="us-east-1")
    return env


def child_env_for(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any destination setting, plus ``env``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "DESTINATION_", "DUCKDB_", "S3_", "DELTA_"))}
    out.update(env)
    return out


def stop_process(proc: subprocess.Popen, log=None) -> None:
    """End a server a test started (terminate, then kill after 10 s) and close its log."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    if log is not None:
        log.close()
