"""What the S3, Delta and Databricks destinations share: object-store access,
one-line errors, and a sync lock kept as an object beside the data.

The lock is an object created only if absent (S3 ``If-None-Match: *`` or
``O_CREAT|O_EXCL`` on a local folder).  It names its holder (host, pid, time);
a lock whose process is gone on this host, or older than
``LOCK_STALE_SECONDS``, is stale and taken over, so a killed sync never
blocks the next one.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError, DestinationError, NwError, SourceModelError, SyncInProgress, first_line, missing_dependency
from ..model import APPEND
from ..records import now
from ..settings import Settings

LOCK_STALE_SECONDS = 6 * 3600
TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "503", "500", "Throttling"}
TRANSIENT_TEXT = ("connection refused", "could not connect", "connection reset", "timed out", "timeout", "temporarily unavailable",
                  "broken pipe", "endpoint url", "dns error", "error sending request", "connection error", "slow down")


def _causes(exc: BaseException) -> str:
    """The error's text without a Rust backtrace (lines like ``  12: frame``)."""
    lines = []
    for line in str(exc).splitlines():
        if re.match(r"^\s+\d+: ", line):
            break
        lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str          # without leading/trailing slash; may be ''

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


def parse_s3_uri(uri: str) -> S3Location:
    parts = urlsplit(uri)
    if parts.scheme not in ("s3", "s3a") or not parts.netloc:
        raise ConfigError(f"{uri!r} is not an s3:// URI", "write it as s3://bucket/folder")
    return S3Location(parts.netloc, parts.path.strip("/"))


def boto3_client(settings: Settings):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise missing_dependency("boto3", "s3") from None
    cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                 s3={"addressing_style": "path"} if settings.aws_endpoint_url else None)
    return boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region or "us-east-1",
                        aws_access_key_id=settings.aws_access_key_id, aws_secret_access_key=settings.aws_secret_access_key, config=cfg)


