"""DuckDB extensions, offline first: already installed → the pinned PyPI wheel → INSTALL from the internet."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from ..errors import reraise_interrupt


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """LOAD an extension; False (never raises) when none of the ways works, so callers can fall back."""
    try:
        con.execute(f"LOAD {name}")
        return True
    except duckdb.Error as exc:
        reraise_interrupt(exc)
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")     # the PyPI wheel duckdb-extension-<name>
    if spec and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        for file in sorted(root.glob(f"extensions/v{duckdb.__version__}/*.duckdb_extension")):
            try:
                con.execute(f"INSTALL '{str(file).replace(chr(39), chr(39) * 2)}'")  # our own package path, quoted
                con.execute(f"LOAD {name}")
                return True
            except duckdb.Error as exc:
                reraise_interrupt(exc)
                break
    try:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
        return True
    except duckdb.Error as exc:
        reraise_interrupt(exc)
        return False
