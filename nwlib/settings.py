"""Settings: the environment (and ``.env``) read once into a frozen value.

Names follow the original project (``DESTINATION_TYPE``, ``DUCKDB_PATH``,
``DB_HOST`` …).  Precedence, strongest first: explicit overrides (CLI flags,
notebook parameters) → process environment → ``.env`` file → defaults.
A missing or malformed value raises :class:`ConfigError` naming the variable.
Secrets are kept out of ``repr`` and out of every URL we print.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import quote, unquote

from . import connstr
from .errors import ConfigError

# The valid DESTINATION_TYPE values (the registry in nwlib.destinations has exactly these keys: a test checks it).
DESTINATION_TYPES = ("POSTGRES", "S3", "DELTA", "DATABRICKS")
DESTINATION_ALIASES = {"SUPABASE": "POSTGRES", "POSTGRESQL": "POSTGRES", "PG": "POSTGRES"}
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POOL_MODES = tuple(connstr.POOL_MODES)   # DB_POOL_MODE: how DATABASE_URL/DB_HOST reaches PostgreSQL (shown by `nw status`)
# What a run does when a lake table's columns no longer match the destination's (see nwlib.evolution).
EVOLVE, FREEZE, DISCARD = "evolve", "freeze", "discard"
SCHEMA_POLICIES = (EVOLVE, FREEZE, DISCARD)


def _secret() -> str | None:
    return field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    destination_type: str = "POSTGRES"
    destination_path: Path = Path("data")
    duckdb_path: Path = Path("data/nw_lake.duckdb")
    # PostgreSQL / Supabase
    database_url: str | None = field(default=None, repr=False)
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "postgres"
    db_user: str = "postgres"
    db_password: str | None = _secret()
    db_sslmode: str | None = None
    db_sslrootcert: str | None = None
    db_schema: str = "public"
    db_pool_mode: str | None = None          # direct | session | transaction (None: told by the host name)
    db_connect_timeout: int = 3              # seconds for a connection to open and answer its first query
    sync_lock_lease_seconds: int = 60        # a sync's lock lapses this long after its last renewal (a killed run)
    # loading
    batch_size: int = 25_000
    truncate_before_load: bool = False
    max_retries: int = 5
    retry_base_seconds: float = 0.5
    retry_window_seconds: float = 7.0        # retries stop this long after a step's first failure (see nwlib.engine)
    cdc_lookback_seconds: float = 0.0
    duckdb_memory_limit: str = "auto"               # auto: sized to the lake (lake.files.auto_memory_limit)
    checks_file: Path | None = None             # CHECKS_FILE: quality checks run before publishing (see checks_path)
    metrics_file: Path | None = None            # Prometheus textfile-collector file written after each run
    pushgateway_url: str | None = None          # a Prometheus Pushgateway the run's metrics are pushed to
    dbt_project_dir: Path = Path("transform")   # the dbt project `nw transform` builds
    incremental_columns: Mapping[str, str] = field(default_factory=dict)
    append_only_tables: frozenset[str] = frozenset()
    full_replace_tables: frozenset[str] = frozenset()
    partition_columns: Mapping[str, str] = field(default_factory=dict)   # S3/Delta: table → partition column
    schema_changes: Mapping[str, str] = field(default_factory=dict)      # table → policy; "" → every other table (default evolve)
    lake_schemas: frozenset[str] | None = None                          # DuckDB schemas to sync (None: all)
    # S3 / Delta / Databricks (used by their destinations)
    s3_bucket_name: str | None = None
    s3_prefix: str = "raw"
    aws_region: str | None = None
    aws_access_key_id: str | None = _secret()
    aws_secret_access_key: str | None = _secret()
    aws_endpoint_url: str | None = None
    delta_uri: str | None = None
    databricks_host: str | None = None
    databricks_http_path: str | None = None
    databricks_token: str | None = _secret()
    databricks_catalog: str | None = None
    databricks_schema: str | None = None

    @property
    def uses_embedded_postgres(self) -> bool:
        return not self.database_url and not self.db_host

    @property
    def embedded_pgdata(self) -> Path:
        return self.destination_path / "pgdata"

    def postgres_params(self) -> dict[str, str]:
        """libpq keywords for the configured server (with the password: never print them).

        DATABASE_URL wins over DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD; DB_SSLMODE and DB_SSLROOTCERT
        apply to it too unless the URL sets them.  A malformed URL is a ConfigError naming no character
        of its password (see :mod:`nwlib.connstr`)."""
        if self.database_url:
            params = connstr.parse_url(self.database_url)
            if self.db_sslmode and "sslmode" not in params:
                params["sslmode"] = self.db_sslmode
            if self.db_sslrootcert and "sslrootcert" not in params:
                params["sslrootcert"] = self.db_sslrootcert
            return params
        if not self.db_host:
            raise ConfigError("no PostgreSQL server configured", "set DB_HOST or DATABASE_URL, or use the embedded default")
        return connstr.from_parts(self.db_host, self.db_port, self.db_name, self.db_user, self.db_password,
                                  self.db_sslmode, self.db_sslrootcert)

    def connection_mode(self, params: Mapping[str, str] | None = None) -> str:
        """Direct, session pooler or transaction pooler (DB_POOL_MODE, else told by the host: Supabase's pooler)."""
        if params is None:
            params = {} if self.uses_embedded_postgres else self.postgres_params()
        if self.uses_embedded_postgres:
            return connstr.DIRECT
        return connstr.connection_mode(params, self.db_pool_mode, self.database_url)

    @property
    def duckdb_memory_auto(self) -> bool:
        """DUCKDB_MEMORY_LIMIT=auto: each DuckDB instance sizes its own budget (the lake's: lake.files.auto_memory_limit)."""
        return self.duckdb_memory_limit.strip().lower() == "auto"

    @property
    def checks_path(self) -> Path:
        """The quality checks' file: CHECKS_FILE, else ``checks.yml`` in the current folder (absent: no checks)."""
        return self.checks_file or Path("checks.yml")

    def schema_policy(self, table: str) -> str:
        """SCHEMA_CHANGES for ``table``: its own entry, else the default, else evolve."""
        return self.schema_changes.get(table) or self.schema_changes.get("") or EVOLVE

    def secrets(self) -> list[str]:
        """Values that must never appear in output, in every form they may be written in (used by redaction)."""
        found = [self.db_password, self.aws_secret_access_key, self.databricks_token, self.aws_access_key_id]
        # https://user:password@host (a DELTA_URI or host without a scheme is a path or a name: "/d/v:2024@x" holds none)
        for url, schemeless in ((self.pushgateway_url, True), (self.aws_endpoint_url, True), (self.delta_uri, False),
                                (self.databricks_host, False)):
            if url:
                found += connstr.raw_passwords(url, schemeless)
        if self.database_url:
            try:
                found.append(connstr.parse_url(self.database_url).get("password"))
            except ConfigError:   # refused before any connection, by a line that names no part of it
                found += connstr.raw_passwords(self.database_url)
        forms = set()
        for s in filter(None, found):
            forms.update({s, unquote(s), quote(s, safe=""), quote(s)})
        return sorted((s for s in forms if s), key=len, reverse=True)

    def shown_url(self, url: str) -> str:
        """A URL of these settings as output may show it: its password masked, by the secrets and by its form."""
        return connstr.mask_userinfo(self.redact(url))

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``.

        A secret of four characters or more goes wherever it stands as a whole (not inside a longer word:
        a password ``postgres`` leaves ``postgresql://`` alone); a shorter one only where it stands as a
        password (``:a@``, ``password=a``), so a one-letter password does not mask every ``a``."""
        for secret in self.secrets():
            text = _redact_one(text, secret)
        return text


_WORD = re.compile(r"[A-Za-z0-9]")


def _redact_one(text: str, secret: str) -> str:
    if secret not in text:
        return text
    body = re.escape(secret)
    if len(secret) < 4:
        return re.sub(rf"(?<=:){body}(?=@)|(?<=password=){body}(?=$|[\s&'\"])|(?<=password ')(?:{body})(?=')", "***", text,
                      flags=re.IGNORECASE)
    before = r"(?<![A-Za-z0-9])" if _WORD.match(secret[0]) else ""
    after = r"(?![A-Za-z0-9])" if _WORD.match(secret[-1]) else ""
    return re.sub(before + body + after, "***", text)


def checked_endpoint(raw: str | None, name: str = "AWS_ENDPOINT_URL") -> str | None:
    """AWS_ENDPOINT_URL as the S3 and Delta destinations use it: empty (AWS itself) or an http(s) URL."""
    value = (raw or "").strip()
    if value and not re.match(r"https?://[^/\s]", value, re.IGNORECASE):
        shown = connstr.mask_userinfo(value) if "://" in value else value.rpartition("@")[2]   # never a password
        raise ConfigError(f"{name}={shown!r} is not an http(s) URL",
                          f"write it with its scheme, e.g. {name}=http://127.0.0.1:9000 (or leave it empty for AWS itself)")
    return value or None


def checked_delta_uri(raw: str | None, name: str = "DELTA_URI") -> str | None:
    """A local folder (a path, or ``file://``) or ``s3://bucket/folder`` (``s3a://`` too): any other scheme, or a typo
    such as ``s3:/bucket``, would have become a folder of that name under the current directory."""
    value = (raw or "").strip()
    if value.lower().startswith("file:"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{name}={value!r} names another machine", f"write {name} as a local folder or s3://bucket/folder")
        return url2pathname(parts.path) or None
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):/", value)       # a URL's scheme (a drive letter is one letter)
    if scheme and len(scheme.group(1)) > 1 and not re.match(r"s3a?://[^/\s]", value):
        raise ConfigError(f"{name}={connstr.mask_userinfo(value)!r} is neither a local folder nor s3://bucket/folder",
                          f"write {name}=s3://bucket/folder (lower-case s3, two slashes) or a folder path")
    return value or None


def redact_url(url: str) -> str:
    """``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db`` (also when the URL does not parse)."""
    return connstr.redact_url(url)


# --- parsing -----------------------------------------------------------------

def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer", f"set {name} to a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below {minimum}", f"set {name} to {minimum} or more")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number", f"set {name} to a number such as 0.5") from None
    if value < 0 or value != value:
        raise ConfigError(f"{name}={raw!r} must be zero or more", f"set {name} to a number such as 0.5")
    return value


def _bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on", "sim"):
        return True
    if v in ("0", "false", "no", "off", "nao", "não", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean", f"set {name} to true or false")


def _names(raw: str) -> frozenset[str]:
    return frozenset(x.strip() for x in raw.split(",") if x.strip())


def _pairs(name: str, raw: str) -> dict[str, str]:
    out = {}
    for item in filter(None, (x.strip() for x in raw.split(","))):
        table, sep, column = item.partition("=")
        if not sep or not table.strip() or not column.strip():
            raise ConfigError(f"{name} entry {item!r} is not table=column", f"write {name} as table=column,table2=column2")
        out[table.strip()] = column.strip()
    return out


def _policies(name: str, raw: str) -> dict[str, str]:
    """``evolve`` or ``freeze,pedidos=evolve``: a bare policy is the default, ``table=policy`` one table's."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in raw.split(","))):
        table, sep, policy = item.rpartition("=") if "=" in item else ("", "", item)
        policy = policy.strip().lower()
        if policy not in SCHEMA_POLICIES or (sep and not table.strip()):
            raise ConfigError(f"{name} entry {item!r} is not valid", f"use {' | '.join(SCHEMA_POLICIES)}, optionally per table: {name}=evolve,pedidos=freeze")
        out[table.strip()] = policy
    return out


def _destination(name: str, raw: str) -> str:
    key = raw.strip().upper()
    key = DESTINATION_ALIASES.get(key, key)
    if key not in DESTINATION_TYPES:
        valid = ", ".join(sorted(DESTINATION_TYPES) + sorted(DESTINATION_ALIASES))
        raise ConfigError(f"{name}={raw!r} is not a known destination", f"use one of: {valid}")
    return key


_PARSERS = {
    "DESTINATION_TYPE": ("destination_type", _destination),
    "DESTINATION_PATH": ("destination_path", lambda n, v: Path(v)),
    "DUCKDB_PATH": ("duckdb_path", lambda n, v: Path(v)),
    "DATABASE_URL": ("database_url", lambda n, v: v.strip() or None),
    "DB_HOST": ("db_host", lambda n, v: v.strip() or None),
    "DB_PORT": ("db_port", lambda n, v: _int(n, v, 1)),
    "DB_NAME": ("db_name", lambda n, v: v),
    "DB_USER": ("db_user", lambda n, v: v),
    "DB_PASSWORD": ("db_password", lambda n, v: v or None),
    "DB_SSLMODE": ("db_sslmode", lambda n, v: _choice(n, v, SSL_MODES)),
    "DB_SSLROOTCERT": ("db_sslrootcert", lambda n, v: v or None),
    "DB_SCHEMA": ("db_schema", lambda n, v: _nonempty(n, v)),
    "DB_POOL_MODE": ("db_pool_mode", lambda n, v: _choice(n, v, POOL_MODES)),
    "DB_CONNECT_TIMEOUT": ("db_connect_timeout", lambda n, v: _int(n, v, 2)),
    "SYNC_LOCK_LEASE_SECONDS": ("sync_lock_lease_seconds", lambda n, v: _int(n, v, 2)),
    "BATCH_SIZE": ("batch_size", lambda n, v: _int(n, v, 1)),
    "TRUNCATE_BEFORE_LOAD": ("truncate_before_load", _bool),
    "MAX_RETRIES": ("max_retries", lambda n, v: _int(n, v, 0)),
    "RETRY_BASE_SECONDS": ("retry_base_seconds", _float),
    "RETRY_WINDOW_SECONDS": ("retry_window_seconds", _float),
    "CDC_LOOKBACK_SECONDS": ("cdc_lookback_seconds", _float),
    "DUCKDB_MEMORY_LIMIT": ("duckdb_memory_limit", lambda n, v: _nonempty(n, v)),
    "CHECKS_FILE": ("checks_file", lambda n, v: Path(v) if v.strip() else None),
    "METRICS_FILE": ("metrics_file", lambda n, v: Path(v) if v.strip() else None),
    "PUSHGATEWAY_URL": ("pushgateway_url", lambda n, v: v.strip() or None),
    "DBT_PROJECT_DIR": ("dbt_project_dir", lambda n, v: Path(v)),
    "INCREMENTAL_COLUMNS": ("incremental_columns", _pairs),
    "APPEND_ONLY_TABLES": ("append_only_tables", lambda n, v: _names(v)),
    "FULL_REPLACE_TABLES": ("full_replace_tables", lambda n, v: _names(v)),
    "PARTITION_COLUMNS": ("partition_columns", _pairs),
    "SCHEMA_CHANGES": ("schema_changes", _policies),
    "LAKE_SCHEMAS": ("lake_schemas", lambda n, v: _names(v) or None),
    "S3_BUCKET_NAME": ("s3_bucket_name", lambda n, v: v.strip() or None),
    "S3_PREFIX": ("s3_prefix", lambda n, v: v.strip().strip("/")),
    "AWS_REGION": ("aws_region", lambda n, v: v.strip() or None),
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", lambda n, v: v.strip() or None),
    "AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", lambda n, v: v.strip() or None),
    "AWS_ENDPOINT_URL": ("aws_endpoint_url", lambda n, v: v.strip() or None),
    "DELTA_URI": ("delta_uri", lambda n, v: v.strip() or None),
    "DATABRICKS_HOST": ("databricks_host", lambda n, v: v.strip() or None),
    "DATABRICKS_HTTP_PATH": ("databricks_http_path", lambda n, v: v.strip() or None),
    "DATABRICKS_TOKEN": ("databricks_token", lambda n, v: v.strip() or None),
    "DATABRICKS_CATALOG": ("databricks_catalog", lambda n, v: v.strip() or None),
    "DATABRICKS_SCHEMA": ("databricks_schema", lambda n, v: v.strip() or None),
}
ENV_VARS = tuple(_PARSERS)


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str | None:
    v = raw.strip().lower()
    if not v:
        return None
    if v not in choices:
        raise ConfigError(f"{name}={raw!r} is not valid", f"use one of: {', '.join(choices)}")
    return v


def _nonempty(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name} is empty", f"set {name} or remove it from the environment")
    return raw.strip()


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        from dotenv import dotenv_values
    except ImportError:  # python-dotenv is a core dependency; keep working without it
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


# Where a setting's value came from (``nw config``), weakest first.
DEFAULT, DOTENV, ENVIRONMENT, FLAG = "default", ".env", "environment", "flag"


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    dotenv: Path | str | None = ".env",
) -> Settings:
    """Read settings from ``.env`` + environment (+ overrides by field name).

    ``env=None`` means ``os.environ``; tests pass a dict for isolation.
    ``overrides`` uses field names (``duckdb_path``) or variable names
    (``DUCKDB_PATH``); ``None`` values are ignored, so CLI flags can be passed
    through as they are.
    """
    return _load(env, overrides, dotenv)[0]


def _load(env, overrides, dotenv) -> tuple[Settings, dict[str, str]]:
    """The settings, and for each variable set anywhere where its value came from (DOTENV, ENVIRONMENT, FLAG)."""
    source: dict[str, str] = {}
    origin: dict[str, str] = {}
    if dotenv is not None:
        found = _read_dotenv(Path(dotenv))
        source.update(found)
        origin.update(dict.fromkeys(found, DOTENV))
    environment = os.environ if env is None else env
    source.update(environment)
    origin.update(dict.fromkeys(environment, ENVIRONMENT))

    values: dict[str, object] = {}
    for var, (attr, parse) in _PARSERS.items():
        if var in source:
            values[attr] = parse(var, source[var])
    by_field = {attr: (var, parse) for var, (attr, parse) in _PARSERS.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        attr = _PARSERS[key][0] if key in _PARSERS else key
        if attr not in by_field:
            raise ConfigError(f"unknown setting {key!r}", f"use one of: {', '.join(sorted(by_field))}")
        var, parse = by_field[attr]
        values[attr] = parse(var, value) if isinstance(value, str) else value
        origin[var] = FLAG

    settings = Settings(**values)
    return _resolve_paths(settings, explicit_lake="duckdb_path" in values), {v: origin[v] for v in _PARSERS if v in origin}


@dataclass(frozen=True)
class Effective:
    """One setting as a run would use it: its variable, its value (secrets masked) and where it came from."""

    variable: str          # DATABASE_URL
    field: str             # database_url
    value: object          # JSON-able: str, int, float, bool, list, dict or None; secrets masked
    source: str            # DEFAULT | DOTENV | ENVIRONMENT | FLAG


def effective_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    dotenv: Path | str | None = ".env",
) -> list[Effective]:
    """Every setting :func:`load_settings` would give (same arguments), with where its value came from.

    Overrides are CLI flags (FLAG); a default that follows another setting (the lake under DESTINATION_PATH)
    stays DEFAULT.  Passwords (in DATABASE_URL too), S3 keys and tokens are masked."""
    settings, origin = _load(env, overrides, dotenv)
    return [Effective(var, attr, _shown(settings, attr), origin.get(var, DEFAULT)) for var, (attr, _) in _PARSERS.items()]


def _shown(settings: Settings, attr: str) -> object:
    value = getattr(settings, attr)
    if value is None:
        return None
    if attr in _URL_FIELDS:
        return redact_url(value) if attr == "database_url" else settings.shown_url(value)
    if attr in _SECRET_FIELDS:
        return "***"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _resolve_paths(s: Settings, explicit_lake: bool) -> Settings:
    dest = Path(s.destination_path).expanduser()
    lake = Path(s.duckdb_path).expanduser() if explicit_lake else Path("nw_lake.duckdb")
    if not lake.is_absolute():
        # Seed rule: DUCKDB_PATH is relative to DESTINATION_PATH, unless it already
        # starts with it (people write DUCKDB_PATH=data/x.duckdb too).
        if not (lake.parts and dest.parts and lake.parts[: len(dest.parts)] == dest.parts):
            lake = dest / lake
    return replace(s, destination_path=dest, duckdb_path=lake)


_SECRET_FIELDS = frozenset(f.name for f in fields(Settings) if not f.repr)
_URL_FIELDS = frozenset({"database_url", "pushgateway_url", "aws_endpoint_url", "delta_uri", "databricks_host"})   # shown without a password


def describe(settings: Settings) -> dict[str, str]:
    """A printable view of the settings, secrets masked."""
    out = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if not f.repr:
            value = "***" if value else None
        out[f.name] = str(value) if value is not None else ""
    return out
