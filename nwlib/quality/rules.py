"""The checks file: what it may say, read into small frozen values.

Format (YAML, words as dbt's tests use them)::

    version: 1
    tables:
      pedidos:
        - not_null: [id_cliente, valor_total]
        - unique: id_pedido                       # a column, or a list: the combination is unique
        - accepted_values: {column: status, values: [pendente, pago, enviado, entregue, cancelado]}
        - relationships: {column: id_cliente, to: clientes, field: id_cliente}
        - expression: {name: valor_positivo, sql: "valor_total >= 0"}   # every row must satisfy it
        - row_count_change: {max_drop_pct: 50, max_growth_pct: 300}     # against the last published count
        - freshness: {column: updated_at, max_age: 2 days}
          severity: warn                          # error (default): hold the table back; warn: publish and record

Every problem in the file is one :class:`~nwlib.errors.ConfigError` line naming the file, the table and
the check.  Whether the named tables and columns exist is checked against the lake when the checks run.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("nwlib.quality")

ERROR, WARN = "error", "warn"
SEVERITIES = (ERROR, WARN)
KINDS = ("not_null", "unique", "accepted_values", "relationships", "expression", "row_count_change", "freshness")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*$", re.I)


@dataclass(frozen=True)
class Check:
    """One check on one table."""

    table: str
    kind: str                              # one of KINDS
    name: str                              # how reports and controle_cargas call it, e.g. "unique(email)"
    severity: str = ERROR
    columns: tuple[str, ...] = ()          # not_null, unique, accepted_values, relationships, freshness
    values: tuple[Any, ...] = ()           # accepted_values
    ref_table: str | None = None           # relationships
    ref_columns: tuple[str, ...] = ()      # relationships
    sql: str | None = None                 # expression: a boolean DuckDB expression over the table's columns
    max_drop_pct: float | None = None      # row_count_change
    max_growth_pct: float | None = None    # row_count_change
    max_age_seconds: float | None = None   # freshness


def load_checks(path: Path | str, explicit: bool = False) -> tuple[Check, ...]:
    """The checks of a file; none when it does not exist (said as a warning when it was named explicitly:
    a mistyped CHECKS_FILE must not switch the gate off unnoticed)."""
    path = Path(path)
    if not path.is_file():
        if explicit:
            log.warning("CHECKS_FILE=%s does not exist: no quality checks ran", path)
        return ()
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}", "fix the file (see the format in README, 'Transform, check, publish')") from None
    return parse_checks(doc, str(path))


def parse_checks(doc: Any, source: str = "checks.yml") -> tuple[Check, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, dict) or not isinstance(doc.get("tables", {}), dict):
        raise ConfigError(f"{source}: expected a mapping with 'tables:' (table → list of checks)", "see the format in README")
    unknown = set(doc) - {"version", "tables"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}", "only 'version' and 'tables' are read")
    if doc.get("version", 1) != 1:
        raise ConfigError(f"{source}: version {doc.get('version')!r} is not supported", "use version: 1")
    checks: list[Check] = []
    for table, items in (doc.get("tables") or {}).items():
        if not isinstance(items, list):
            raise ConfigError(f"{source}: table {table!r}: expected a list of checks", "write each check as '- kind: …'")
        for i, item in enumerate(items, 1):
            checks.append(_check(str(table), item, f"{source}: table {table!r}, check #{i}"))
    names = [(c.table, c.name) for c in checks]
    for key in names:
        if names.count(key) > 1:
            raise ConfigError(f"{source}: table {key[0]!r} has two checks named {key[1]!r}", "give one of them a distinct 'name:'")
    return tuple(checks)


def _check(table: str, item: Any, where: str) -> Check:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping such as '- not_null: [col]'", "see the format in README")
    kinds = [k for k in item if k in KINDS]
    extra = [k for k in item if k not in KINDS and k not in ("severity", "name")]
    if len(kinds) != 1 or extra:
        what = f"unknown key(s) {', '.join(map(str, extra))}" if extra else f"{len(kinds)} check kinds"
        raise ConfigError(f"{where}: {what}", f"one of {', '.join(KINDS)} per item (plus severity/name)")
    kind = kinds[0]
    severity = str(item.get("severity", ERROR)).lower()
    if severity not in SEVERITIES:
        raise ConfigError(f"{where} ({kind}): severity {item.get('severity')!r}", "use error or warn")
    where = f"{where} ({kind})"
    spec = item[kind]
    fields: dict[str, Any] = {}
    if kind in ("not_null", "unique"):
        fields["columns"] = _columns(spec, where)
    elif kind == "accepted_values":
        body = _mapping(spec, where, required=("column", "values"))
        fields["columns"] = _columns(body["column"], where)
        if not isinstance(body["values"], list) or not body["values"]:
            raise ConfigError(f"{where}: 'values' must be a non-empty list", "list the values a column may hold")
        fields["values"] = tuple(body["values"])
    elif kind == "relationships":
        body = _mapping(spec, where, required=("column", "to"), optional=("field",))
        fields["columns"] = _columns(body["column"], where)
        fields["ref_table"] = str(body["to"])
        fields["ref_columns"] = _columns(body.get("field", body["column"]), where)
        if len(fields["ref_columns"]) != len(fields["columns"]):
            raise ConfigError(f"{where}: 'column' and 'field' name different numbers of columns", "pair each column with one field")
    elif kind == "expression":
        body = _mapping(spec, where, required=("sql",), optional=("name",)) if isinstance(spec, dict) else {"sql": spec}
        if not isinstance(body["sql"], str) or not body["sql"].strip() or ";" in body["sql"]:
            raise ConfigError(f"{where}: 'sql' must be one boolean expression (no ';')", "e.g. sql: \"valor_total >= 0\"")
        fields["sql"] = body["sql"].strip()
        item = {**item, "name": item.get("name") or body.get("name")}
    elif kind == "row_count_change":
        body = _mapping(spec, where, optional=("max_drop_pct", "max_growth_pct"))
        for k in ("max_drop_pct", "max_growth_pct"):
            if k in body:
                v = body[k]
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                    raise ConfigError(f"{where}: {k} must be a number ≥ 0 (a percentage)", f"e.g. {k}: 50")
                fields[k] = float(v)
        if not fields:
            raise ConfigError(f"{where}: give max_drop_pct and/or max_growth_pct", "e.g. {max_drop_pct: 50}")
    elif kind == "freshness":
        body = _mapping(spec, where, required=("column", "max_age"))
        fields["columns"] = _columns(body["column"], where)
        m = _AGE.match(str(body["max_age"]))
        if not m:
            raise ConfigError(f"{where}: max_age {body['max_age']!r} is not a duration", "write e.g. '36 hours' or '2 days'")
        unit = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}[m.group(2).lower()]
        fields["max_age_seconds"] = float(m.group(1)) * unit
    name = item.get("name") or _default_name(kind, fields)
    return Check(table, kind, str(name), severity, **fields)


def _default_name(kind: str, f: dict) -> str:
    cols = ",".join(f.get("columns", ()))
    if kind == "relationships":
        return f"relationships({cols} → {f['ref_table']}.{','.join(f['ref_columns'])})"
    if kind == "row_count_change":
        return "row_count_change"
    if kind == "expression":
        return f"expression({f['sql']})"
    return f"{kind}({cols})"


def _columns(spec: Any, where: str) -> tuple[str, ...]:
    cols = [spec] if isinstance(spec, str) else spec
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
        raise ConfigError(f"{where}: expected a column name or a list of them", "e.g. [id_cliente, email]")
    return tuple(cols)


def _mapping(spec: Any, where: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with {', '.join(required + optional)}", "see the format in README")
    missing = [k for k in required if k not in spec]
    extra = [k for k in spec if k not in required + optional]
    if missing or extra:
        what = f"missing {', '.join(missing)}" if missing else f"unknown key(s) {', '.join(map(str, extra))}"
        raise ConfigError(f"{where}: {what}", f"it takes {', '.join(required + optional)}")
    return spec
