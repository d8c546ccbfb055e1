"""The run history read back: ``controle_cargas`` rows grouped into runs.

Every destination returns its ledger rows with ``history()`` and
``run_history()`` (format in :mod:`nwlib.records`); this module turns them into
one summary per run, as the dashboard's History and ``nw runs`` show them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from . import destinations
from .destinations.base import Destination
from .model import FAILED, HELD, OK, TRANSFORM
from .settings import Settings


def runs_from_history(history: Sequence[dict]) -> list[dict]:
    """controle_cargas rows grouped into runs (one per ``run_id``), newest first.

    ``tables`` counts distinct tables: a run may add a row for a table's deletes
    or schema notes beside its load row; dbt's models of a ``nw run`` count as ``models``.  ``status`` is
    ``failed`` when a table (or model) failed, else ``held`` when a quality check held one back, else ``ok``."""
    runs: dict[str, dict] = {}
    names: dict[str, set] = {}
    for h in history:
        rid = h.get("run_id")
        r = runs.setdefault(rid, {"run_id": rid, "started": None, "finished": None, "tables": 0,
                                  "inserted": 0, "updated": 0, "deleted": 0, "failed": 0, "held": 0, "models": 0})
        if h.get("modo") == TRANSFORM:       # a dbt model of `nw run`: a step of the run, not a published table
            r["models"] += 1
        else:
            names.setdefault(rid, set()).add(h.get("tabela_nome"))
        for k, col in (("inserted", "linhas_inseridas"), ("updated", "linhas_atualizadas"), ("deleted", "linhas_excluidas")):
            r[k] += int(h.get(col) or 0)
        r["failed"] += h.get("status") == FAILED
        r["held"] += h.get("status") == HELD
        s, f = h.get("iniciado_em"), h.get("finalizado_em")
        if s and (r["started"] is None or s < r["started"]):
            r["started"] = s
        if f and (r["finished"] is None or f > r["finished"]):
            r["finished"] = f
    out = []
    for rid, r in runs.items():
        r["tables"] = len(names.get(rid, ()))
        r["seconds"] = (r["finished"] - r["started"]).total_seconds() if r["started"] and r["finished"] else None
        r["status"] = FAILED if r["failed"] else HELD if r["held"] else OK
        out.append(r)
    out.sort(key=lambda r: r["finished"] or r["started"] or datetime.min, reverse=True)
    return out


@dataclass(frozen=True)
class RecentRuns:
    destination: str                    # where the ledger is, secrets masked
    runs: tuple[dict, ...]              # newest first, as runs_from_history gives them


def recent_runs(settings: Settings, limit: int = 20, destination: Destination | None = None) -> RecentRuns:
    """The newest ``limit`` runs recorded in the destination's ``controle_cargas``, newest first
    (:func:`runs_from_history`: run_id, started, finished, status, tables, inserted, updated, deleted, failed, seconds)."""
    dest = destination or destinations.create(settings)
    try:
        return RecentRuns(dest.describe(), tuple(runs_from_history(dest.run_history(limit))[:limit]))
    finally:
        if destination is None:
            dest.close()
