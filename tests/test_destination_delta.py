"""DESTINATION_TYPE=DELTA on a local folder and on s3:// (a real moto_server)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import boto3
import duckdb
import pytest

from lakesql import lake_sql
from rewrites import renamed_key_is_rebuilt_by_the_advised_full_refresh, written_again_whole_is_in_sync_after

from nwlib.bootstrap import PRIMARY_KEYS, bootstrap, mutate
from nwlib.cdc import full_changes, transfer_spec
from nwlib.destinations import create
from nwlib.destinations.delta import DeltaDestination, read_table
from nwlib.engine import sync
from nwlib.lake import open_lake
from nwlib.plan import read_plan
from nwlib.errors import DestinationError, SyncInProgress
from nwlib.settings import load_settings
from nwlib.status import status
from nwlib.verification import verify


@pytest.fixture(params=["local", "s3"])
def delta_env(request, tmp_path):
    env = {"DESTINATION_TYPE": "DELTA", "DUCKDB_PATH": str(tmp_path / "lake.duckdb"), "DESTINATION_PATH": str(tmp_path),
           "MAX_RETRIES": "1", "RETRY_BASE_SECONDS": "0.05"}
    if request.param == "local":
        env["DELTA_URI"] = str(tmp_path / "delta")
    else:
        bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("moto_server")
        env.update(DELTA_URI=f"s3://{bucket}/lakehouse", AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing-key",
                   AWS_SECRET_ACCESS_KEY="testing-secret", AWS_REGION="us-east-1")
    return env


def _lake_rows(settings, table: str) -> int:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _no_duplicate_keys(settings) -> None:
    for table, key in PRIMARY_KEYS.items():
        t = read_table(settings, table)
        assert t.num_rows == len(set(t.column(key).to_pylist())) == _lake_rows(settings, table), table


def test_delta_round_trip_merge_and_history(delta_env):
    settings = load_settings(env=delta_env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.1, seed=3)
    first = sync(settings, show_progress=False)
    assert first.ok, first.failed
    assert {t.table: t.inserted for t in first.tables} == {"clientes": 100, "pedidos": 1000, "itens_pedido": 3000, "pagamentos": 1000}

    changes = mutate(settings.duckdb_path, 0.05)
    second = sync(settings, show_progress=False)
    assert second.ok, second.failed
    by = {t.table: t for t in second.tables}
    for table, c in changes.items():
        assert (by[table].inserted, by[table].updated, by[table].deleted) == (c["inserted"], c["updated"], c["deleted"]), table
    checks = verify(settings)
    assert all(c.ok for c in checks), checks
    assert sum(t.moved for t in sync(settings, show_progress=False).tables) == 0
    _no_duplicate_keys(settings)

    # The watermark lives in the same Delta commit as the rows.
    from deltalake import DeltaTable
    dest = create(settings)
    dt = DeltaTable(dest.uri("pedidos"), storage_options=dest.storage_options)
    merge = next(h for h in dt.history() if h["operation"] == "MERGE" and h.get("nw_run_id") == second.run_id)
    assert json.loads(merge["nw_watermark"]) == by["pedidos"].watermark_after.to_json()
    assert dt.transaction_version("nwlib:pedidos") >= 2

    st = status(settings)
    assert {r.table: r.dest_rows for r in st.tables} == {r.table: r.lake_rows for r in st.tables}
    assert {first.run_id, second.run_id} <= {h["run_id"] for h in st.history}
    rows = [h for h in st.history if h["run_id"] == second.run_id]      # one row per table per run, deletes included
    assert sorted(h["tabela_nome"] for h in rows) == sorted(by)
    assert {h["tabela_nome"]: h["linhas_excluidas"] for h in rows} == {t: r.deleted for t, r in by.items()}


def test_delta_retried_step_is_not_applied_twice(tmp_path):
    """A retry of a step whose commit already landed is recognised by the commit's token."""
    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
                                  "DESTINATION_PATH": str(tmp_path), "APPEND_ONLY_TABLES": "pagamentos"}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=2)
    dest = DeltaDestination(settings)
    with open_lake(settings) as con:
        plan = read_plan(settings, con, ["pagamentos"])
        dest.prepare([transfer_spec(plan.specs["pagamentos"])], frozenset())
        cs = full_changes(con, plan.specs["pagamentos"])
        read = lambda c: c.reader(con, 1000)
        first = dest.load([cs], read, "run-1", lambda t, n: None)
        again = dest.load([cs], read, "run-1", lambda t, n: None)
    assert first["pagamentos"].inserted == again["pagamentos"].inserted == 200
    assert dest.states(["pagamentos"])["pagamentos"].row_count == 200   # an append-only table: a second append would double it


