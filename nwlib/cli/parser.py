"""``nw``'s argument parser: its commands, the option groups each takes, help with an example per command and
the exit-code table."""
from __future__ import annotations

import argparse

from .. import __version__
from ..settings import DESTINATION_ALIASES, DESTINATION_TYPES
from .codes import EXIT_CODES
from .commands import cmd_bootstrap, cmd_check, cmd_config, cmd_run, cmd_runs, cmd_status, cmd_sync, cmd_transform, cmd_verify


class _Help(argparse.HelpFormatter):
    """Descriptions and epilogs wrapped line by line (an indented line keeps its indent, a numbered one hangs),
    so examples and the exit-code table keep their shape; "(default: …)" added where an option's default is a value."""

    def __init__(self, prog, **kwargs):
        super().__init__(prog, **kwargs)
        self._action_max_length = 16      # room for the longest command name in `nw --help`

    def _fill_text(self, text, width, indent):
        import re
        import textwrap

        out = []
        for line in text.splitlines():
            lead, number = re.match(r"(\s*)(\d+\s+)?", line).groups()
            hang = lead + " " * len(number or "")
            out.append(textwrap.fill(line.strip(), width, initial_indent=indent + lead, subsequent_indent=indent + hang) or "")
        return "\n".join(out)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _destination_type(raw: str) -> str:
    return raw.strip().upper()


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{raw!r} must be more than 0")
    return value


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} must be 1 or more")
    return value


def _options() -> dict[str, argparse.ArgumentParser]:
    """Groups of options, given to the commands they apply to."""
    def group():
        return argparse.ArgumentParser(add_help=False, formatter_class=_Help)

    env = group()
    env.add_argument("--env-file", default=".env", metavar="PATH",
                     help="read settings from this .env file; the environment wins over it, flags over both")
    lake = group()
    lake.add_argument("--duckdb-path", metavar="PATH",
                      help="the lake file (overrides DUCKDB_PATH; default: DUCKDB_PATH, else DESTINATION_PATH/nw_lake.duckdb)")
    dest = group()
    aliases = ", ".join(f"{a}={t}" for a, t in DESTINATION_ALIASES.items())
    dest.add_argument("--destination-type", type=_destination_type, choices=DESTINATION_TYPES + tuple(DESTINATION_ALIASES),
                      metavar="TYPE", help=f"one of {', '.join(DESTINATION_TYPES)} (aliases: {aliases}); overrides DESTINATION_TYPE "
                                           "(default: DESTINATION_TYPE, else POSTGRES)")
    dest.add_argument("--database-url", metavar="URL",
                      help="PostgreSQL URL, postgresql://user:password@host:5432/db (overrides DATABASE_URL; default: "
                           "DATABASE_URL, else DB_HOST…, else an embedded server under DESTINATION_PATH)")
    dest.add_argument("--schema", metavar="NAME", help="destination schema (overrides DB_SCHEMA; default: DB_SCHEMA, else public)")
    batch = group()
    batch.add_argument("--batch-size", type=_positive, metavar="ROWS",
                       help="rows per transfer batch (overrides BATCH_SIZE; default: BATCH_SIZE, else 100000)")
    as_json = group()
    as_json.add_argument("--json", action="store_true",
                         help="print one JSON document on stdout instead of the table (errors stay one line on stderr; default: off)")
    tables = group()
    tables.add_argument("--tables", metavar="A,B", help="comma-separated tables (default: all)")
    dbt = group()
    dbt.add_argument("--select", default="", metavar="SPEC", help="dbt --select (default: every model)")
    dbt.add_argument("--full-refresh", action="store_true", help="dbt --full-refresh (default: off)")
    return {"env": env, "lake": lake, "dest": dest, "batch": batch, "json": as_json, "tables": tables, "dbt": dbt}


def _epilog(*examples: str, more: str = "") -> str:
    return "Example:\n" + "\n".join(f"  {e}" for e in examples) + (f"\n\n{more}" if more else "")


def exit_code_table() -> str:
    return "Exit codes:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES)


