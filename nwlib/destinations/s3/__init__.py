"""S3 destination (Parquet change files), one module per part:

* :mod:`.layout` — where files go, and the rule deriving current rows from them;
* :mod:`.state` — ``_nw/state.json``, the commit point;
* :mod:`.parts` — writing change files and finding the committed ones;
* :mod:`.keys` — the keys a table holds, in the destination's DuckDB session;
* :mod:`.history` — the run history (``_nw/controle_cargas/*.jsonl``);
* :mod:`.destination` — :class:`S3Destination` and :func:`rebuild`.
"""
from .destination import S3Destination, rebuild
from .layout import current_rows_sql, folder

__all__ = ["S3Destination", "current_rows_sql", "folder", "rebuild"]