@pytest.mark.slow
def test_delta_kill_during_sync_then_rerun(delta_env, killed_sync):
    settings = load_settings(env=delta_env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=3, seed=11)
    probe = DeltaDestination(settings)

    def first_commit_done():
        if probe.remote:
            c = boto3.client("s3", endpoint_url=delta_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                             aws_access_key_id="testing-key", aws_secret_access_key="testing-secret")
            return c.list_objects_v2(Bucket=probe.s3.bucket, Prefix=probe.s3.key("controle_cargas", "_delta_log")).get("KeyCount", 0) > 0
        return (Path(probe.root) / "controle_cargas" / "_delta_log").exists()

    assert killed_sync(delta_env, first_commit_done) == -signal.SIGKILL
    loaded = [t for t, s in probe.states(list(PRIMARY_KEYS)).items() if s.loaded]
    assert 1 <= len(loaded) < len(PRIMARY_KEYS), loaded

    rerun = sync(settings, show_progress=False)
    assert rerun.ok, rerun.failed
    mutate(settings.duckdb_path, 0.01)
    assert sync(settings, show_progress=False).ok
    assert all(c.ok for c in verify(settings))
    _no_duplicate_keys(settings)


def test_delta_lock_local_folder(tmp_path):
    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d")}, dotenv=None)
    a, b = DeltaDestination(settings), DeltaDestination(settings)
    with a.lock():
        with pytest.raises(SyncInProgress):
            with b.lock():
                pass
    with b.lock():
        pass


def test_delta_bad_bucket_is_one_line(s3_bucket, moto_server, tmp_path):
    env = {"DESTINATION_TYPE": "DELTA", "DELTA_URI": "s3://no-such-bucket-here/x", "AWS_ENDPOINT_URL": moto_server,
           "AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
           "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "0"}
    settings = load_settings(env=env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.01, seed=1)
    with pytest.raises(DestinationError, match="does not exist") as err:
        sync(settings, show_progress=False)
    assert "\n" not in str(err.value)


def test_delta_every_type_and_hostile_names_round_trip(tmp_path, typed_lake, lake_path):
    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(lake_path),
                                  "DESTINATION_PATH": str(tmp_path)}, dotenv=None)
    first = sync(settings, show_progress=False)
    assert first.ok, first.failed
    assert all(c.ok for c in verify(settings)), verify(settings)
    typed_lake()
    second = sync(settings, show_progress=False)
    assert second.ok, second.failed
    r = second.tables[0]
    assert (r.inserted, r.updated, r.deleted) == (1, 2, 1)
    checks = verify(settings)
    assert all(c.ok for c in checks), checks


def test_delta_ledger_row_lost_in_a_crash_is_recovered_from_the_commit(tmp_path):
    """Killed after a table's commit but before its controle_cargas row: the next run adds the row."""
    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
                                  "DESTINATION_PATH": str(tmp_path)}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=2)
    dest = DeltaDestination(settings)
    with open_lake(settings) as con:
        spec = read_plan(settings, con, ["clientes"]).specs["clientes"]
        dest.prepare([transfer_spec(spec)], frozenset())
        cs = full_changes(con, spec)
        dest._apply(cs, lambda c: c.reader(con, 1000), "run-killed", lambda t, n: None)   # the commit, and then the "crash"
    assert not dest.history()
    report = sync(settings, show_progress=False)
    assert report.ok
    rows = {(h["run_id"], h["tabela_nome"]): h for h in dest.history()}
    got = rows[("run-killed", "clientes")]
    assert (got["modo"], got["linhas_inseridas"], got["status"]) == ("merge full (recovered)", 20, "ok")
    assert json.loads(got["watermark_depois"]) == cs.watermark_after.to_json()


