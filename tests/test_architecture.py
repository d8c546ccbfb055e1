"""The house rules, checked: data flows one way, no import circles, no capability probing, light start-up.

The layer order (lowest first) is written here, not derived: a module may
import its own layer or lower ones, never a higher one.  Imports inside
``if TYPE_CHECKING:`` blocks are for annotations only and do not count; imports
inside functions do (a lazy import is still a dependency).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nwlib"

LAYERS: list[tuple[str, ...]] = [
    ("settings", "connstr", "errors", "model", "sql", "typemap", "records", "readback", "progress", "clock"),   # small values and rules
    ("lake",),                                                                    # the DuckDB lake
    ("graph", "cdc", "plan", "fingerprint", "holdings", "evolution", "bootstrap", "editing", "browse", "histogram",
     "quality", "transform"),  # plan: order + change sets; lake tools
    ("destinations",),
    ("ledger", "engine"),
    ("verification", "status", "pipeline", "metrics", "watch"),
    ("charts",),                                                                  # pictures of runs and lake columns
    ("cli", "dashboard", "notebook", "flow", "__init__", "__main__"),                     # what people touch
]
HEAVY = ("deltalake", "boto3", "botocore", "databricks")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> set[str]:
    """nwlib modules imported by the file at ``path`` (absolute names), TYPE_CHECKING blocks skipped."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "nwlib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "nwlib":
                for a in node.names:  # `from . import lake` depends on the module nwlib.lake, not on the package
                    candidate = f"{target}.{a.name}"
                    found.add(candidate if _exists(candidate) else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(me)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): {m for m in _imports(p) if _exists(m)} for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if key in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(module)


def test_no_import_cycles():
    graph = _graph()
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' → '.join(exc.args[1])}")


def test_no_module_imports_a_higher_layer():
    bad = []
    for module, deps in _graph().items():
        for dep in deps:
            if dep == "nwlib":
                continue  # the package itself: only its parent role (errors, settings) is at stake
            if _layer(dep) > _layer(module):
                bad.append(f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})")
    assert not bad, "\n".join(bad)


def test_the_graph_finds_a_planted_cycle_and_reach_up(tmp_path, monkeypatch):
    """The checks above can fail: a copy of the package with one bad import each is caught."""
    import shutil

    copy = tmp_path / "nwlib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "sql.py").write_text((copy / "sql.py").read_text() + "\nfrom .engine import sync  # planted\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match=r"nwlib.sql \(layer 0\) imports nwlib.engine"):
        test_no_module_imports_a_higher_layer()


def test_no_capability_probing_with_hasattr():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in PACKAGE.rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if "hasattr(" in line]
    assert not offenders, f"use Capabilities or the Destination protocol instead: {offenders}"


def test_registry_and_settings_list_the_same_destinations():
    from nwlib.destinations import REGISTRY
    from nwlib.destinations.base import Destination
    from nwlib.settings import DESTINATION_TYPES

    assert tuple(REGISTRY) == DESTINATION_TYPES
    for name in DESTINATION_TYPES:
        cls = REGISTRY[name]
        missing = [m for m in Destination.__annotations__.keys() | {n for n in dir(Destination) if not n.startswith("_")}
                   if not hasattr(cls, m)]
        assert not missing, f"{cls.__name__} lacks {missing}"


def _loaded_modules(code: str, env: dict | None = None) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_help_imports_no_heavy_driver():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nwlib", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "sync" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "nwlib.cli" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, f"`nw --help` imported {heavy}"


def test_a_postgres_sync_imports_no_object_store_or_databricks_code(settings, lake_path):
    from clirun import env_for

    from nwlib.bootstrap import bootstrap

    bootstrap(lake_path, scale=0.01)
    code = ("import sys\nfrom nwlib.settings import load_settings\nfrom nwlib.engine import sync\n"
            "assert sync(load_settings(dotenv=None), show_progress=False).ok\nprint('\\n'.join(sys.modules))")
    loaded = _loaded_modules(code, env_for(settings))
    assert "psycopg" in loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(("nwlib.destinations.s3", "nwlib.destinations.delta")))
    assert not heavy, f"a PostgreSQL sync imported {heavy}"


def test_a_sync_with_nothing_to_send_imports_neither_pyarrow_nor_pandas(settings, lake_path):
    """The fixed cost of a no-change `nw sync` (issue 15): Arrow (and numpy under it) and pandas are imported
    where rows move, not when there is nothing to send; the first sync, which sends rows, does import Arrow.
    tenacity's optional tornado support (about 35 ms) is never imported by the command."""
    from clirun import env_for, run_nw

    from nwlib.bootstrap import bootstrap

    bootstrap(lake_path, scale=0.01)
    env = env_for(settings)
    assert run_nw(env, "sync", "--no-progress").returncode == 0
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('MODULES ' + ' '.join(sys.modules), file=sys.stderr))\n"
            "sys.argv = ['nw', 'sync', '--no-progress', '--env-file', '/nonexistent']\n"
            "from nwlib.cli import main\nsys.exit(main())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {m.split(".")[0] for m in proc.stderr.split("MODULES ", 1)[1].split()}
    assert "psycopg" in imported and "duckdb" in imported
    assert not {"pyarrow", "numpy", "pandas", "tornado"} & imported, sorted({"pyarrow", "numpy", "pandas", "tornado"} & imported)
