"""DESTINATION_TYPE=S3 against a real S3 endpoint (moto_server on 127.0.0.1)."""
from __future__ import annotations

import json
import re
import signal

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest

from rewrites import renamed_key_is_rebuilt_by_the_advised_full_refresh, written_again_whole_is_in_sync_after

from nwlib.bootstrap import PRIMARY_KEYS, bootstrap, mutate
from nwlib.cli import main
from nwlib.destinations import create
from nwlib.destinations.s3 import S3Destination, rebuild
from nwlib.engine import sync
from nwlib.errors import DestinationError, SyncInProgress
from nwlib.settings import load_settings
from nwlib.status import status
from nwlib.verification import verify

PART = re.compile(r"^raw/(\w+)/dt=\d{4}-\d{2}-\d{2}/run=[0-9TZ]+-[0-9a-f]{8}/part-\d{8}-\d{4}\.parquet$")


@pytest.fixture
def s3_env(s3_bucket, moto_server, tmp_path):
    return {"DESTINATION_TYPE": "S3", "S3_BUCKET_NAME": s3_bucket, "AWS_ENDPOINT_URL": moto_server,
            "AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1",
            "DUCKDB_PATH": str(tmp_path / "lake.duckdb"), "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "1", "RETRY_BASE_SECONDS": "0.05"}


def _client(env):
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _keys(env, prefix=""):
    pages = _client(env).get_paginator("list_objects_v2").paginate(Bucket=env["S3_BUCKET_NAME"], Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def _no_duplicate_keys(settings) -> None:
    for table, key in PRIMARY_KEYS.items():
        t = rebuild(settings, table)
        assert t.num_rows == len(set(t.column(key).to_pylist())), table


def test_s3_round_trip_layout_history_and_rebuild(s3_env, tmp_path):
    settings = load_settings(env=s3_env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.1, seed=3)
    first = sync(settings, show_progress=False)
    assert first.ok, first.failed
    assert {t.table: t.inserted for t in first.tables} == {"clientes": 100, "pedidos": 1000, "itens_pedido": 3000, "pagamentos": 1000}

    changes = mutate(settings.duckdb_path, 0.05)
    second = sync(settings, show_progress=False)
    assert second.ok, second.failed
    by = {t.table: t for t in second.tables}
    for table, c in changes.items():
        assert (by[table].inserted, by[table].deleted) == (c["inserted"], c["deleted"]), table
        assert by[table].updated >= c["updated"], table
    checks = verify(settings)
    assert all(c.ok for c in checks), checks
    assert sum(t.moved for t in sync(settings, show_progress=False).tables) == 0

    # Hive layout, ZSTD Parquet with the operation and run columns.
    parts = [k for k in _keys(s3_env, "raw/") if k.endswith(".parquet")]
    assert parts and all(PART.match(k) for k in parts), parts[:3]
    local = tmp_path / "one.parquet"
    # A part of the first run (the listing is by name, and two run ids of the same second sort by their random tail).
    first_part = next(k for k in parts if "/pedidos/" in k and f"/run={first.run_id}/" in k)
    _client(s3_env).download_file(s3_env["S3_BUCKET_NAME"], first_part, str(local))
    meta = pq.ParquetFile(local).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    names = pq.read_schema(local).names
    assert {"nw_operation", "nw_run_id", "nw_seq"} <= set(names)
    ops = duckdb.sql(f"SELECT DISTINCT nw_operation FROM read_parquet('{tmp_path}/*.parquet')").fetchall()
    assert ops == [("insert",)]
    # Every operation kind was written for pedidos (inserted, updated, deleted by the mutation).
    con = duckdb.connect()
    all_ops = set()
    for i, k in enumerate(k for k in parts if "/pedidos/" in k):
        _client(s3_env).download_file(s3_env["S3_BUCKET_NAME"], k, str(tmp_path / f"p{i}.parquet"))
    all_ops = {r[0] for r in con.execute(f"SELECT DISTINCT nw_operation FROM read_parquet('{tmp_path}/p*.parquet', union_by_name=true)").fetchall()}
    assert all_ops == {"insert", "update", "delete"}

    state = json.loads(_client(s3_env).get_object(Bucket=s3_env["S3_BUCKET_NAME"], Key="raw/_nw/state.json")["Body"].read())
    assert state["tables"]["pedidos"]["row_count"] == by["pedidos"].inserted + 1000 - by["pedidos"].deleted

    rebuilt = rebuild(settings, "pedidos")
    lake = duckdb.connect(str(settings.duckdb_path), read_only=True)
    assert rebuilt.num_rows == lake.execute("SELECT count(*) FROM pedidos").fetchone()[0]
    _no_duplicate_keys(settings)

    st = status(settings)
    assert {r.table: r.dest_rows for r in st.tables} == {r.table: r.lake_rows for r in st.tables}
    runs = {h["run_id"] for h in st.history}
    assert {first.run_id, second.run_id} <= runs
    assert all(h["status"] == "ok" for h in st.history)


def test_nw_status_shows_s3_history(s3_env, monkeypatch, capsys):
    for k, v in {**s3_env, "COLUMNS": "300"}.items():   # rich wraps at the terminal width
        monkeypatch.setenv(k, v)
    settings = load_settings(env=s3_env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.01, seed=1)
    assert main(["sync", "--no-progress", "--env-file", "/nonexistent"]) == 0
    capsys.readouterr()
    assert main(["status", "--env-file", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert f"S3 s3://{s3_env['S3_BUCKET_NAME']}/raw" in out
    assert out.count(" ok") >= 4 and "never" not in out


def test_s3_reads_without_httpfs_and_full_replace(s3_env):
    settings = load_settings(env={**s3_env, "FULL_REPLACE_TABLES": "clientes"}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=5)
    assert sync(settings, show_progress=False).ok
    mutate(settings.duckdb_path, 0.1)
    dest = S3Destination(settings, use_httpfs=False)   # pyarrow's S3 filesystem reads the change files
    try:
        assert sync(settings, show_progress=False, destination=dest).ok
        checks = verify(settings, destination=dest)
    finally:
        dest.close()
    assert all(c.ok for c in checks), checks


def test_s3_lock_is_exclusive_and_released(s3_env):
    settings = load_settings(env=s3_env, dotenv=None)
    a, b = create(settings), create(settings)
    try:
        with a.lock():
            with pytest.raises(SyncInProgress, match="another sync holds the lock"):
                with b.lock():
                    pass
        with b.lock():
            pass
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_s3_kill_during_sync_then_rerun(s3_env, killed_sync):
    settings = load_settings(env=s3_env, dotenv=None)
    bootstrap(settings.duckdb_path, scale=3, seed=11)
    client, bucket = _client(s3_env), s3_env["S3_BUCKET_NAME"]

    def first_commit_done():
        return client.list_objects_v2(Bucket=bucket, Prefix="raw/_nw/state.json").get("KeyCount", 0) > 0

    code = killed_sync(s3_env, first_commit_done)
    assert code == -signal.SIGKILL
    committed = load_settings(env=s3_env, dotenv=None)
    dest = create(committed)
    try:
        loaded = [t for t, s in dest.states(list(PRIMARY_KEYS)).items() if s.loaded]
    finally:
        dest.close()
    assert 1 <= len(loaded) < len(PRIMARY_KEYS), loaded      # killed between commits
    assert _keys(s3_env, "raw/_nw/lock.json")                # the dead run's lock is still there

    rerun = sync(settings, show_progress=False)               # takes over the stale lock, finishes the job
    assert rerun.ok, rerun.failed
    assert all(c.ok for c in verify(settings))
    _no_duplicate_keys(settings)


def test_s3_errors_are_one_line(s3_env, monkeypatch, capsys):
    bootstrap(load_settings(env=s3_env, dotenv=None).duckdb_path, scale=0.01, seed=1)
    with pytest.raises(DestinationError, match="bucket of s3://no-such-bucket-here/raw does not exist"):
        sync(load_settings(env={**s3_env, "S3_BUCKET_NAME": "no-such-bucket-here"}, dotenv=None), show_progress=False)

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    down = load_settings(env={**s3_env, "AWS_ENDPOINT_URL": dead, "MAX_RETRIES": "0"}, dotenv=None)
    with pytest.raises(DestinationError) as err:
        sync(down, show_progress=False)
    assert err.value.transient and f"cannot reach {dead}" in str(err.value)

    for k, v in {**s3_env, "S3_BUCKET_NAME": "no-such-bucket-here"}.items():
        monkeypatch.setenv(k, v)
    assert main(["sync", "--no-progress", "--env-file", "/nonexistent"]) == 4
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "Traceback" not in out.err and "testing-secret" not in out.err


def test_a_password_in_the_endpoint_url_is_never_shown(s3_env, monkeypatch, capsys):
    env = {**s3_env, "AWS_ENDPOINT_URL": s3_env["AWS_ENDPOINT_URL"].replace("http://", "http://minio:En6pointPass@")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bootstrap(load_settings(env=env, dotenv=None).duckdb_path, scale=0.01, seed=1)
    assert main(["sync", "--no-progress", "--env-file", "/nonexistent"]) == 0
    main(["status", "--env-file", "/nonexistent"])
    main(["config", "--env-file", "/nonexistent"])
    out = capsys.readouterr()
    assert "En6pointPass" not in out.out + out.err       # status's header and nw config printed it
    assert "minio:***@" in out.out


def test_s3_a_table_written_again_whole_is_in_sync_after(s3_env):
    written_again_whole_is_in_sync_after(load_settings(env=s3_env, dotenv=None))


def test_s3_a_renamed_key_column_is_rebuilt_by_the_advised_full_refresh(s3_env):
    renamed_key_is_rebuilt_by_the_advised_full_refresh(load_settings(env=s3_env, dotenv=None))


def test_s3_a_malformed_bucket_name_or_endpoint_says_what_is_wrong(s3_env):
    bootstrap(load_settings(env=s3_env, dotenv=None).duckdb_path, scale=0.01, seed=1)
    with pytest.raises(DestinationError, match='Invalid bucket name "Bad_Bucket!"') as err:   # was "Parameter validation failed: —"
        sync(load_settings(env={**s3_env, "S3_BUCKET_NAME": "Bad_Bucket!"}, dotenv=None), show_progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DestinationError, match="AWS_ENDPOINT_URL is not a URL boto3 can use") as err:
        sync(load_settings(env={**s3_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:99999"}, dotenv=None), show_progress=False)
    assert "controle_cargas" not in str(err.value)


def test_s3_bad_credentials_are_one_line(moto_server_strict, s3_env):
    env = {**s3_env, "AWS_ENDPOINT_URL": moto_server_strict, "MAX_RETRIES": "0"}
    bootstrap(load_settings(env=env, dotenv=None).duckdb_path, scale=0.01, seed=1)
    with pytest.raises(DestinationError, match="S3 refused the credentials") as err:
        sync(load_settings(env=env, dotenv=None), show_progress=False)
    assert "\n" not in str(err.value) and "testing-secret" not in str(err.value)


def test_s3_every_type_and_hostile_names_round_trip(s3_env, typed_lake):
    settings = load_settings(env=s3_env, dotenv=None)
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


def test_s3_partition_column_adds_a_hive_level(s3_env):
    settings = load_settings(env={**s3_env, "PARTITION_COLUMNS": "pedidos=status"}, dotenv=None)
    bootstrap(settings.duckdb_path, scale=0.02, seed=8)
    assert sync(settings, show_progress=False).ok
    mutate(settings.duckdb_path, 0.1)
    assert sync(settings, show_progress=False).ok
    assert all(c.ok for c in verify(settings))
    pedidos = [k for k in _keys(s3_env, "raw/pedidos/") if k.endswith(".parquet")]
    levels = {re.search(r"/run=[^/]+/status=([^/]+)/part-", k).group(1) for k in pedidos}
    assert levels == {"novo", "pago", "enviado", "entregue", "cancelado"}
    _no_duplicate_keys(settings)
    bad = load_settings(env={**s3_env, "PARTITION_COLUMNS": "pedidos=nope"}, dotenv=None)
    report = {t.table: t for t in sync(bad, show_progress=False).tables}      # that table stops, with one line; the others go on
    assert report["pedidos"].status == "failed" and "PARTITION_COLUMNS names pedidos.nope" in report["pedidos"].error
    assert report["clientes"].status == "ok" and report["itens_pedido"].status == "skipped"
