"""The notebooks: committed clean, parameterised, and runnable top to bottom on a real kernel.

papermill runs bootstrap.ipynb and sync.ipynb with non-default parameters
against the test PostgreSQL and the results are checked in the lake and the
destination; explore.ipynb runs under ``pytest --nbval-lax``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nwlib import lake
from nwlib.verification import verify

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PARAMETERS = {
    "bootstrap": {"duckdb_path": '""', "scale": "1", "seed": "42", "mutate_fraction": "0.0"},
    "sync": {"destination_type": '""', "tables": '""', "full_refresh": "False", "dry_run": "False"},
    "explore": {"duckdb_path": '""'},
    "dashboard": {"duckdb_path": '""', "destination_type": '""', "page_size": "50"},
    "transform": {"select": '""', "full_refresh": "False"},
    "pipeline": {"select": '""', "full_refresh": "False", "tables": '""'},
}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}.ipynb has no code"
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}.ipynb: first code cell is not tagged 'parameters'"
    for c in code:
        assert c.outputs == [] and c.execution_count is None, f"{name}.ipynb has outputs committed: strip them"
    # The parameters cell holds defaults only: plain assignments, no calls.
    assert all("(" not in line.split("#")[0] for line in code[0].source.splitlines()), code[0].source


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_notebook_parameters(name):
    import papermill

    found = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert {k: v["default"] for k, v in found.items()} == PARAMETERS[name]
    assert all(v["help"] for v in found.values()), f"{name}.ipynb: document every parameter with a comment"


@pytest.fixture(scope="module")
def kernel():
    """A Jupyter kernelspec for this venv's python (a fresh clone may not have one yet)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True, capture_output=True)
    return "python3"


@pytest.fixture
def nb_env(monkeypatch, pg_url, pg_schema, lake_path, tmp_path):
    """The kernel inherits this environment: the test lake, the test schema, no .env surprises."""
    env = {"DESTINATION_TYPE": "POSTGRES", "DATABASE_URL": pg_url, "DB_SCHEMA": pg_schema, "DUCKDB_PATH": str(lake_path),
           "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "1", "RETRY_BASE_SECONDS": "0.05", "PLOOMBER_STATS_ENABLED": "false"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _run(kernel, name: str, out: Path, **params):
    import papermill

    return papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=params, kernel_name=kernel,
                                      cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=180)


def _counts(path) -> dict[str, int]:
    con = lake.connect(path, read_only=True)
    try:
        return {name: lake.row_count(con, spec) for name, spec in lake.read_specs(con).items()}
    finally:
        con.close()


def _dest_tables(pg, schema) -> set[str]:
    return {r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]).fetchall()}


def test_bootstrap_and_sync_notebooks_with_papermill(kernel, nb_env, settings, pg, pg_schema, lake_path, tmp_path):
    import papermill

    other = tmp_path / "other" / "lake2.duckdb"
    _run(kernel, "bootstrap", tmp_path / "b1.ipynb", duckdb_path=str(other), scale=0.2, seed=7)
    assert _counts(other) == {"clientes": 200, "itens_pedido": 6000, "pagamentos": 2000, "pedidos": 2000}
    assert not lake_path.exists(), "duckdb_path parameter must win over DUCKDB_PATH"

    _run(kernel, "bootstrap", tmp_path / "b2.ipynb", duckdb_path=str(lake_path), scale=0.2, seed=7)
    dry = _run(kernel, "sync", tmp_path / "s0.ipynb", destination_type="SUPABASE", tables="clientes, pedidos", dry_run=True)
    assert "load order: clientes → pedidos" in str(dry.cells)
    assert "controle_cargas" not in _dest_tables(pg, pg_schema) or not pg.execute(
        f'SELECT count(*) FROM "{pg_schema}".controle_cargas').fetchone()[0]

    _run(kernel, "sync", tmp_path / "s1.ipynb", destination_type="POSTGRES", tables="clientes,pedidos")
    tables = _dest_tables(pg, pg_schema)
    assert {"clientes", "pedidos"} <= tables and "itens_pedido" not in tables
    assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".pedidos').fetchone()[0] == 2000

    _run(kernel, "bootstrap", tmp_path / "b3.ipynb", duckdb_path=str(lake_path), scale=0.2, seed=7, mutate_fraction=0.05)
    counts = _counts(lake_path)
    assert counts["pedidos"] != 2000  # the mutation inserted and deleted orders
    executed = _run(kernel, "sync", tmp_path / "s2.ipynb", full_refresh=False)
    checks = verify(settings)
    assert checks and all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".pedidos').fetchone()[0] == counts["pedidos"]
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the rows-moved chart is missing"
    # The saved progress is what was done, not a widget's stand-in ("sync: 0%|").
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs] + [o.get("text", "") for o in outputs]
    assert any(t.startswith("sync: done · ") for t in texts), texts
    assert not any("0%|" in t for t in texts)
    # Saved, then exported as a reader would see it: the chart is an image in the HTML.
    import nbconvert
    import nbformat

    html, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(tmp_path / "s2.ipynb", as_version=4))
    assert re.search(r'<img [^>]*src="data:image/png;base64,', html), "no chart image in the HTML"

    # A table that fails makes papermill fail, naming the table.
    pg.execute(f'ALTER TABLE "{pg_schema}".pedidos ADD CONSTRAINT no_new_orders CHECK (valor_total < 0) NOT VALID')
    _run(kernel, "bootstrap", tmp_path / "b4.ipynb", duckdb_path=str(lake_path), scale=0.2, seed=7, mutate_fraction=0.05)
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        _run(kernel, "sync", tmp_path / "s3.ipynb")
    assert "SyncFailed" in str(failed.value) and "pedidos" in str(failed.value)
    assert "Traceback" not in str(failed.value).split("\n")[0]


