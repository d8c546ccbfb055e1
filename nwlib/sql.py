"""Identifier quoting shared by the lake (DuckDB) and SQL destinations.

Values never go through here: they are always bound as parameters.
"""
from __future__ import annotations

from collections.abc import Iterable

from .errors import SourceModelError


def ident(name: str) -> str:
    """Quote one identifier for DuckDB/PostgreSQL (both use SQL's double quotes)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise SourceModelError(f"invalid identifier {name!r}", "rename the table or column: names must be non-empty text without NUL")
    return '"' + name.replace('"', '""') + '"'


def idents(names: Iterable[str], prefix: str = "") -> str:
    return ", ".join(prefix + ident(n) for n in names)


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"
