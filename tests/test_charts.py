"""nwlib.charts: images a saved notebook keeps, with words that say what the numbers are."""
from __future__ import annotations

from nwlib import charts
from nwlib.histogram import Histogram
from nwlib.model import OK, SyncReport, TableReport

PNG = b"\x89PNG\r\n\x1a\n"


def _report(dry_run: bool, *moved: tuple[str, int, int, int]) -> SyncReport:
    tables = [TableReport(name, "merge", OK, inserted=i, updated=u, deleted=d) for name, i, u, d in moved]
    return SyncReport("run-1", "postgres", tuple(tables), dry_run=dry_run)


def _texts(chart) -> list[str]:
    ax = chart.figure.axes[0]
    return [ax.get_title(loc="left")] + [t.get_text() for t in ax.texts] + [t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]


def test_a_chart_displays_as_a_png():
    chart = charts.rows_moved(_report(False, ("clientes", 3, 2, 1), ("pedidos", 10, 0, 0)))
    data, meta = chart._repr_png_()
    assert data.startswith(PNG) and len(data) > 2000
    assert meta == {"alt": "rows moved per table (run run-1)"}
    assert "rows moved per table (run run-1)" in _texts(chart)
    assert {"inserted", "updated", "deleted"} <= set(_texts(chart))


def test_a_dry_run_says_what_is_planned_not_what_was_inserted():
    texts = _texts(charts.rows_moved(_report(True, ("clientes", 3, 2, 1))))
    assert {"to insert", "to update", "to delete"} <= set(texts)
    assert "inserted" not in texts and any("planned" in t for t in texts)


def test_nothing_to_send_is_a_sentence_not_an_empty_chart():
    chart = charts.rows_moved(_report(True, ("clientes", 0, 0, 0), ("pedidos", 0, 0, 0)))
    assert any("nothing to send" in t for t in _texts(chart))
    assert not chart.figure.axes[0].axison
    assert chart.png().startswith(PNG)


def test_histogram_chart_states_nulls_and_draws_every_bin():
    h = Histogram("pedidos", "valor_total", (0.0, 1.0, 2.0, 3.0), (5, 0, 7), 2)
    chart = charts.histogram(h)
    assert "pedidos.valor_total: 12 values in 3 bins, 2 NULL" in _texts(chart)
    assert chart.png().startswith(PNG)
    same = charts.histogram(Histogram("t", "v", (42.0, 42.0), (10,), 0))   # every value the same
    assert same.png().startswith(PNG)
