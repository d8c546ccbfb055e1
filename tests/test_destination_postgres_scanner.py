"""Reading a table back through DuckDB's postgres extension (nwlib.destinations.postgres.scanner) against real
servers: ranges of pages over two connections in one exported snapshot, direct and behind pgbouncer, and one
connection again when the server refuses to export a snapshot."""
from __future__ import annotations

import pytest

from nwlib.connstr import parse_url
from nwlib.destinations.postgres import scanner as scanner_module
from nwlib.destinations.postgres.scanner import Scanner

pytestmark = pytest.mark.routes("pooler")

ROWS = 20_000


def _table(pg, schema: str) -> None:
    """About 600 pages: with 10 pages a range, the scan is some 60 ranges."""
    pg.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    pg.execute(f'CREATE TABLE "{schema}".t AS SELECT g AS id, g * 7 AS nw_fingerprint, repeat(\'x\', 200) AS pad '
               f"FROM generate_series(1, {ROWS}) g")
    pg.execute(f'VACUUM ANALYZE "{schema}".t')      # the page count the extension plans its ranges from


def _ids(reader) -> list[int]:
    table = reader.read_all()
    assert table.column_names == ["id", "nw_fingerprint"]
    assert table.column("nw_fingerprint").to_pylist() == [i * 7 for i in table.column("id").to_pylist()]
    return sorted(table.column("id").to_pylist())


def _connections_named(pg, name: str) -> int:
    return pg.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]).fetchone()[0]


def test_a_table_scan_reads_ranges_over_two_connections_and_every_row_once(settings, pg, pg_route, pg_schema, monkeypatch):
    """Behind pgbouncer too (a pooler DB_POOL_MODE does not name gets the parallel scan); there the server's
    sessions are the pooler's, so only the direct route counts them."""
    import psycopg

    monkeypatch.setattr(scanner_module, "PAGES_PER_RANGE", 10)
    with psycopg.connect(pg_route.url, autocommit=True) as owner:      # nw's own role (through the pooler on that route)
        _table(owner, pg_schema)
    name = f"nw-scan-{pg_schema}"
    scanner = Scanner({**settings.postgres_params(), "application_name": name}, settings, connections=2)
    try:
        reader = scanner.scan_table(pg_schema, "t", ["id", "nw_fingerprint"], 1000)
        assert reader is not None
        assert _ids(reader) == list(range(1, ROWS + 1))
        assert scanner.connections == 2
        if pg_route.name == "direct":
            assert _connections_named(pg, name) == 2     # the extension keeps both in its pool until closed
    finally:
        scanner.close()


def test_a_server_that_refuses_to_export_a_snapshot_is_read_over_one_connection(pg15, tmp_path, monkeypatch):
    import psycopg
    from conftest import POOL_PASSWORD, POOL_USER

    from nwlib.settings import load_settings

    monkeypatch.setattr(scanner_module, "PAGES_PER_RANGE", 10)
    url = pg15.url(POOL_USER, POOL_PASSWORD)
    with psycopg.connect(pg15.admin_url, autocommit=True) as admin:
        admin.execute("DROP SCHEMA IF EXISTS nw_scan_refused CASCADE")
        _table(admin, "nw_scan_refused")
        admin.execute(f"GRANT USAGE ON SCHEMA nw_scan_refused TO {POOL_USER}")
        admin.execute(f"GRANT SELECT ON nw_scan_refused.t TO {POOL_USER}")
        admin.execute("REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC")
        scanner = Scanner(parse_url(url), load_settings(env={"DATABASE_URL": url, "DESTINATION_PATH": str(tmp_path)}, dotenv=None), connections=2)
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):     # what the parallel way meets
                with psycopg.connect(url) as c:
                    c.execute("SELECT pg_export_snapshot()")
            reader = scanner.scan_table("nw_scan_refused", "t", ["id", "nw_fingerprint"], 1000)
            assert reader is not None, "fell back to psycopg instead of one connection"
            assert _ids(reader) == list(range(1, ROWS + 1))
            assert scanner.connections == 1
        finally:
            scanner.close()
            admin.execute("GRANT EXECUTE ON FUNCTION pg_export_snapshot() TO PUBLIC")
            admin.execute("DROP SCHEMA nw_scan_refused CASCADE")