def test_explore_notebook_under_nbval(kernel, nb_env, lake_path):
    from nwlib.bootstrap import bootstrap

    bootstrap(lake_path, scale=0.1, seed=5)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-kernel-name", kernel, str(NOTEBOOKS / "explore.ipynb")],
                         cwd=str(ROOT), env={**os.environ, **nb_env}, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_explore_notebook_saves_its_charts_and_no_warnings(kernel, nb_env, lake_path, tmp_path):
    """Executed as papermill saves it: both charts are images, and no cell printed a warning (jupysql's 'toml')."""
    from nwlib.bootstrap import bootstrap

    bootstrap(lake_path, scale=0.1, seed=5)
    done = _run(kernel, "explore", tmp_path / "explore.ipynb")
    outputs = [o for c in done.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    streams = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    assert not any("toml" in t or "Warning" in t for t in streams), streams


def test_make_lab_serves_jupyterlab_on_the_notebooks_offline(tmp_path):
    """`make lab`'s own command line (read from the Makefile) starts JupyterLab; its page loads nothing from elsewhere."""
    import shlex
    import time
    import urllib.request

    from servers import free_port

    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlab: ", 1)[1].split("\n\n", 1)[0].splitlines()
    line = next(r.strip() for r in recipe if "jupyter lab" in r)
    port = free_port()
    bindir = str(Path(sys.executable).parent)
    offline = re.search(r"^LAB_OFFLINE := (.*)$", makefile, re.M).group(1)
    root = "--allow-root" if os.geteuid() == 0 else ""
    line = re.sub(r"\$\(if \$\(filter 0,\$\(shell id -u\)\),--allow-root\)", root, line)
    cmd = shlex.split(line.replace("$(BIN)", bindir).replace("$(LAB_OFFLINE)", offline)
                      .replace("$(LAB_ARGS)", f"--no-browser --port={port} --IdentityProvider.token=nwtest"))
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, page = time.monotonic() + 90, None
        while time.monotonic() < deadline and page is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token=nwtest", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert page and "JupyterLab" in page
        loaded = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
        assert loaded and all(not u.startswith(("http:", "https:", "//")) for u in loaded), loaded
        listing = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=nwtest", timeout=5).read().decode()
        assert all(f"{name}.ipynb" in listing for name in PARAMETERS), "JupyterLab does not open on notebooks/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_transform_and_pipeline_notebooks_with_papermill(kernel, nb_env, monkeypatch, pg, pg_schema, lake_path, tmp_path):
    """transform.ipynb builds the marts; pipeline.ipynb transforms, checks and publishes under one run id."""
    from nwlib.bootstrap import bootstrap

    monkeypatch.setenv("CHECKS_FILE", str(ROOT / "checks.yml"))
    monkeypatch.setenv("DBT_PROJECT_DIR", str(ROOT / "transform"))
    bootstrap(lake_path, scale=0.1, seed=3)
    done = _run(kernel, "transform", tmp_path / "t.ipynb", select="vendas_diarias")
    text = str(done.cells)
    assert "vendas_diarias" in text and "cliente_valor" not in text.split("select")[-1]
    run = _run(kernel, "pipeline", tmp_path / "p.ipynb")
    outputs = [o for c in run.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "passed" in str(run.cells) and ": ok, " in str(run.cells)
    runs = pg.execute(f'SELECT count(DISTINCT run_id), count(*) FILTER (WHERE modo = %s) FROM "{pg_schema}".controle_cargas', ["transform"]).fetchone()
    assert runs == (1, 3)
