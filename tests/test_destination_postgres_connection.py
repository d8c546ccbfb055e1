"""The PostgreSQL session (nwlib.destinations.postgres.connection) against a real server, direct and behind pgbouncer."""
from __future__ import annotations

import pytest

from nwlib.destinations.postgres.connection import Session
from nwlib.errors import DestinationError

pytestmark = pytest.mark.routes("pooler")


@pytest.fixture
def session(settings):
    s = Session(settings.postgres_params(), settings)
    yield s
    s.reset()


def test_an_error_that_leaves_a_statement_unanswered_drops_the_connection(session):
    first = session.conn
    with pytest.raises(RuntimeError), session.errors("test"):
        first.pgconn.send_query(b"SELECT pg_sleep(0.05)")    # sent, never read: as a statement interrupted half-way
        raise RuntimeError("stopped half-way")
    assert session.conn is not first
    assert session.conn.execute("SELECT 1").fetchone() == (1,)


def test_a_driver_error_on_a_busy_connection_is_retried_on_a_new_one(session):
    first = session.conn
    first.pgconn.send_query(b"SELECT 1")
    with pytest.raises(DestinationError) as info, session.errors("test"):
        first.execute("SELECT 2")
    assert "PostgreSQL connection failed" in str(info.value) and "another command is already in progress" in str(info.value)
    assert info.value.transient
    assert session.conn is not first
    assert session.conn.execute("SELECT 3").fetchone() == (3,)


def test_an_error_inside_a_transaction_keeps_the_connection_for_its_rollback(session):
    conn = session.conn
    with pytest.raises(ValueError), session.errors("outer"), conn.transaction():
        conn.execute("CREATE TEMP TABLE nw_t (a int) ON COMMIT DROP")
        with pytest.raises(KeyError), session.errors("inner"):
            raise KeyError("inner")
        assert session.conn is conn            # still inside the transaction: not dropped under it
        raise ValueError("outer")
    assert session.conn is conn                # rolled back and idle: kept
    assert conn.execute("SELECT to_regclass('nw_t')").fetchone() == (None,)


def test_a_connection_lost_inside_a_transaction_of_several_steps_is_not_silently_replaced(session):
    conn = session.conn
    with pytest.raises(DestinationError) as info, session.errors("outer"), conn.transaction():
        with session.errors("inner"):
            conn.close()                        # as a cut would leave it
            session.conn                        # noqa: B018 - a new connection here would commit on its own
    assert info.value.transient and "lost inside a transaction" in str(info.value)
    assert session.conn.execute("SELECT 1").fetchone() == (1,)     # the retry, outside, connects again


def test_a_lost_connection_is_a_connection_failure_even_in_ssl_words():
    """libpq reports a TLS connection cut as 'SSL error: …': once the connection is unusable that is a cut to
    retry, not a certificate to fix."""
    import psycopg

    from nwlib.destinations.postgres.connection import classify

    cut = psycopg.OperationalError("SSL error: unexpected eof while reading")
    err = classify(cut, where="load t", lost=True)
    assert err.transient and "PostgreSQL connection failed" in str(err)
    assert not classify(cut, where="connect").transient      # at connect time it is the TLS set-up that failed
