"""The GitHub workflows are valid (check-jsonschema's vendored GitHub schema, offline), and a broken one is caught."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def validate(*paths: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is not installed (pip install 'nwlib[dev]')"
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_both_workflows_exist_and_validate():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "sync.yml"}
    run = validate(*WORKFLOWS)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("breakage", ["no runs-on", "unknown trigger", "step with no run or uses"])
def test_a_deliberately_broken_copy_fails(tmp_path, breakage):
    doc = yaml.safe_load((ROOT / ".github/workflows/sync.yml").read_text())
    on = doc.pop(True, None) or doc.pop("on")     # YAML 1.1 reads the key `on` as True
    doc["on"] = on
    job = doc["jobs"]["publish"]
    if breakage == "no runs-on":
        del job["runs-on"]
    elif breakage == "unknown trigger":
        doc["on"] = {"every_hour": None}
    else:
        job["steps"].append({"name": "nothing to do"})
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = validate(broken)
    assert run.returncode != 0 and "broken.yml" in run.stdout + run.stderr


def test_ci_workflow_runs_what_ci_runs_and_sync_uses_the_pooler_and_fails_on_a_failed_table():
    ci = (ROOT / ".github/workflows/ci.yml").read_text()
    assert "bash .ci/run" in ci
    sync = yaml.safe_load((ROOT / ".github/workflows/sync.yml").read_text())
    on = sync.get(True) or sync.get("on")
    assert "schedule" in on and "workflow_dispatch" in on
    steps = sync["jobs"]["publish"]["steps"]
    run_step = next(s for s in steps if "nw run" in s.get("run", ""))
    assert "|| true" not in run_step["run"], "the job must fail when a table fails"
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s.get("if") == "always()" for s in steps)
    assert "session pooler" in (ROOT / ".github/workflows/sync.yml").read_text()
