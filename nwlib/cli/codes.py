"""Every code ``nw`` exits with."""
from __future__ import annotations

# Every code nw exits with (README, "Command line", has the same table; a test keeps each NwError's code here).
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "ok; for `nw status`: every table in sync and its last run ok"),
    (1, "a table failed (SyncFailed), `nw verify` found a difference (VerifyMismatch)"),
    (2, "usage error (bad flag or option); a setting missing or malformed (ConfigError); bad input (InputRejected); "
        "an optional driver not installed (MissingDependency)"),
    (3, "the lake file is missing, locked or not DuckDB (LakeError); its metadata does not add up (SourceModelError)"),
    (4, "the destination refused or failed: connection, password, permissions (DestinationError)"),
    (5, "a schema change the destination cannot follow under SCHEMA_CHANGES (SchemaChangeError)"),
    (6, "another sync holds the destination's lock (SyncInProgress)"),
    (7, "`nw status`: a table is behind the lake (TablesBehind): differs, never synced, or unknown"),
    (8, "`nw status`: a table failed in its last run (LastRunFailed); it wins over 7"),
    (9, "`nw sync` / `nw run` / `nw check`: an error-severity quality check failed; its table and those depending on it "
        "were not published (QualityGateFailed)"),
    (10, "`nw transform` / `nw run`: a dbt model or test failed; nothing was published (TransformFailed)"),
    (70, "unexpected error: a bug in nwlib (NW_DEBUG=1 shows the traceback)"),
    (130, "interrupted (Ctrl-C); rerun the same command to finish"),
    (141, "the reader of the output went away (`nw runs | head -3`): the rest of the output was dropped, quietly"),
)
