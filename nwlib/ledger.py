"""The run history read back: ``controle_cargas`` rows grouped into runs.

Every destination returns its ledger rows with ``history()`` (format in
:mod:`nwlib.records`); this module turns them into one summary per run, as the
dashboard's History shows them.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .model import FAILED, OK


def runs_from_history(history: Sequence[dict]) -> list[dict]:
    """controle_cargas rows grouped into runs (one per ``run_id``), newest first.

    ``tables`` counts distinct tables: a run may add a row for a table's deletes
    or schema notes beside its load row."""
    runs: dict[str, dict] = {}
    names: dict[str, set] = {}
    for h in history:
        rid = h.get("run_id")
        r = runs.setdefault(rid, {"run_id": rid, "started": None, "finished": None, "tables": 0,
                                  "inserted": 0, "updated": 0, "deleted": 0, "failed": 0})
        names.setdefault(rid, set()).add(h.get("tabela_nome"))
        for k, col in (("inserted", "linhas_inseridas"), ("updated", "linhas_atualizadas"), ("deleted", "linhas_excluidas")):
            r[k] += int(h.get(col) or 0)
        r["failed"] += h.get("status") == FAILED
        s, f = h.get("iniciado_em"), h.get("finalizado_em")
        if s and (r["started"] is None or s < r["started"]):
            r["started"] = s
        if f and (r["finished"] is None or f > r["finished"]):
            r["finished"] = f
    out = []
    for rid, r in runs.items():
        r["tables"] = len(names[rid])
        r["seconds"] = (r["finished"] - r["started"]).total_seconds() if r["started"] and r["finished"] else None
        r["status"] = FAILED if r["failed"] else OK
        out.append(r)
    out.sort(key=lambda r: r["finished"] or r["started"] or datetime.min, reverse=True)
    return out
