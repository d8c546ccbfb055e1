"""Schema changes: what a run does when a lake table's columns differ from those it last sent.

``SCHEMA_CHANGES`` chooses, per table or for all (like dlt's schema contracts):

* ``evolve`` (the default) — the destination follows the lake and scheduled
  runs keep going: a new column is added (every row re-sent, so it is filled);
  a dropped or renamed column is *kept* in the destination (rows written from
  then on leave it empty; PostgreSQL keeps an updated row's old value); a type
  that widens is widened; a type that narrows keeps the destination's wider
  type; any other change gives the column a type that holds both (``numeric``
  for numbers, else ``text`` in PostgreSQL; the file destinations rewrite the
  table).  Every change is noted in the ledger (``mudancas_schema``).
* ``freeze`` — any difference stops that table (one line naming the column, the
  old and the new type); the other tables go on.
* ``discard`` — the destination's columns never change: new lake columns are
  not sent, dropped ones are kept, and a type that no longer fits stops the table.

A change to a primary-key column stops the table under every policy.
``nw sync --full-refresh --tables t`` rebuilds a stopped table from the lake.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import SchemaChangeError
from .fingerprint import COLUMN as FP
from .model import Column, TableSpec
from .settings import DISCARD, FREEZE

_INT_WIDTH = {"TINYINT": 1, "UTINYINT": 1.5, "SMALLINT": 2, "USMALLINT": 2.5, "INTEGER": 3, "UINTEGER": 3.5, "BIGINT": 4,
              "UBIGINT": 4.5, "HUGEINT": 5, "UHUGEINT": 5.5}


@dataclass(frozen=True)
class ColumnChange:
    column: str
    old: str | None        # DuckDB type last sent (None: a new column)
    new: str | None        # DuckDB type in the lake now (None: dropped)

    def describe(self, table: str) -> str:
        if self.old is None:
            return f"column {table}.{self.column} {self.new} was added in the lake"
        if self.new is None:
            return f"column {table}.{self.column} ({self.old}) is no longer in the lake (dropped or renamed)"
        return f"column {table}.{self.column} changed type from {self.old} to {self.new}"


def column_changes(lake_columns: Sequence[Column], last_sent: Sequence[Column]) -> list[ColumnChange]:
    """The differences between the lake's columns and those last sent (empty when nothing was sent yet)."""
    if not last_sent:
        return []
    old = {c.name: c.type for c in last_sent}
    new = {c.name: c.type for c in lake_columns}
    out = [ColumnChange(n, None, t) for n, t in new.items() if n not in old]
    out += [ColumnChange(n, t, None) for n, t in old.items() if n not in new]
    out += [ColumnChange(n, old[n], t) for n, t in new.items() if n in old and old[n] != t]
    return out


def narrows(old: str, new: str) -> bool:
    """Do all values of DuckDB type ``new`` fit in ``old`` (so the destination's column can stay)?"""
    o, n = old.upper(), new.upper()
    if o == n:
        return True
    if o in _INT_WIDTH and n in _INT_WIDTH:
        if o.startswith("U") and not n.startswith("U"):
            return False                      # a negative value has no place in an unsigned column
        return _INT_WIDTH[n] <= _INT_WIDTH[o]
    if o == "DOUBLE" and n in ("FLOAT", "REAL"):
        return True
    if o in ("VARCHAR", "TEXT") and n in ("VARCHAR", "TEXT", "ENUM") or o == "VARCHAR" and n.startswith("ENUM"):
        return True
    return False


def apply_policy(spec: TableSpec, policy: str, last_sent: Sequence[Column], full_refresh: bool) -> TableSpec:
    """The spec this run sends for ``spec`` under ``policy``; raises SchemaChangeError when the table must stop."""
    changes = column_changes(spec.columns, last_sent)
    if not changes or full_refresh:
        return spec
    keyed = [c for c in changes if c.column in spec.primary_key]
    if keyed:
        raise SchemaChangeError(f"primary key {keyed[0].describe(spec.name)}",
                                f"rebuild that table: `nw sync --full-refresh --tables {spec.name}`")
    if policy == FREEZE:
        raise SchemaChangeError(f"{'; '.join(c.describe(spec.name) for c in changes)}, and SCHEMA_CHANGES=freeze stops such tables",
                                f"set SCHEMA_CHANGES={spec.name}=evolve to follow the lake, or rebuild it with "
                                f"`nw sync --full-refresh --tables {spec.name}`")
    if policy == DISCARD:
        retyped = [c for c in changes if c.old and c.new and not narrows(c.old, c.new)]
        if retyped:
            raise SchemaChangeError(f"{retyped[0].describe(spec.name)}, which the destination's column cannot hold, "
                                    "and SCHEMA_CHANGES=discard keeps the destination's types",
                                    f"set SCHEMA_CHANGES={spec.name}=evolve, or rebuild it with `nw sync --full-refresh --tables {spec.name}`")
        added = {c.column for c in changes if c.old is None}
        if added:
            return replace(spec, columns=tuple(c for c in spec.columns if c.name not in added))
    return spec


def as_sent(spec: TableSpec, policy: str, last_sent: Sequence[Column]) -> TableSpec:
    """``spec`` with the columns the destination was given: without the lake columns SCHEMA_CHANGES=discard leaves
    out, which `nw verify` and `nw status` then leave out too (the spec itself under any other policy, or when
    the policy would stop the table)."""
    if policy != DISCARD:
        return spec
    try:
        return apply_policy(spec, policy, tuple(c for c in last_sent if c.name != FP), False)
    except SchemaChangeError:
        return spec


def discarded(spec: TableSpec, sent: TableSpec) -> list[str]:
    """Notes for the lake columns ``sent`` leaves out (SCHEMA_CHANGES=discard)."""
    kept = set(sent.column_names)
    return [f"column {c.name} {c.type} not sent (SCHEMA_CHANGES=discard)" for c in spec.columns if c.name not in kept]
