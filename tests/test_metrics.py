"""nwlib.metrics: a run's metrics in a textfile-collector file and on a real Pushgateway, read back by name and value."""
from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families

from nwlib import metrics
from nwlib.engine import sync

from lakesql import lake_sql

T0 = "TIMESTAMP '2024-05-01 10:00:00'"


def two_tables(settings):
    lake_sql(settings, "CREATE TABLE clientes (id INTEGER PRIMARY KEY, nome VARCHAR, updated_at TIMESTAMP)",
             "CREATE TABLE pedidos (id INTEGER PRIMARY KEY, id_cliente INTEGER REFERENCES clientes (id), valor INTEGER, updated_at TIMESTAMP)",
             f"INSERT INTO clientes SELECT i, 'c' || i, {T0} FROM range(1, 6) r(i)",
             f"INSERT INTO pedidos SELECT i, 1 + i % 5, i, {T0} + INTERVAL (i) MINUTE FROM range(1, 21) r(i)")


def at(series, name, **labels):
    want = {**labels, "job": "nw", "instance": socket.gethostname()}
    found = [v for (n, lab), v in series.items() if n == name and dict(lab) == want]
    assert found, f"{name}{want} not pushed"
    return found[0]


def test_a_run_is_pushed_and_written_and_a_failed_table_raises_its_failure_metric(make_settings, pushgateway, pg, tmp_path):
    prom = tmp_path / "textfile" / "nw.prom"
    settings = make_settings(PUSHGATEWAY_URL=pushgateway.url, METRICS_FILE=prom)
    two_tables(settings)
    report = sync(settings, show_progress=False)
    assert report.ok
    done = metrics.after_run(settings, report)
    assert len(done) == 2
    s = pushgateway.series()
    assert at(s, "nw_table_rows", table="pedidos", operation="inserted") == 20
    assert at(s, "nw_table_rows", table="clientes", operation="inserted") == 5
    assert at(s, "nw_table_failed", table="pedidos") == 0
    assert at(s, "nw_run_ok") == 1
    assert at(s, "nw_table_lag_seconds", table="pedidos") > 3600 * 24 * 300        # newest value: 2024-05-01 10:20
    first_success = at(s, "nw_table_last_success_timestamp_seconds", table="pedidos")
    # The textfile holds the same series (node_exporter's textfile collector format).
    text = prom.read_text()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"nw_table_rows", "nw_table_seconds", "nw_table_failed", "nw_table_lag_seconds", "nw_run_seconds", "nw_checks_failed"} <= names

    # pedidos now fails in PostgreSQL (a constraint the lake breaks): its failure metric goes up, its last
    # success stays the earlier run's (read from controle_cargas), clientes moves on.
    pg.execute(f'ALTER TABLE "{settings.db_schema}".pedidos ADD CONSTRAINT small CHECK (valor < 100) NOT VALID')
    lake_sql(settings, "UPDATE pedidos SET valor = 500 WHERE id = 3", "UPDATE clientes SET nome = 'x' WHERE id = 1")
    report = sync(settings, show_progress=False)
    assert [t.table for t in report.failed] == ["pedidos"]
    metrics.after_run(settings, report)
    s = pushgateway.series()
    assert at(s, "nw_table_failed", table="pedidos") == 1
    assert at(s, "nw_run_failed_tables") == 1 and at(s, "nw_run_ok") == 0
    assert at(s, "nw_table_rows", table="clientes", operation="updated") == 1
    assert abs(at(s, "nw_table_last_success_timestamp_seconds", table="pedidos") - first_success) < 5
    assert at(s, "nw_table_last_success_timestamp_seconds", table="clientes") > first_success


def test_failed_checks_are_counted_by_severity(make_settings, pushgateway, pg):
    settings = make_settings(PUSHGATEWAY_URL=pushgateway.url)
    two_tables(settings)
    settings.checks_file.write_text("tables:\n  pedidos:\n    - expression: {sql: 'valor > 3'}\n      severity: warn\n"
                                    "  clientes:\n    - not_null: nome\n")
    report = sync(settings, show_progress=False)
    metrics.after_run(settings, report)
    s = pushgateway.series()
    assert at(s, "nw_checks_failed", table="pedidos", severity="warn") == 1
    assert at(s, "nw_checks_failed", table="clientes", severity="error") == 0


def test_an_unreachable_gateway_is_a_warning_not_a_failure(make_settings, pg, caplog):
    from servers import free_port

    settings = make_settings(PUSHGATEWAY_URL=f"http://user:s3cr3t-pw@127.0.0.1:{free_port()}")
    two_tables(settings)
    report = sync(settings, show_progress=False)
    assert metrics.after_run(settings, report) == []
    assert "metrics not pushed" in caplog.text and "s3cr3t-pw" not in caplog.text


def test_the_grafana_dashboard_queries_only_metrics_nw_exports():
    """Every panel's PromQL names metrics the registry really has (the dashboard cannot drift from the code)."""
    import json
    import re
    from pathlib import Path

    from nwlib.model import OK, SyncReport, TableReport

    doc = json.loads((Path(__file__).resolve().parents[1] / "monitoring" / "grafana-dashboard.json").read_text())
    exported = {m.name for m in metrics.registry(SyncReport("r", "postgres", (TableReport("t", "merge", OK),))).collect()}
    used = {name for p in doc["panels"] for t in p["targets"] for name in re.findall(r"\bnw_[a-z_]+\b", t["expr"])}
    assert used and used <= exported, used - exported
    assert len(doc["panels"]) >= 8 and all(p["title"] and p["description"] is not None for p in doc["panels"])


def test_credentials_in_the_gateway_url_are_sent_as_basic_auth_not_as_a_host(make_settings, pushgateway, pg, caplog):
    host = pushgateway.url.split("://", 1)[1]
    settings = make_settings(PUSHGATEWAY_URL=f"http://nw:p%40ss@{host}")
    two_tables(settings)
    report = sync(settings, show_progress=False)
    assert metrics.after_run(settings, report) == [f"metrics pushed to http://nw:***@{host}"]
    assert at(pushgateway.series(), "nw_table_rows", table="clientes", operation="inserted") == 5
    assert "p@ss" not in caplog.text and "p%40ss" not in caplog.text
