"""Databricks: the data moves by the Delta path, the warehouse only learns where it is.

Rows, watermarks and deletes go exactly as for ``DELTA`` (each table a Delta
table under ``DELTA_URI``, usually ``s3://…`` that the workspace can read).
``databricks-sql-connector`` is used only for what a SQL warehouse needs:
``CREATE SCHEMA IF NOT EXISTS`` and ``CREATE TABLE IF NOT EXISTS … USING DELTA
LOCATION :location`` for every synced table and for ``controle_cargas``.
Identifiers are backtick-quoted; every value (the locations) is a bound
parameter, never spliced into the SQL text.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

from ..cdc import ChangeSet
from ..errors import ConfigError, DestinationError, first_line, missing_dependency
from ..model import TableSpec
from ..records import LEDGER_TABLE
from ..settings import Settings
from .base import Capabilities, LoadResult, Progress, ReaderFactory
from .delta import DeltaDestination

CAPABILITIES = Capabilities(name="DATABRICKS")


def bq(name: str) -> str:
    """A Databricks SQL identifier, backtick-quoted."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"invalid Databricks identifier {name!r}", "use a non-empty name")
    return "`" + name.replace("`", "``") + "`"


def _connector(settings: Settings):
    try:
        from databricks import sql
    except ImportError:
        raise missing_dependency("databricks-sql-connector", "databricks") from None
    host = settings.databricks_host.removeprefix("https://").rstrip("/")
    return sql.connect(server_hostname=host, http_path=settings.databricks_http_path, access_token=settings.databricks_token)


class DatabricksDestination(DeltaDestination):
    capabilities = CAPABILITIES

    def __init__(self, settings: Settings, connect: Callable[[Settings], object] | None = None):
        missing = [n for n, v in (("DATABRICKS_HOST", settings.databricks_host), ("DATABRICKS_HTTP_PATH", settings.databricks_http_path),
                                  ("DATABRICKS_TOKEN", settings.databricks_token), ("DELTA_URI", settings.delta_uri)) if not v]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set for DESTINATION_TYPE=DATABRICKS",
                              "set the workspace host, the SQL warehouse HTTP path, a token, and DELTA_URI (where the Delta tables are staged)")
        super().__init__(settings)
        self.catalog = settings.databricks_catalog
        self.schema = settings.databricks_schema or "default"
        self._connect = connect or _connector
        self._conn = None
        self._registered: set[str] = set()

    def describe(self) -> str:
        return f"Databricks {self.settings.databricks_host} {self.catalog + '.' if self.catalog else ''}{self.schema} (Delta at {self.root})"

    def qualified(self, table: str) -> str:
        parts = [self.catalog, self.schema, table] if self.catalog else [self.schema, table]
        return ".".join(bq(p) for p in parts)

    # --- the SQL layer -------------------------------------------------------------
    def create_schema_sql(self) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {'.'.join(bq(p) for p in ([self.catalog, self.schema] if self.catalog else [self.schema]))}"

    def register_sql(self, table: str) -> tuple[str, dict[str, str]]:
        return f"CREATE TABLE IF NOT EXISTS {self.qualified(table)} USING DELTA LOCATION :location", {"location": self.uri(table)}

    def _execute(self, statement: str, parameters: dict | None) -> list:
        if self._conn is None:
            self._conn = self._connect(self.settings)
        cur = self._conn.cursor()
        try:
            cur.execute(statement, parameters or None)
            return cur.fetchall() if getattr(cur, "description", None) else []
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def _sql(self, where: str, statement: str, parameters: dict | None = None):
        try:
            return self._execute(statement, parameters)
        except (ConfigError, DestinationError):
            raise
        except Exception as exc:  # the connector's errors share no base we can import without it
            self._drop()
            text = self.settings.redact(first_line(exc))
            low = text.lower()
            transient = any(t in low for t in ("timed out", "timeout", "connection", "temporarily", "503", "502", "429"))
            if "401" in low or "403" in low or "invalid access token" in low or "unauthorized" in low:
                raise DestinationError(f"{where}: Databricks refused the token", "check DATABRICKS_TOKEN and its warehouse permission") from None
            raise DestinationError(f"{where}: Databricks SQL failed: {text}",
                                   "check DATABRICKS_HOST / DATABRICKS_HTTP_PATH and that the warehouse is running", transient=transient) from None

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._drop()
        super().close()

    def ping(self) -> float:
        t = time.perf_counter()
        self._sql("ping", "SELECT 1")
        return time.perf_counter() - t

    def _register(self, tables: Sequence[str]) -> None:
        todo = [t for t in tables if t not in self._registered]
        if not todo:
            return
        if not self._registered:
            self._sql("create schema", self.create_schema_sql())
        for t in todo:
            stmt, params = self.register_sql(t)
            self._sql(f"register {t}", stmt, params)
            self._registered.add(t)

    # --- the data path is Delta's; the catalog follows it --------------------------
    def load(self, changes: Sequence[ChangeSet], read: ReaderFactory, run_id: str, progress: Progress) -> dict[str, LoadResult]:
        results = super().load(changes, read, run_id, progress)
        self._register([cs.spec.name for cs in changes] + [LEDGER_TABLE])
        return results

    def prepare(self, specs: Sequence[TableSpec], full_refresh: frozenset[str]) -> dict[str, tuple[str, ...]]:
        self._registered = set()
        return super().prepare(specs, full_refresh)
