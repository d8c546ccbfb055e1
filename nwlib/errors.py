"""Every error nwlib raises on purpose.

Each message says what is wrong and what to do about it, in one line, so the
CLI, the notebooks and the dashboard can show it as it is.  Anything that is
not an ``NwError`` is a bug in nwlib and keeps its traceback.
"""
from __future__ import annotations


HINT = " — "      # between what is wrong and what to do, in every message


class NwError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user: what is wrong, then (after :data:`HINT`) what to do."""

    exit_code = 1

    def __init__(self, what: str, hint: str | None = None):
        self.what = what
        self.hint = hint
        super().__init__(f"{what}{HINT}{hint}" if hint else what)


class ConfigError(NwError):
    """A setting is missing or malformed (names the variable)."""

    exit_code = 2


class LakeError(NwError):
    """The DuckDB lake file is missing, locked, truncated or not DuckDB."""

    exit_code = 3


class SourceModelError(NwError):
    """table_metadata / fk_metadata / declared constraints do not add up."""

    exit_code = 3


class DestinationError(NwError):
    """The destination refused or failed; ``transient`` says if a retry may help."""

    exit_code = 4

    def __init__(self, what: str, hint: str | None = None, *, transient: bool = False):
        super().__init__(what, hint)
        self.transient = transient


class SchemaChangeError(NwError):
    """The lake's schema changed in a way the destination cannot follow by itself."""

    exit_code = 5


class SyncInProgress(NwError):
    """Another sync holds the destination's lock."""

    exit_code = 6


class InputRejected(NwError):
    """Input typed into the dashboard or a notebook (a row, a filter, a table) is not valid; names what and the fix."""

    exit_code = 2


class MissingDependency(NwError):
    """An optional driver is not installed."""

    exit_code = 2


class SyncFailed(NwError):
    """One or more tables failed; the report says which."""

    exit_code = 1


class VerifyMismatch(NwError):
    """``nw verify`` found a difference between the lake and the destination."""

    exit_code = 1


class TablesBehind(NwError):
    """``nw status``: a table's destination does not hold the lake's rows (differs, never synced, or not known to agree)."""

    exit_code = 7


class LastRunFailed(NwError):
    """``nw status``: a table failed in its last run."""

    exit_code = 8


class QualityGateFailed(NwError):
    """A quality check of severity ``error`` failed: its table (and those depending on it) were not published."""

    exit_code = 9


class TransformFailed(NwError):
    """``dbt build`` failed: a model did not build or a test (severity error) failed; nothing was published."""

    exit_code = 10
    result = None     # the dbt run's nwlib.transform.TransformResult, when dbt got as far as running nodes
    report = None     # `nw run`: the run as recorded (nwlib.model.SyncReport of the failed steps, nothing published)


def split_hint(message: str) -> tuple[str, str | None]:
    """A message as ``NwError`` writes it, back into (what is wrong, what to do or None).

    Messages kept as text (a table report's error, a ledger row's ``erro``) put the hint after the last
    :data:`HINT`, so code that wraps one in a longer message can say the hint once, at its end."""
    what, sep, hint = message.rpartition(HINT)
    return (what, hint.strip() or None) if sep and what.strip() else (message, None)


def is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C as a library reports it: KeyboardInterrupt itself, DuckDB's interrupt error ("Query
    interrupted"), or an error whose text or cause is the KeyboardInterrupt.  Code that catches broad
    errors to fall back lets these through (:func:`reraise_interrupt`)."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "InterruptException":
            return True
        text = str(exc)
        if "Query interrupted" in text or "KeyboardInterrupt" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def reraise_interrupt(exc: BaseException) -> None:
    """Inside an ``except`` that falls back: a Ctrl-C is not a reason to fall back, it stops the run."""
    if is_interrupt(exc):
        raise KeyboardInterrupt from None


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an error's text (drivers put details on later lines), or its type name."""
    text = exc if isinstance(exc, str) else str(exc)
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return "" if isinstance(exc, str) else type(exc).__name__


def missing_dependency(package: str, extra: str | None = None) -> MissingDependency:
    fix = f'pip install "nwlib[{extra}]"' if extra else f"pip install {package}"
    return MissingDependency(f"the optional package '{package}' is not installed", f"run: {fix}")

