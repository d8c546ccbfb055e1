"""Reading rows back from PostgreSQL (nwlib.destinations.postgres.readback) through psycopg's COPY, against a real server."""
from __future__ import annotations

import tempfile

import pytest

from nwlib.destinations.postgres.connection import Session
from nwlib.destinations.postgres.readback import Reader
from nwlib.errors import DestinationError


@pytest.fixture
def reader(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    s = Session(settings.postgres_params(), settings)
    yield Reader(s, settings.db_schema)
    s.reset()


def test_a_copy_read_back_leaves_no_file_behind_whether_it_works_or_fails(reader, tmp_path):
    rows = reader.copy_out("SELECT 1 AS a, NULL::text AS b UNION ALL SELECT 2, 'x'").read_all()
    assert rows.to_pydict() == {"a": ["1", "2"], "b": [None, "x"]}
    with pytest.raises(DestinationError, match="nw_no_such_table"):
        reader.copy_out("SELECT * FROM nw_no_such_table")
    assert list((tmp_path / "tmp").iterdir()) == []      # the failed one used to stay, empty, in the temp folder
