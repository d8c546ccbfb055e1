"""Running the checks over the lake, and which tables a run holds back because of them."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb

from ..errors import ConfigError, first_line
from ..graph import with_parents
from ..model import TableSpec
from .compile import compile_check
from .rules import ERROR, Check


@dataclass(frozen=True)
class CheckResult:
    check: Check
    bad_rows: int
    sample: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.bad_rows == 0

    @property
    def blocking(self) -> bool:
        """A failed ``error`` check: its table is not published this run."""
        return not self.passed and self.check.severity == ERROR

    def to_json(self) -> dict:
        c = self.check
        return {"table": c.table, "check": c.name, "kind": c.kind, "severity": c.severity, "passed": self.passed,
                "bad_rows": self.bad_rows, "sample_keys": list(self.sample), "seconds": round(self.seconds, 4)}

    def line(self) -> str:
        """One line for reports and ``controle_cargas``: the check, the bad rows, a sample of their keys."""
        c = self.check
        if self.passed:
            return f"{c.name} passed"
        what = {"row_count_change": "rows beyond the bound", "freshness": "stale"}.get(c.kind, "bad rows")
        count = "" if c.kind == "freshness" else f"{self.bad_rows:,} "
        label = "keys" if c.kind not in ("row_count_change", "freshness") else ""
        sample = f" ({label + ' ' if label else ''}{', '.join(self.sample)}{' …' if self.bad_rows > len(self.sample) and label else ''})" \
            if self.sample else ""
        return f"check {c.name} [{c.severity}] failed: {count}{what}{sample}"


def run_checks(con: duckdb.DuckDBPyConnection, model: Mapping[str, TableSpec], checks: Iterable[Check],
               tables: Iterable[str] | None = None, published: Mapping[str, int | None] | None = None,
               source: str = "checks.yml") -> tuple[CheckResult, ...]:
    """Run the checks of ``tables`` (default: every table of ``model``, the lake's tables by published name).
    Checks of tables the lake does not have (a mart not built yet) are not run: :func:`absent_tables` names them.

    ``published``: each table's row count as last published (for ``row_count_change``).  A check that names
    a table, column or parent the lake lacks, or whose expression DuckDB rejects, is one ConfigError line."""
    import time

    published = published or {}
    chosen = set(model if tables is None else tables)
    out = []
    for check in checks:
        where = f"{source}: table {check.table!r}, check {check.name}"
        if check.table not in chosen or check.table not in model:    # see absent_tables()
            continue
        spec = model[check.table]
        missing = [c for c in check.columns if c not in spec.column_names]
        if missing:
            raise ConfigError(f"{where}: column {missing[0]!r} is not in the lake table", f"columns: {', '.join(spec.column_names)}")
        ref = None
        if check.kind == "relationships":
            ref = model.get(check.ref_table)
            if ref is None:
                raise ConfigError(f"{where}: parent table {check.ref_table!r} is not in the lake", "fix 'to:'")
            gone = [c for c in check.ref_columns if c not in ref.column_names]
            if gone:
                raise ConfigError(f"{where}: column {gone[0]!r} is not in {check.ref_table!r}", "fix 'field:'")
        sql, params = compile_check(check, spec, ref, published.get(check.table))
        started = time.perf_counter()
        try:
            bad, sample = con.execute(sql, params).fetchone()
        except duckdb.Error as exc:
            raise ConfigError(f"{where}: DuckDB cannot run it ({first_line(exc)})", "fix the check in the checks file") from None
        out.append(CheckResult(check, int(bad or 0), tuple(str(s) for s in (sample or ())), time.perf_counter() - started))
    return tuple(out)


def absent_tables(model: Mapping[str, TableSpec], checks: Iterable[Check]) -> tuple[str, ...]:
    """Tables the checks name that the lake does not have (their checks do not run)."""
    return tuple(sorted({c.table for c in checks if c.table not in model}))


def held_back(specs: Mapping[str, TableSpec], results: Iterable[CheckResult], also: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tables of ``specs`` not to publish this run, each with why: a failed ``error`` check (or a reason in
    ``also``: a dbt model whose last build failed), or a parent (by foreign key, at any depth) held back for one."""
    held: dict[str, str] = {t: why for t, why in (also or {}).items() if t in specs}
    root: dict[str, str] = {t: t for t in held}
    for r in results:
        t = r.check.table
        if r.blocking and t in specs:
            held[t] = (held[t] + "; " if t in held else "") + r.line()
            root[t] = t
    changed = True
    while changed:
        changed = False
        for name, spec in specs.items():
            if name in held:
                continue
            parent = next((fk.ref_table for fk in spec.foreign_keys if fk.ref_table in held and fk.ref_table != name), None)
            if parent is not None:
                root[name] = root[parent]
                held[name] = f"it depends on {root[name]!r} (by foreign key), which is held back"
                changed = True
    return held


@dataclass(frozen=True)
class Gate:
    """The quality gate's verdict on a run's tables."""

    results: tuple[CheckResult, ...]     # the checks of the chosen tables and of their parents
    held: dict[str, str]                 # the chosen tables not to publish, and why
    absent: tuple[str, ...]              # tables the checks name that the lake lacks (their checks did not run)


def gate(con: duckdb.DuckDBPyConnection, model: Mapping[str, TableSpec], chosen: Iterable[str], checks: Iterable[Check],
         published: Mapping[str, int | None] | None = None, also: Mapping[str, str] | None = None,
         source: str = "checks.yml") -> Gate:
    """Run the checks of the ``chosen`` tables and of their parents (at any depth: a child is not published while
    its parent fails), and decide what to hold back (:func:`held_back`; ``also``: other reasons, a failed dbt model)."""
    checks, chosen = tuple(checks), set(chosen)
    wanted = with_parents(model, chosen)
    results = run_checks(con, model, checks, [t for t in model if t in wanted], published, source)
    held = held_back(model, results, {t: why for t, why in (also or {}).items() if t in model})
    return Gate(results, {t: why for t, why in held.items() if t in chosen}, absent_tables(model, checks))
