"""DATABASE_URL as people paste it: parsed like libpq would (or refused naming no part of the password),
shown without the password, and secrets redacted by value without mangling other text."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from nwlib import connstr
from nwlib.errors import ConfigError
from nwlib.settings import load_settings

PASSWORDS = ("p@ss:w/rd?#%", "Sup3r@Secret", "a")


def url_with(password: str, encode: bool, host: str = "127.0.0.1:6543", query: str = "") -> str:
    secret = quote(password, safe="") if encode else password
    return f"postgresql://postgres.abcdefgh:{secret}@{host}/postgres" + (f"?{query}" if query else "")


@pytest.mark.parametrize("encode", [True, False], ids=["encoded", "as pasted"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_is_read_exactly_encoded_or_not(password, encode):
    params = connstr.parse_url(url_with(password, encode, query="sslmode=verify-full&sslrootcert=/etc/ca.crt"))
    assert params == {"user": "postgres.abcdefgh", "password": password, "host": "127.0.0.1", "port": "6543", "dbname": "postgres",
                      "sslmode": "verify-full", "sslrootcert": "/etc/ca.crt"}


@pytest.mark.parametrize("encode", [True, False], ids=["encoded", "as pasted"])
@pytest.mark.parametrize("password", PASSWORDS)
def test_display_and_redaction_show_no_character_of_the_password(password, encode):
    url = url_with(password, encode)
    shown = connstr.display(connstr.parse_url(url))
    assert shown == "postgresql://postgres.abcdefgh:***@127.0.0.1:6543/postgres"
    assert connstr.redact_url(url) == shown
    settings = load_settings(env={"DATABASE_URL": url}, dotenv=None)
    message = f"connection to {url} failed for password {password!r}; the user typed 'a sync' at {shown}"
    redacted = settings.redact(message)
    assert f":{password}@" not in redacted and f"password {password!r}" not in redacted
    if len(password) >= 4:       # a longer one goes wherever it stands, in every form
        assert password not in redacted and quote(password, safe="") not in redacted
    assert "the user typed 'a sync' at postgresql://postgres.abcdefgh:***@127.0.0.1:6543/postgres" in redacted   # untouched


@pytest.mark.parametrize("url, expected", [
    # as libpq reads them: an '@' in a parameter or the database name of a URL whose password is encoded
    ("postgresql://sup:Sup3r%40Secret@127.0.0.1:6432/postgres?application_name=me@work",
     {"user": "sup", "password": "Sup3r@Secret", "host": "127.0.0.1", "port": "6432", "dbname": "postgres", "application_name": "me@work"}),
    # ORM parameters (Prisma's, in Supabase's guide) are dropped
    ("postgresql://postgres.ref:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres?pgbouncer=true&connection_limit=1",
     {"user": "postgres.ref", "password": "pw", "host": "aws-0-eu-west-1.pooler.supabase.com", "port": "6543", "dbname": "postgres"}),
    ("postgresql://u:admin@2024@db.example.com/app",
     {"user": "u", "password": "admin@2024", "host": "db.example.com", "dbname": "app"}),
])
def test_urls_libpq_reads_mean_the_same_and_pasted_ones_what_was_meant(url, expected):
    assert connstr.parse_url(url) == expected


def test_only_the_password_is_redacted_not_words_that_share_its_pieces():
    settings = load_settings(env={"DATABASE_URL": "postgresql://u:admin@2024@db.example.com/app"}, dotenv=None)
    text = "permission denied for schema admin; value 2024-12-31; password admin@2024"
    assert settings.redact(text) == "permission denied for schema admin; value 2024-12-31; password ***"


def test_a_one_letter_password_is_masked_where_it_stands_as_a_password_only():
    settings = load_settings(env={"DATABASE_URL": "postgresql://u:a@h/db"}, dotenv=None)
    assert settings.redact("postgresql://u:a@h/db password=a a table") == "postgresql://u:***@h/db password=*** a table"


def test_a_password_that_is_a_common_word_does_not_mangle_longer_words():
    settings = load_settings(env={"DB_HOST": "h", "DB_USER": "nw", "DB_PASSWORD": "postgres"}, dotenv=None)
    assert settings.redact("postgresql://nw:postgres@h/db (postgres refused)") == "postgresql://nw:***@h/db (*** refused)"


@pytest.mark.parametrize("url", [
    "postgresql://u:pw@/db?host=/var/run/postgresql",
    "postgres://u@[::1]:5432/db",
    "postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
    "postgresql:///db",
])
def test_other_url_forms_parse_like_libpq(url):
    from psycopg.conninfo import conninfo_to_dict

    assert connstr.parse_url(url) == {k: str(v) for k, v in conninfo_to_dict(url).items()}


@pytest.mark.parametrize("url, why", [
    ("mysql://u:p@h/db", "does not start with postgresql://"),
    ("postgresql://u:s3cr3t!!@host:port/db", "no valid host (and numeric port)"),
    ("postgresql://u:s3cr3t!!@h o s t/db", "no valid host"),
    ("postgresql://u:s3cr3t!!@", "password but no host"),                         # cut off when pasted
    ("postgres://", "no host or database"),
    ("postgresql://u:s3cr3t@h/db?bogus=1", "parameter 'bogus'"),
    ("postgresql://u:s3cr3t@h/db?schema=sales", "DB_SCHEMA"),                      # Prisma's: nw writes to DB_SCHEMA
    ("postgresql://u:s3cr3t@b/d@host/db", "read two ways"),                        # a password 's3cr3t@b/d' pasted, or a db 'd@host/db'?
    ("postgresql://u:x?s3cr3t@y?q@host:bad/db", "no valid host"),
])
def test_a_url_that_cannot_be_read_is_refused_in_one_line_without_the_password(url, why):
    with pytest.raises(ConfigError) as err:
        connstr.parse_url(url)
    text = str(err.value)
    assert why in text and "s3cr3t" not in text and "\n" not in text
    assert "s3cr3t" not in connstr.redact_url(url)


@pytest.mark.parametrize("url, override, mode", [
    ("postgresql://postgres:pw@db.abcdefgh.supabase.co:5432/postgres", None, connstr.DIRECT),
    ("postgresql://postgres.abcdefgh:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", None, connstr.SESSION_POOLER),
    ("postgresql://postgres.abcdefgh:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", None, connstr.TRANSACTION_POOLER),
    ("postgresql://u:pw@pgbouncer.internal:6432/db", "transaction", connstr.TRANSACTION_POOLER),
    ("postgresql://u:pw@pgbouncer.internal:6432/db", None, connstr.UNKNOWN),           # not told as fact: "no pooler recognised"
    ("postgresql://u:pw@pgbouncer.internal:6432/db?pgbouncer=true", None, connstr.TRANSACTION_POOLER),
])
def test_connection_mode_is_told_by_supabase_hosts_or_db_pool_mode(url, override, mode):
    env = {"DATABASE_URL": url, **({"DB_POOL_MODE": override} if override else {})}
    assert load_settings(env=env, dotenv=None).connection_mode() == mode


def test_db_pool_mode_must_be_known():
    with pytest.raises(ConfigError, match="DB_POOL_MODE"):
        load_settings(env={"DB_POOL_MODE": "statement"}, dotenv=None)
