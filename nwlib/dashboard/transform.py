"""Transform tab: the last dbt run (models, tests, timings, status) and the quality checks, run on demand."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

from . import charts
from .html import error_html, html_table, note_html, ok_html, scroll, wide

if TYPE_CHECKING:
    from .app import Dashboard


class TransformTab:
    name = "transform"
    shows_destination = False

    def __init__(self, app: Dashboard):
        w = app.w
        self.app = app
        self.run_checks = w.Button(description="Run the quality checks", tooltip="run checks.yml on the lake (publishes nothing)",
                                   layout=w.Layout(width="auto"))
        self.run_checks.on_click(lambda b: self.app.guard(self.checks_msg, self.show_checks))
        self.dbt = wide(w.HTML())
        self.checks_msg = w.HTML()
        self.checks = w.HTML()
        self.box = w.VBox([self.dbt, w.HTML("<h3 style='margin:10px 0 4px'>Quality checks</h3>"), self.run_checks, self.checks_msg,
                           self.checks])

    def render(self) -> None:
        from ..transform import last_run

        s = self.app.settings
        result = last_run(s)
        if result is None:
            self.dbt.value = note_html(f"no dbt run yet: `nw transform` (or `nw run`) builds {html.escape(str(s.dbt_project_dir))}/ "
                                       "inside the lake, then its models and tests show here")
            return
        when = f"{result.finished_at:%Y-%m-%d %H:%M:%S} UTC"
        failed = result.failed
        head = (ok_html if not failed else error_html)(
            f"last dbt run {when}: {len(result.models)} model(s), {len(result.tests)} test(s), {result.seconds:.1f} s"
            + (f" — {len(failed)} failed: {', '.join(n.name for n in failed[:3])}" if failed else " — all passed"))
        rows = []
        for m in result.models:
            tests = [t for t in result.tests if t.model == m.name]
            bad = sum(1 for t in tests if t.status in ("fail", "error"))
            rows.append([m.name, m.status, f"{m.seconds:.2f}", f"{len(tests) - bad} / {len(tests)}" if tests else "—",
                         "; ".join(f"{t.name} ({t.failures or 0:,} rows)" for t in tests if t.status in ("fail", "error")) or "—"])
        table = html_table(["model", "status", "seconds", "tests passed", "failing tests"], rows, "nw-transform")
        chart = charts.hbars("Seconds per dbt model", [m.name for m in result.models],
                             [("seconds", charts.TEAL, [round(m.seconds, 3) for m in result.models])], "nw-dbt-chart")
        self.dbt.value = head + scroll(table) + f"<div class='nw-charts'><div>{chart}</div></div>"

    def show_checks(self) -> None:
        from ..pipeline import check

        report = check(self.app.settings)
        if not report.results and not report.absent:
            self.checks_msg.value = note_html(f"no checks: {html.escape(str(self.app.settings.checks_path))} is absent or empty")
            self.checks.value = ""
            return
        rows = [[r.check.table, r.check.name, r.check.severity, "passed" if r.passed else "FAILED", r.bad_rows, ", ".join(r.sample) or "—"]
                for r in report.results]
        failed = [r for r in report.results if not r.passed]
        msg = f"{len(report.results) - len(failed)} of {len(report.results)} checks passed"
        if report.held:
            msg += "; a sync would hold back: " + "; ".join(f"{t} ({why})" for t, why in report.held.items())
        if report.absent:
            msg += f"; not in the lake (not run): {', '.join(report.absent)}"
        self.checks_msg.value = (error_html if report.held else ok_html)(self.app.settings.redact(msg))
        self.checks.value = scroll(html_table(["table", "check", "severity", "result", "bad rows", "sample keys"], rows, "nw-checks"))
