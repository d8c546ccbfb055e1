"""What ``controle_cargas`` records for every table of every run, and run ids.

The seed's per-table columns (``tabela_nome``, ``ultima_carga``,
``linhas_carregadas``) are kept; the rest make it a full history.  Every
destination stores the same fields, each in its own way (a PostgreSQL table,
JSON lines in S3, a Delta table), and builds its rows with :func:`ledger_row`.
``ultima_carga`` is when that table's load committed; ``linhas_carregadas`` is
rows inserted + updated; ``observacoes`` notes what else the run did or held
back (deletes kept for a table left out, a full compare, columns not sent).

This is the ledger's *format*, kept low in the layers so destinations can
write it; reading the history back into runs is :mod:`nwlib.ledger`.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from .model import OK, TableReport

LEDGER_TABLE = "controle_cargas"
STATE_TABLE = "nw_estado"

# name → PostgreSQL type, in column order.
LEDGER_COLUMNS: dict[str, str] = {
    "run_id": "text NOT NULL",
    "tabela_nome": "text NOT NULL",
    "modo": "text NOT NULL",
    "status": "text NOT NULL",
    "linhas_inseridas": "bigint NOT NULL DEFAULT 0",
    "linhas_atualizadas": "bigint NOT NULL DEFAULT 0",
    "linhas_excluidas": "bigint NOT NULL DEFAULT 0",
    "linhas_carregadas": "bigint NOT NULL DEFAULT 0",
    "watermark_antes": "jsonb",
    "watermark_depois": "jsonb",
    "iniciado_em": "timestamptz",
    "finalizado_em": "timestamptz",
    "ultima_carga": "timestamptz",
    "erro": "text",
    "mudancas_schema": "text",
    "observacoes": "text",
}
COUNT_COLUMNS = ("linhas_inseridas", "linhas_atualizadas", "linhas_excluidas", "linhas_carregadas")
TIME_COLUMNS = ("iniciado_em", "finalizado_em", "ultima_carga")


def new_run_id() -> str:
    # Microseconds in the stamp: run ids sort in the order the runs started.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def now() -> datetime:
    return datetime.now(timezone.utc)


def ledger_row(run_id: str, table: str, mode: str, status: str, started: datetime | None = None, **values) -> dict:
    """One ``controle_cargas`` row: every column present, counts 0, ``ultima_carga`` set when ``ok``.

    ``values`` overrides columns by name (``linhas_inseridas=…``, ``erro=…``);
    ``linhas_carregadas`` follows inserted + updated unless given."""
    unknown = set(values) - set(LEDGER_COLUMNS)
    if unknown:
        raise KeyError(f"not controle_cargas columns: {', '.join(sorted(unknown))}")
    row: dict = {k: None for k in LEDGER_COLUMNS}
    row.update(run_id=run_id, tabela_nome=table, modo=mode, status=status, linhas_inseridas=0, linhas_atualizadas=0,
               linhas_excluidas=0, linhas_carregadas=0, iniciado_em=started or now(), finalizado_em=now())
    row.update(values)
    if "linhas_carregadas" not in values:
        row["linhas_carregadas"] = int(row["linhas_inseridas"] or 0) + int(row["linhas_atualizadas"] or 0)
    if status == OK and row["ultima_carga"] is None:
        row["ultima_carga"] = row["finalizado_em"]
    return row


def report_row(run_id: str, r: TableReport) -> dict:
    """The ``controle_cargas`` row of a table report."""
    return ledger_row(run_id, r.table, r.mode, r.status, r.started_at,
                      linhas_inseridas=r.inserted, linhas_atualizadas=r.updated, linhas_excluidas=r.deleted,
                      watermark_antes=json.dumps(r.watermark_before.to_json()),
                      watermark_depois=json.dumps(r.watermark_after.to_json()),
                      finalizado_em=r.finished_at or now(), erro=r.error,
                      mudancas_schema="; ".join(r.schema_changes) or None, observacoes="; ".join(r.notes) or None)


def newest_runs(rows: list[dict], runs: int) -> list[dict]:
    """The rows (newest first) of the first ``runs`` run ids met in ``rows`` (ledger rows, newest first)."""
    keep: set = set()
    for r in rows:
        if len(keep) >= runs:
            break
        keep.add(r.get("run_id"))
    return [r for r in rows if r.get("run_id") in keep]


def merge_ledger_rows(rows: list[dict]) -> list[dict]:
    """One row per table per run, newest first: a run's final row when it wrote one, else its partial
    rows (a load, its deletes) added up — what a run that died before its end left."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("run_id"), r.get("tabela_nome")), []).append(r)
    out = []
    for parts in groups.values():
        parts.sort(key=lambda r: r.get("finalizado_em") or r.get("iniciado_em"))
        finals = [r for r in parts if r.get("final")]
        if finals:
            row = dict(finals[-1])
        else:
            row = dict(parts[0])
            for r in parts[1:]:
                for k in COUNT_COLUMNS:
                    row[k] = int(row.get(k) or 0) + int(r.get(k) or 0)
                for k in ("finalizado_em", "ultima_carga", "watermark_depois", "status", "erro"):
                    if r.get(k) is not None:
                        row[k] = r[k]
        row.pop("final", None)
        out.append(row)
    out.sort(key=lambda r: r.get("finalizado_em") or r.get("iniciado_em"), reverse=True)
    return out