def test_delta_full_replace_table_and_nw_status(tmp_path, monkeypatch, capsys):
    from nwlib.cli import main

    env = {"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
           "DESTINATION_PATH": str(tmp_path), "FULL_REPLACE_TABLES": "clientes"}
    for k, v in {**env, "COLUMNS": "300"}.items():   # rich wraps at the terminal width
        monkeypatch.setenv(k, v)
    settings = load_settings(env=env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=6)
    assert sync(settings, show_progress=False).ok
    mutate(settings.duckdb_path, 0.1)
    second = sync(settings, show_progress=False)
    assert second.ok and second.tables[0].inserted == _lake_rows(settings, "clientes")   # replaced whole
    assert all(c.ok for c in verify(settings))
    assert main(["status", "--env-file", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert f"Delta Lake {tmp_path / 'd'}" in out and out.count(" ok") >= 4 and "never" not in out


def test_delta_deletes_keep_the_recorded_fingerprint_sum_true(tmp_path):
    env = {"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
           "DESTINATION_PATH": str(tmp_path)}
    settings = load_settings(env=env, dotenv=None)
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)", "INSERT INTO t SELECT i, 'v' || i FROM range(10000) r(i)")
    assert sync(settings, show_progress=False).ok
    lake_sql(settings, "DELETE FROM t WHERE id < 5000")
    assert sync(settings, show_progress=False).tables[0].deleted == 5000
    assert [t.sync for t in status(settings).tables] == ["in sync"]      # "differs": an int64 sum of 5,000 fingerprints wrapped
    assert sync(settings, show_progress=False).tables[0].notes == ()     # and every run compared the whole table again


def test_delta_refuses_an_empty_string_in_its_partition_column(tmp_path):
    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
                                  "DESTINATION_PATH": str(tmp_path), "PARTITION_COLUMNS": "t=cat"}, dotenv=None)
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, cat VARCHAR)", "INSERT INTO t VALUES (1, ''), (2, 'a'), (3, NULL)")
    for broken, fixed in ((1, "b"), (2, "a")):       # the first load, then a merge into the table the fixed lake made
        r = sync(settings, show_progress=False).tables[0]
        assert r.status == "failed" and "column 'cat' (its PARTITION_COLUMNS column) holds an empty string" in r.error, r.error
        assert "Delta" in r.error and "Traceback" not in r.error       # it arrived as NULL, status saying in sync
        if broken == 2:
            assert read_table(settings, "t").sort_by("id").column("cat").to_pylist() == ["b", "a", None]   # nothing of it written
        lake_sql(settings, "UPDATE t SET cat = ? WHERE id = ?", params=[fixed, broken])
        assert sync(settings, show_progress=False).ok and all(c.ok for c in verify(settings))
        lake_sql(settings, "UPDATE t SET cat = '' WHERE id = 2")


def test_delta_a_table_written_again_whole_is_in_sync_after(delta_env):
    written_again_whole_is_in_sync_after(load_settings(env=delta_env, dotenv=None))


def test_delta_a_renamed_key_column_is_rebuilt_by_the_advised_full_refresh(delta_env):
    renamed_key_is_rebuilt_by_the_advised_full_refresh(load_settings(env=delta_env, dotenv=None))


def test_delta_the_empty_string_refused_is_in_the_column_the_table_is_partitioned_by(tmp_path):
    env = {"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
           "DESTINATION_PATH": str(tmp_path), "PARTITION_COLUMNS": "t=cat"}
    settings = load_settings(env=env, dotenv=None)
    lake_sql(settings, "CREATE TABLE t (id INTEGER PRIMARY KEY, cat VARCHAR, other VARCHAR)", "INSERT INTO t VALUES (1, 'a', 'x')")
    assert sync(settings, show_progress=False).ok
    moved = load_settings(env={**env, "PARTITION_COLUMNS": "t=other"}, dotenv=None)     # the setting changed since
    lake_sql(settings, "INSERT INTO t VALUES (2, 'b', '')")
    assert sync(moved, show_progress=False).ok            # '' in a column the table is not partitioned by
    lake_sql(settings, "INSERT INTO t VALUES (3, '', 'y')")
    r = sync(moved, show_progress=False).tables[0]
    assert r.status == "failed" and "column 'cat'" in r.error


def test_delta_partition_column(tmp_path):
    from deltalake import DeltaTable

    settings = load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": str(tmp_path / "d"), "DUCKDB_PATH": str(tmp_path / "l.duckdb"),
                                  "DESTINATION_PATH": str(tmp_path), "PARTITION_COLUMNS": "pedidos=status"}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=8)
    assert sync(settings, show_progress=False).ok
    mutate(settings.duckdb_path, 0.1)
    assert sync(settings, show_progress=False).ok
    assert all(c.ok for c in verify(settings))
    assert DeltaTable(str(tmp_path / "d" / "pedidos")).metadata().partition_columns == ["status"]
