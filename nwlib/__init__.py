"""nwlib: incremental, exact sync of a DuckDB lake into PostgreSQL, S3, Delta or Databricks."""
__version__ = "0.2.0"

from .errors import NwError  # noqa: F401
from .settings import Settings, load_settings  # noqa: F401


def sync(*args, **kwargs):
    from .engine import sync as _sync
    return _sync(*args, **kwargs)


def verify(*args, **kwargs):
    from .verify import verify as _verify
    return _verify(*args, **kwargs)
