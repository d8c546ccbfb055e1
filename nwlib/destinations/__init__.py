"""Destination registry: ``DESTINATION_TYPE`` → class.

Adding a destination is one module in this package and one line here.
Heavy drivers are imported inside each destination, when first used.
"""
from __future__ import annotations

from ..errors import ConfigError
from .databricks import DatabricksDestination
from .delta import DeltaDestination
from .postgres import PostgresDestination
from .s3 import S3Destination

REGISTRY: dict[str, type] = {
    "POSTGRES": PostgresDestination,
    "S3": S3Destination,
    "DELTA": DeltaDestination,
    "DATABRICKS": DatabricksDestination,
}


def create(settings):
    try:
        cls = REGISTRY[settings.destination_type]
    except KeyError:
        raise ConfigError(f"DESTINATION_TYPE={settings.destination_type!r} is not a known destination",
                          f"use one of: {', '.join(sorted(REGISTRY))}") from None
    return cls(settings)
