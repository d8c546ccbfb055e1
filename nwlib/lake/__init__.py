"""The DuckDB lake: opening it safely (:mod:`.files`), what its catalog says (:mod:`.catalog`), its own
metadata tables in either format (:mod:`.metadata`), the source model built from them (:mod:`.model`),
and DuckDB extensions loaded offline (:mod:`.extensions`)."""
from .catalog import METADATA_TABLES, LakeTable, columns_of, lake_tables, user_tables
from .extensions import load_extension
from .files import LAKE_ALIAS, connect, memory_limit, open_lake, row_count, stream_cursor
from .metadata import TableMetadata, original_schema_json, read_metadata
from .model import INCREMENTAL_CANDIDATES, ORDERABLE_CURSOR_TYPES, read_specs

__all__ = ["INCREMENTAL_CANDIDATES", "LAKE_ALIAS", "METADATA_TABLES", "ORDERABLE_CURSOR_TYPES", "LakeTable",
           "TableMetadata", "columns_of", "connect", "lake_tables", "load_extension", "open_lake", "original_schema_json", "read_metadata",
           "memory_limit", "read_specs", "row_count", "stream_cursor", "user_tables"]