def delta_storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs (object_store) options for s3:// URIs.

    nwlib's own lock object serialises writers, so delta-rs may use plain
    renames (``AWS_S3_ALLOW_UNSAFE_RENAME``) on stores without a commit lock."""
    opts = {"AWS_REGION": settings.aws_region or "us-east-1", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    if settings.aws_access_key_id:
        opts["AWS_ACCESS_KEY_ID"] = settings.aws_access_key_id
    if settings.aws_secret_access_key:
        opts["AWS_SECRET_ACCESS_KEY"] = settings.aws_secret_access_key
    if settings.aws_endpoint_url:
        opts["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if settings.aws_endpoint_url.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_s3(con, settings: Settings) -> bool:
    """Load httpfs and give it the S3 settings; False when httpfs cannot load (use pyarrow)."""
    from ..lake import load_extension

    if not load_extension(con, "httpfs"):
        return False
    opts = {"REGION": settings.aws_region or "us-east-1"}
    if settings.aws_access_key_id:
        opts["KEY_ID"] = settings.aws_access_key_id
    if settings.aws_secret_access_key:
        opts["SECRET"] = settings.aws_secret_access_key
    extra = ""
    if settings.aws_endpoint_url:
        ep = urlsplit(settings.aws_endpoint_url)
        opts["ENDPOINT"] = ep.netloc or ep.path
        opts["URL_STYLE"] = "path"
        extra = f", USE_SSL {'false' if ep.scheme == 'http' else 'true'}"
    # CREATE SECRET takes no bound parameters: values are quoted as SQL strings.
    body = ", ".join(f"{k} {_sql_str(v)}" for k, v in opts.items())
    con.execute(f"CREATE OR REPLACE SECRET nw_s3 (TYPE s3, {body}{extra})")
    return True


def pyarrow_s3(settings: Settings):
    from pyarrow import fs

    kw = {"region": settings.aws_region or "us-east-1", "access_key": settings.aws_access_key_id, "secret_key": settings.aws_secret_access_key}
    if settings.aws_endpoint_url:
        ep = urlsplit(settings.aws_endpoint_url)
        kw.update(endpoint_override=ep.netloc, scheme=ep.scheme or "https", force_virtual_addressing=False)
    return fs.S3FileSystem(**{k: v for k, v in kw.items() if v is not None})


@contextlib.contextmanager
def errors_as_one_line(settings: Settings, where: str, what: str, types: tuple[type, ...]) -> Iterator[None]:
    """Errors of ``types`` inside become one-line ``DestinationError``s naming ``where`` and ``what`` (NwErrors pass)."""
    try:
        yield
    except NwError:
        raise
    except types as exc:
        raise classify(exc, settings, where, what) from None


def classify(exc: BaseException, settings: Settings, where: str, what: str) -> DestinationError:
    """One clear line for an S3 / delta-rs failure, transient when a retry may help."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    text = settings.redact(first_line(exc))
    if text.rstrip().endswith(":"):      # botocore: "Parameter validation failed:", the reason on the next line
        text = settings.redact(" ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:300])
    low = settings.redact(_causes(exc)).lower()   # delta-rs puts the cause on later lines; only the first is shown
    prefix = f"{where}: " if where else ""
    if code in ("NoSuchBucket",) or "nosuchbucket" in low or "bucket does not exist" in low or code == "404" and "bucket" in where:
        return DestinationError(f"{prefix}bucket of {what} does not exist", "create it or fix S3_BUCKET_NAME / DELTA_URI")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken") or "invalidaccesskeyid" in low \
            or "signaturedoesnotmatch" in low:
        return DestinationError(f"{prefix}S3 refused the credentials for {what} ({code or 'invalid key'})",
                                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if code in ("AccessDenied", "403", "AllAccessDisabled") or "access denied" in low or "forbidden" in low:
        return DestinationError(f"{prefix}access denied to {what}", "grant the credentials s3:GetObject/PutObject/ListBucket/DeleteObject there")
    name = type(exc).__name__
    if ("custom endpoint" in low and "not a valid uri" in low) or "invalid endpoint" in low:
        return DestinationError(f"{prefix}AWS_ENDPOINT_URL is not a URL boto3 can use ({text})",
                                "write it as http(s)://host:port, with a port up to 65535 and no user information")
    if code in TRANSIENT_CODES or name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError") \
            or any(t in low for t in TRANSIENT_TEXT):
        endpoint = settings.shown_url(settings.aws_endpoint_url) if settings.aws_endpoint_url else "AWS S3"
        return DestinationError(f"{prefix}cannot reach {endpoint} for {what}: {text}",
                                "check AWS_ENDPOINT_URL / the network; the run retries MAX_RETRIES times", transient=True)
    return DestinationError(f"{prefix}{what}: {text}", "see controle_cargas for the run; fix the cause and rerun")


# --- the lock ------------------------------------------------------------------------

def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": now().isoformat()}


def running_line(body: bytes, age_seconds: float | None) -> str:
    """`nw status`'s line for a lock file's content."""
    try:
        info = json.loads(body)
    except ValueError:
        info = {}
    lapsed = " — it looks stale: the next run takes over" if _stale(body, age_seconds) else ""
    return f"a sync is running: on {info.get('host', '?')}, pid {info.get('pid', '?')}, since {info.get('since', '?')}{lapsed}"


def _stale(body: bytes, age_seconds: float | None) -> bool:
    try:
        info = json.loads(body)
    except ValueError:
        # Unreadable: a writer may be mid-way (S3 stores whole objects, but be safe): stale only when old.
        return age_seconds is not None and age_seconds > 60
    if age_seconds is not None and age_seconds > LOCK_STALE_SECONDS:
        return True
    if info.get("host") == socket.gethostname():
        pid = int(info.get("pid") or 0)
        if pid <= 0:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


class S3Lock:
    def __init__(self, client, bucket: str, key: str, settings: Settings, what: str):
        self.client, self.bucket, self.key, self.settings, self.what = client, bucket, key, settings, what

    def _try(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(_holder()).encode(), IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise

    @contextlib.contextmanager
    def __call__(self):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            got = self._try()
            if not got:
                obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
                age = (now() - obj["LastModified"]).total_seconds()
                if _stale(obj["Body"].read(), age):
                    self.client.delete_object(Bucket=self.bucket, Key=self.key)
                    got = self._try()
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, self.settings, "lock", self.what) from None
        if not got:
            raise SyncInProgress(f"another sync holds the lock s3://{self.bucket}/{self.key}",
                                 "wait for it to finish (see `nw status`); a dead run's lock expires by itself")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=self.key)


    def running(self) -> str | None:
        """`nw status`'s line about the run holding this lock, or None."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise classify(exc, self.settings, "lock", self.what) from None
        except BotoCoreError as exc:
            raise classify(exc, self.settings, "lock", self.what) from None
        return running_line(obj["Body"].read(), (now() - obj["LastModified"]).total_seconds())


class FileLock:
    def __init__(self, path: Path):
        self.path = path

    def _try(self) -> bool:
        # Write the holder to a private file, then link it into place: the lock appears
        # complete or not at all (an O_EXCL create left it empty for a moment, and a
        # second run starting at that instant read "unreadable" as "stale" and took it too).
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.write_text(json.dumps(_holder()))
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def running(self) -> str | None:
        """`nw status`'s line about the run holding this lock, or None."""
        try:
            return running_line(self.path.read_bytes(), time.time() - self.path.stat().st_mtime)
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def __call__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        got = self._try()
        if not got:
            try:
                age = time.time() - self.path.stat().st_mtime
                stale = _stale(self.path.read_bytes(), age)
            except FileNotFoundError:
                stale = True
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                got = self._try()
        if not got:
            raise SyncInProgress(f"another sync holds the lock {self.path}",
                                 "wait for it to finish (see `nw status`); a dead run's lock expires by itself")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def column_changes(spec, old: dict[str, str], full_refresh: bool, partition_columns) -> tuple[tuple[str, ...], bool]:
    """Compare the columns a file-based destination last wrote (``old``, empty if never) with ``spec``'s.

    Returns the notes for the run history and whether the table must be written
    again whole: a column whose type changed (files of one table share their
    types), or a new column of an append-only table (its old rows lack it; a
    keyed table's rows all change fingerprint and are re-sent anyway).  A
    PARTITION_COLUMNS entry naming a column the table does not have stops it.
    """
    column = partition_columns.get(spec.name)
    if column and column not in spec.column_names:
        raise SourceModelError(f"PARTITION_COLUMNS names {spec.name}.{column}, which does not exist", "fix PARTITION_COLUMNS")
    if not old:  # first write: nothing to compare with
        return (), False
    notes: list[str] = []
    rewrite = False
    for c in spec.columns:
        if c.name not in old:
            notes.append(f"added column {c.name} {c.type}")
            rewrite = rewrite or spec.mode == APPEND
        elif old[c.name] != c.type:
            notes.append(f"rewrote table for column {c.name} {old[c.name]} -> {c.type}")
            rewrite = True
    for name in old:
        if name not in spec.column_names:
            notes.append(f"column {name} is no longer in the lake: kept, new rows leave it empty")
    return tuple(notes), rewrite or (full_refresh and bool(notes))


def rekeyed(specs, old_columns, rewritten: set[str]) -> set[str]:
    """Tables written again whole this run whose files lack a key column (renamed in the lake): what they hold
    cannot be read by the new key, and need not be: the rewrite replaces it (see :func:`.base.nothing_held`)."""
    return {s.name for s in specs if s.name in rewritten and old_columns.get(s.name)
            and any(k not in old_columns[s.name] for k in s.primary_key)}


def prepare_files(specs, old_columns, full_refresh: frozenset[str], partition_columns,
                  reserved) -> tuple[dict[str, tuple[str, ...]], set[str], dict[str, str]]:
    """What a file-based destination's ``prepare`` decides for each table, by :func:`column_changes`.

    ``old_columns[name]``: the columns last written (name → type); ``reserved(spec)``: why a table's names
    collide with the layout, or None.  Returns (notes per table, tables to write again whole, errors per table)."""
    notes: dict[str, tuple[str, ...]] = {}
    rewrite: set[str] = set()
    errors: dict[str, str] = {}
    for spec in specs:
        clash = reserved(spec)
        if clash:
            errors[spec.name] = clash
            continue
        try:
            mine, whole = column_changes(spec, old_columns.get(spec.name, {}), spec.name in full_refresh, partition_columns)
        except NwError as exc:
            errors[spec.name] = str(exc)
            continue
        if whole:
            rewrite.add(spec.name)
        if mine:
            notes[spec.name] = mine
    return notes, rewrite, errors
