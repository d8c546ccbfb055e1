"""nwlib: incremental, exact sync of a DuckDB lake into PostgreSQL, S3, Delta or Databricks.

``nwlib.sync`` and ``nwlib.verify`` are :func:`nwlib.engine.sync` and
:func:`nwlib.verification.verify` themselves (real signatures and docs),
imported on first use so ``import nwlib`` (and ``nw --help``) stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import NwError
from .settings import Settings, load_settings

__version__ = "0.2.0"
__all__ = ["NwError", "Settings", "load_settings", "sync", "verify"]

if TYPE_CHECKING:  # pragma: no cover
    from .engine import sync
    from .verification import verify


def __getattr__(name: str):
    if name == "sync":
        from .engine import sync
        return sync
    if name == "verify":
        from .verification import verify
        return verify
    raise AttributeError(f"module 'nwlib' has no attribute {name!r}")