def build_parser() -> argparse.ArgumentParser:
    o = _options()
    p = argparse.ArgumentParser(
        prog="nw", formatter_class=_Help,
        description="Sync a DuckDB lake into PostgreSQL/Supabase, S3, Delta or Databricks, incrementally and exactly; "
                    "every run is recorded in the destination's controle_cargas.",
        epilog=_epilog("nw bootstrap && nw sync && nw status", "nw sync --json > run.json || echo \"sync failed: $?\"",
                       more="Settings come from flags, then the environment, then --env-file (.env); `nw config` shows "
                            "which. NW_DEBUG=1 shows tracebacks.\n\n" + exit_code_table()))
    p.add_argument("--version", action="version", version=f"nw {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, groups, summary, description, epilog):
        c = sub.add_parser(name, parents=[o[g] for g in groups], help=summary, description=description, epilog=epilog,
                           formatter_class=_Help)
        return c

    b = command("bootstrap", ("env", "lake"), "build the sample lake (or --mutate it)",
                "Write the sample lake (clientes, pedidos, itens_pedido, pagamentos, with table_metadata and fk_metadata) "
                "to the lake file, or with --mutate apply a batch of updates, inserts and deletes to it. Touches no destination.",
                _epilog("nw bootstrap --scale 2 && nw bootstrap --mutate --fraction 0.05"))
    b.add_argument("--scale", type=float, default=1, help="1 ≈ 1k clientes / 10k pedidos / 30k itens / 10k pagamentos")
    b.add_argument("--seed", type=int, default=42, help="same seed, same data")
    b.add_argument("--mutate", action="store_true", help="apply a batch of updates, inserts and deletes instead (default: off)")
    b.add_argument("--fraction", type=float, default=0.01, help="share of rows changed by --mutate")
    b.set_defaults(func=cmd_bootstrap)

    s = command("sync", ("env", "lake", "dest", "batch", "tables", "json"), "send changed rows to the destination",
                "Send what changed in the lake since the last run (inserts, updates, deletes) to the destination, table by "
                "table in foreign-key order, and record the run in controle_cargas. The quality checks of CHECKS_FILE run "
                "first: a table failing an error check, and the tables depending on it, are held back (exit 9). A table "
                "that fails does not stop independent ones; exit 1 names it.",
                _epilog("nw sync --tables clientes,pedidos --dry-run", "nw sync --watch --no-progress", more="--json prints the report as JSON (keys: run_id, "
                        "destination, dry_run, ok, ledger_error, checks[], steps[], tables[]) and shows no progress bar."))
    s.add_argument("--full-refresh", action="store_true",
                   help="ignore watermarks: resend whole tables, delete what the lake lacks (default: off)")
    s.add_argument("--dry-run", action="store_true", help="show the load order and rows to send; change nothing (default: off)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (default: shown)")
    keep = s.add_mutually_exclusive_group()
    keep.add_argument("--watch", action="store_true",
                      help="stay running and sync whenever the lake changes, one line per sync, until Ctrl-C (default: off)")
    keep.add_argument("--every", type=_seconds, metavar="SECONDS",
                      help="stay running and sync every SECONDS (at most one sync at a time) until Ctrl-C (default: off)")
    s.set_defaults(func=cmd_sync)

    st = command("status", ("env", "lake", "dest", "json"), "per table: in sync or behind, last run, lag",
                 "Per table: rows in the lake and in the destination, whether they differ (from the row count and fingerprint "
                 "sum the destination recorded, without reading its rows), lag, last run. A table is behind when that "
                 "comparison is not 'in sync': 'differs' (rows changed in the lake since), 'never synced', or 'unknown' "
                 "(nothing recorded to compare with, e.g. after a change of fingerprint function); `nw sync` catches "
                 "each up.",
                 _epilog("nw status --json | jq '.behind'", more="Exit 0: every table in sync and its last run ok; 7: a table "
                         "is behind; 8: a table failed in its last run (wins over 7)."))
    st.set_defaults(func=cmd_status)

    v = command("verify", ("env", "lake", "dest", "batch", "tables", "json"), "compare every table, lake vs destination",
                "Read every row of each table from the destination and compare it with the lake, value for value; "
                "exit 1 when any table differs.",
                _epilog("nw verify --tables pedidos --json"))
    v.set_defaults(func=cmd_verify)

    r = command("runs", ("env", "dest", "json"), "list past runs from controle_cargas",
                "The run history the destination's controle_cargas holds: one line per run with its id, start, finish, "
                "status (failed when any table failed), number of tables, rows inserted/updated/deleted, seconds.",
                _epilog("nw runs --limit 5"))
    r.add_argument("--limit", type=_positive, default=20, metavar="N", help="show the newest N runs")
    r.set_defaults(func=cmd_runs)

    t = command("transform", ("env", "lake", "dbt", "json"), "build the dbt project inside the lake (models, then tests)",
                "dbt build of the project in DBT_PROJECT_DIR (dbt-core + dbt-duckdb, offline) on the lake file: its models, "
                "then their tests. dbt's lines stream to stderr as it goes. A model or test that fails is one line naming it "
                "(exit 10); nothing is published.",
                _epilog("nw transform --select cliente_valor+"))
    t.add_argument("--no-progress", action="store_true", help="do not stream dbt's lines (default: streamed)")
    t.set_defaults(func=cmd_transform)

    k = command("check", ("env", "lake", "dest", "tables", "json"), "run the quality checks alone (publish nothing)",
                "Run the checks of CHECKS_FILE (checks.yml) on the lake: each check's result, its bad rows and a sample of "
                "their keys, and which tables a sync would hold back. The destination is asked only for the last published "
                "row counts (row_count_change). Exit 9 when an error-severity check fails.",
                _epilog("nw check --tables pedidos,clientes", "nw check --json | jq '.held'"))
    k.set_defaults(func=cmd_check)

    rn = command("run", ("env", "lake", "dest", "batch", "tables", "dbt", "json"), "transform → check → sync, one run id",
                 "The pipeline: dbt build (as nw transform), then the quality checks, then the sync of what passed, all "
                 "recorded in controle_cargas under one run id (dbt's models as rows named dbt:<model>). A failed dbt model "
                 "or test stops before anything is published (exit 10); a held table exits 9; a failed one exits 1.",
                 _epilog("nw run --tables clientes,pedidos,cliente_valor", "nw run --json > run.json"))
    rn.add_argument("--no-progress", action="store_true", help="no dbt lines, no progress bar (default: shown)")
    rn.set_defaults(func=cmd_run)

    c = command("config", ("env", "lake", "dest", "batch", "json"), "show the effective settings and where each came from",
                "Every setting as a run would use it and where its value came from: default, .env (--env-file), "
                "environment, or flag. Passwords (in DATABASE_URL too), S3 keys and tokens are masked. Connects to nothing.",
                _epilog("nw config --env-file prod.env --json"))
    c.set_defaults(func=cmd_config)
    return p


