"""Quality gates: declarative checks per table, run in DuckDB before a table is published.

* :mod:`.rules` — the checks file (``checks.yml``): its format, read and validated into :class:`Check` values;
* :mod:`.compile` — each check as one set-based DuckDB query (bad rows and a sample of their keys);
* :mod:`.gate` — running them over the lake and deciding which tables a run holds back.

A failing ``error`` check keeps its table — and the tables whose foreign keys depend on it — unpublished
for the run (the destination keeps its last good state); a failing ``warn`` check publishes and records.
"""
from .gate import CheckResult, Gate, absent_tables, gate, held_back, run_checks
from .rules import ERROR, KINDS, WARN, Check, load_checks

__all__ = ["ERROR", "KINDS", "WARN", "Check", "CheckResult", "Gate", "absent_tables", "gate", "held_back", "load_checks", "run_checks"]
