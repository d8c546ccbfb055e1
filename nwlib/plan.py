"""The plan of a run: which tables, in which order, which of them fully refreshed.

``read_plan`` reads the lake's model (:func:`nwlib.lake.read_specs`), keeps the
tables asked for and orders them parents-first (:func:`nwlib.graph.load_steps`).
"""
from __future__ import annotations

from collections.abc import Iterable

import duckdb

from . import graph, lake
from .errors import SourceModelError
from .model import Plan, TableSpec
from .settings import Settings


def select(specs: dict[str, TableSpec], tables: Iterable[str] | None) -> dict[str, TableSpec]:
    """The specs of ``tables`` (all when empty); one line naming any table the lake lacks."""
    if not tables:
        return specs
    wanted = [t.strip() for t in tables if t and t.strip()]
    unknown = [t for t in wanted if t not in specs]
    if unknown:
        raise SourceModelError(f"table(s) not in the lake: {', '.join(unknown)}", f"choose from: {', '.join(specs) or 'none'}")
    return {t: specs[t] for t in specs if t in wanted}


def read_plan(settings: Settings, con: duckdb.DuckDBPyConnection, tables: Iterable[str] | None = None,
              full_refresh: bool = False) -> Plan:
    specs = lake.read_specs(con, settings.incremental_columns, settings.append_only_tables, settings.full_replace_tables,
                            settings.lake_schemas)
    chosen = select(specs, tables)
    refresh = frozenset(chosen) if (full_refresh or settings.truncate_before_load) else frozenset()
    return Plan(graph.load_steps(chosen.values()), chosen, refresh, specs)
