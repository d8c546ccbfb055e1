"""The run ledger: what ``controle_cargas`` records for every table of every run.

The seed's per-table columns (``tabela_nome``, ``ultima_carga``,
``linhas_carregadas``) are kept; the rest make it a full history.  Every
destination stores the same fields, each in its own way (a PostgreSQL table,
JSON lines in S3, a Delta table).  ``ultima_carga`` is when that table's load
committed; ``linhas_carregadas`` is rows inserted + updated.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from .model import TableReport

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
}


def new_run_id() -> str:
    # Microseconds in the stamp: run ids sort in the order the runs started.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def now() -> datetime:
    return datetime.now(timezone.utc)


def ledger_row(run_id: str, r: TableReport) -> dict:
    """One ``controle_cargas`` row for a table report (JSON-able values)."""
    return {
        "run_id": run_id,
        "tabela_nome": r.table,
        "modo": r.mode,
        "status": r.status,
        "linhas_inseridas": r.inserted,
        "linhas_atualizadas": r.updated,
        "linhas_excluidas": r.deleted,
        "linhas_carregadas": r.inserted + r.updated,
        "watermark_antes": json.dumps(r.watermark_before.to_json()),
        "watermark_depois": json.dumps(r.watermark_after.to_json()),
        "iniciado_em": r.started_at,
        "finalizado_em": r.finished_at,
        "ultima_carga": r.finished_at if r.status == "ok" else None,
        "erro": r.error,
        "mudancas_schema": "; ".join(r.schema_changes) or None,
    }
