"""Destination registry: ``DESTINATION_TYPE`` → class.

Adding a destination is one module (or package) here implementing
:class:`~nwlib.destinations.base.Destination`, one line in ``_WHERE`` and its
name in :data:`nwlib.settings.DESTINATION_TYPES` (a test keeps the two equal).

The registry reads like ``dict[str, type[Destination]]`` but imports a class
only when it is looked up, so ``nw --help`` or a PostgreSQL sync never import
boto3, deltalake or the Databricks connector.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from ..errors import ConfigError
from ..settings import DESTINATION_TYPES, Settings
from .base import Destination

# DESTINATION_TYPE → "module:Class", imported on first use.
_WHERE: dict[str, str] = {
    "POSTGRES": "nwlib.destinations.postgres:PostgresDestination",
    "S3": "nwlib.destinations.s3:S3Destination",
    "DELTA": "nwlib.destinations.delta:DeltaDestination",
    "DATABRICKS": "nwlib.destinations.databricks:DatabricksDestination",
}


class _LazyRegistry(Mapping[str, type[Destination]]):
    def __init__(self, where: Mapping[str, str]):
        self._where = dict(where)
        self._loaded: dict[str, type[Destination]] = {}

    def __getitem__(self, key: str) -> type[Destination]:
        if key not in self._loaded:
            module, _, name = self._where[key].partition(":")   # KeyError for an unknown key, as a dict
            self._loaded[key] = getattr(importlib.import_module(module), name)
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


REGISTRY: Mapping[str, type[Destination]] = _LazyRegistry(_WHERE)


def create(settings: Settings) -> Destination:
    """The destination ``settings.destination_type`` names, ready to use."""
    try:
        cls = REGISTRY[settings.destination_type]
    except KeyError:
        raise ConfigError(f"DESTINATION_TYPE={settings.destination_type!r} is not a known destination",
                          f"use one of: {', '.join(DESTINATION_TYPES)}") from None
    return cls(settings)
