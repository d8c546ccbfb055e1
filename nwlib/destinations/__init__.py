"""Destination registry: ``DESTINATION_TYPE`` → class.

Adding a destination is one module in this package and one line here.
Heavy drivers are imported inside each destination, when first used.
"""
from __future__ import annotations

from ..errors import ConfigError
from .postgres import PostgresDestination

REGISTRY: dict[str, type] = {
    "POSTGRES": PostgresDestination,
}


def create(settings) -> PostgresDestination:
    try:
        cls = REGISTRY[settings.destination_type]
    except KeyError:
        raise ConfigError(f"DESTINATION_TYPE={settings.destination_type!r} is not a known destination",
                          f"use one of: {', '.join(sorted(REGISTRY))}") from None
    return cls(settings)
