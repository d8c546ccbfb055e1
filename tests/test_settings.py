"""Settings: environment and .env precedence, paths, DSNs, one-line errors, no secrets in output."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nwlib.errors import ConfigError
from nwlib.settings import Settings, describe, load_settings, redact_url

SECRET = "s3cr3t-P@ss:w/rd"


def test_environment_beats_dotenv_and_overrides_beat_both(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DB_SCHEMA=from_dotenv\nBATCH_SIZE=10\nDB_NAME=dotenv_db\n")
    s = load_settings(env={"DB_SCHEMA": "from_env"}, dotenv=env_file)
    assert s.db_schema == "from_env"         # environment wins over .env
    assert s.batch_size == 10                # .env fills what the environment lacks
    assert s.db_name == "dotenv_db"
    s = load_settings(env={"DB_SCHEMA": "from_env"}, dotenv=env_file, overrides={"db_schema": "from_flag", "BATCH_SIZE": None})
    assert s.db_schema == "from_flag"        # a CLI flag wins over both
    assert s.batch_size == 10                # a flag left unset (None) changes nothing


def test_missing_dotenv_file_is_fine_and_defaults_apply(tmp_path):
    s = load_settings(env={}, dotenv=tmp_path / "absent.env")
    assert s == load_settings(env={}, dotenv=None)
    assert s.destination_type == "POSTGRES" and s.db_schema == "public" and s.uses_embedded_postgres
    assert s.duckdb_path == Path("data") / "nw_lake.duckdb"


@pytest.mark.parametrize("dest, lake, expected", [
    ("/srv/nw", "lake.duckdb", "/srv/nw/lake.duckdb"),               # relative → under DESTINATION_PATH
    ("/srv/nw", "sub/lake.duckdb", "/srv/nw/sub/lake.duckdb"),
    ("/srv/nw", "/abs/lake.duckdb", "/abs/lake.duckdb"),             # absolute stays
    ("data", "data/x.duckdb", "data/x.duckdb"),                      # already under it: not doubled
    ("data", "x.duckdb", "data/x.duckdb"),
])
def test_duckdb_path_is_relative_to_destination_path(dest, lake, expected):
    s = load_settings(env={"DESTINATION_PATH": dest, "DUCKDB_PATH": lake}, dotenv=None)
    assert s.duckdb_path == Path(expected)
    assert s.destination_path == Path(dest)


def test_default_lake_follows_destination_path():
    assert load_settings(env={"DESTINATION_PATH": "/srv/nw"}, dotenv=None).duckdb_path == Path("/srv/nw/nw_lake.duckdb")


def test_database_url_is_used_as_is_including_a_unix_socket_url():
    url = "postgresql://postgres@/db?host=/tmp/sock"
    s = load_settings(env={"DATABASE_URL": url, "DB_HOST": "ignored"}, dotenv=None)
    assert not s.uses_embedded_postgres
    assert s.postgres_params() == {"user": "postgres", "dbname": "db", "host": "/tmp/sock"}


def test_db_variables_make_libpq_keywords_with_ssl_and_the_password_as_is():
    s = load_settings(env={"DB_HOST": "db.example.supabase.co", "DB_PORT": "6543", "DB_NAME": "postgres", "DB_USER": "user.proj",
                           "DB_PASSWORD": SECRET, "DB_SSLMODE": "require", "DB_SSLROOTCERT": "/etc/ssl/root.crt"}, dotenv=None)
    assert s.postgres_params() == {"host": "db.example.supabase.co", "port": "6543", "dbname": "postgres", "user": "user.proj",
                                   "password": SECRET, "sslmode": "require", "sslrootcert": "/etc/ssl/root.crt"}


def test_db_sslmode_and_rootcert_apply_to_a_url_unless_it_sets_them():
    env = {"DATABASE_URL": "postgresql://u:pw@h/db", "DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": "/ca.crt"}
    assert load_settings(env=env, dotenv=None).postgres_params()["sslmode"] == "verify-full"
    env["DATABASE_URL"] += "?sslmode=require"
    params = load_settings(env=env, dotenv=None).postgres_params()
    assert params["sslmode"] == "require" and params["sslrootcert"] == "/ca.crt"


def test_no_server_configured_means_embedded_and_params_are_a_clear_error():
    s = load_settings(env={}, dotenv=None)
    assert s.uses_embedded_postgres
    with pytest.raises(ConfigError, match="DB_HOST or DATABASE_URL"):
        s.postgres_params()


@pytest.mark.parametrize("raw", ["SUPABASE", "supabase", " postgres ", "POSTGRESQL"])
def test_supabase_and_spellings_alias_postgres(raw):
    assert load_settings(env={"DESTINATION_TYPE": raw}, dotenv=None).destination_type == "POSTGRES"


def test_unknown_destination_type_names_the_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_settings(env={"DESTINATION_TYPE": "ORACLE"}, dotenv=None)
    msg = str(info.value)
    assert "DESTINATION_TYPE" in msg and "ORACLE" in msg
    for key in ("POSTGRES", "SUPABASE", "S3", "DELTA", "DATABRICKS"):
        assert key in msg
    assert "\n" not in msg


@pytest.mark.parametrize("var, raw", [
    ("BATCH_SIZE", "lots"), ("BATCH_SIZE", "0"), ("DB_PORT", "54x2"), ("MAX_RETRIES", "-1"), ("RETRY_BASE_SECONDS", "fast"),
    ("CDC_LOOKBACK_SECONDS", "-5"), ("TRUNCATE_BEFORE_LOAD", "maybe"), ("DB_SSLMODE", "sometimes"), ("DB_SCHEMA", "  "),
    ("INCREMENTAL_COLUMNS", "pedidos"), ("DUCKDB_MEMORY_LIMIT", ""),
])
def test_malformed_variable_is_one_line_naming_it(var, raw):
    with pytest.raises(ConfigError) as info:
        load_settings(env={var: raw}, dotenv=None)
    msg = str(info.value)
    assert var in msg and "\n" not in msg
    assert info.value.exit_code == 2


def test_malformed_value_in_dotenv_is_named_too(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("BATCH_SIZE=ten thousand\n")
    with pytest.raises(ConfigError, match="BATCH_SIZE"):
        load_settings(env={}, dotenv=env_file)


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(env={}, dotenv=None, overrides={"no_such": 1})


def test_lists_and_pairs_parse():
    s = load_settings(env={"INCREMENTAL_COLUMNS": "a=changed, b = ts", "APPEND_ONLY_TABLES": "log, events,",
                           "FULL_REPLACE_TABLES": "dim", "TRUNCATE_BEFORE_LOAD": "sim"}, dotenv=None)
    assert dict(s.incremental_columns) == {"a": "changed", "b": "ts"}
    assert s.append_only_tables == {"log", "events"} and s.full_replace_tables == {"dim"}
    assert s.truncate_before_load is True


def test_passwords_never_in_repr_describe_or_redacted_urls():
    url = f"postgresql://u:{SECRET.replace('@', '%40').replace(':', '%3A').replace('/', '%2F')}@h:5432/db?sslmode=require"
    for env in ({"DB_HOST": "h", "DB_PASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "DATABRICKS_TOKEN": SECRET},
                {"DATABASE_URL": url}):
        s = load_settings(env=env, dotenv=None)
        assert SECRET not in repr(s)
        assert "%40" not in repr(s)     # the URL (with its encoded password) is kept out of repr entirely
        shown = describe(s)
        assert all(SECRET not in v and "%40" not in v for v in shown.values())
        assert SECRET not in s.redact(f"failed for {SECRET}")
    assert "s3cr3t" not in redact_url(url)
    assert "s3cr3t" not in redact_url("postgresql://u@h/db?password=s3cr3t")
    s = load_settings(env={"DATABASE_URL": url}, dotenv=None)
    assert describe(s)["database_url"] == "***"


def test_passwords_in_other_urls_are_secrets_too():
    """An endpoint, gateway or Delta URL may carry user:password@ (a MinIO behind basic auth): masked everywhere."""
    from nwlib.settings import effective_settings

    env = {"AWS_ENDPOINT_URL": f"http://minio:{SECRET}@127.0.0.1:9000", "PUSHGATEWAY_URL": "https://u:Gat3wayPass@gw:9091",
           "DESTINATION_TYPE": "S3", "S3_BUCKET_NAME": "b"}
    s = load_settings(env=env, dotenv=None)
    line = f"Invalid endpoint: http://minio:{SECRET}@127.0.0.1:9000 and https://u:Gat3wayPass@gw:9091"
    assert SECRET not in s.redact(line) and "Gat3wayPass" not in s.redact(line)
    shown = {e.variable: str(e.value) for e in effective_settings(env=env, dotenv=None)}
    assert shown["AWS_ENDPOINT_URL"] == "http://minio:***@127.0.0.1:9000" and "Gat3wayPass" not in shown["PUSHGATEWAY_URL"]


@pytest.mark.parametrize("variable, raw, expected", [
    ("AWS_ENDPOINT_URL", "127.0.0.1:9000", "is not an http(s) URL"),
    ("AWS_ENDPOINT_URL", f"minio:{SECRET}@127.0.0.1:9000", "is not an http(s) URL"),
    ("DELTA_URI", "gs://bucket/lake", "neither a local folder nor s3://bucket/folder"),
    ("DELTA_URI", "S3://bucket/lake", "neither a local folder nor s3://bucket/folder"),
    ("DELTA_URI", "s3:/bucket/lake", "neither a local folder nor s3://bucket/folder"),
])
def test_a_malformed_object_store_location_is_one_line_for_the_destination_that_uses_it(variable, raw, expected, tmp_path,
                                                                                       monkeypatch):
    """Checked by the S3 and Delta destinations (a stale value does not stop a PostgreSQL sync); before, an endpoint
    without a scheme was an 'unexpected error' (exit 70) printing the URL as written, and a Delta URI of another
    scheme became a folder of that name under the current directory."""
    from nwlib.destinations import create

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    env = {"DESTINATION_TYPE": "S3" if variable == "AWS_ENDPOINT_URL" else "DELTA", "S3_BUCKET_NAME": "b",
           "DELTA_URI": "s3://b/d", "DESTINATION_PATH": str(tmp_path), variable: raw}
    with pytest.raises(ConfigError, match=re.escape(expected)) as err:
        create(load_settings(env=env, dotenv=None))
    assert SECRET not in str(err.value) and variable in str(err.value) and err.value.exit_code == 2
    assert load_settings(env={**env, "DESTINATION_TYPE": "POSTGRES"}, dotenv=None)      # a PostgreSQL sync does not read it
    assert list((tmp_path / "cwd").iterdir()) == []


def test_a_delta_uri_of_file_scheme_is_that_folder_and_a_colon_in_a_path_is_no_scheme(tmp_path):
    from nwlib.destinations import create
    from nwlib.settings import checked_delta_uri

    dest = create(load_settings(env={"DESTINATION_TYPE": "DELTA", "DELTA_URI": f"file://{tmp_path}/d"}, dotenv=None))
    assert dest.root == f"{tmp_path}/d"
    assert [checked_delta_uri(v) for v in ("file:/abs/x", "file://localhost/a%20b", "lake:2024/x", "/data/a:b/lake", "C:/lake")] == \
        ["/abs/x", "/a b", "lake:2024/x", "/data/a:b/lake", "C:/lake"]
    s = load_settings(env={"DELTA_URI": "/d/v:2024@x"}, dotenv=None)
    assert s.redact("in 2024") == "in 2024"        # a path holds no password: 2024 is not a secret


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(AttributeError):
        s.db_schema = "x"  # type: ignore[misc]
