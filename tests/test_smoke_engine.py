"""End to end on the sample lake: bootstrap → sync → mutate → sync → verify equal."""
import pytest

from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync
from nwlib.verification import verify


@pytest.mark.routes("pooler", "pg15")
def test_sample_lake_round_trip(settings):
    bootstrap(settings.duckdb_path, scale=0.2, seed=1)
    first = sync(settings, show_progress=False)
    assert first.ok, first.failed
    assert [t.table for t in first.tables] == ["clientes", "pedidos", "itens_pedido", "pagamentos"]
    assert sum(t.inserted for t in first.tables) == 200 + 2000 + 6000 + 2000
    changes = mutate(settings.duckdb_path, 0.05)
    second = sync(settings, show_progress=False)
    assert second.ok, second.failed
    by = {t.table: t for t in second.tables}
    for table, c in changes.items():
        assert by[table].deleted == c["deleted"], table
        assert by[table].inserted == c["inserted"], table
    assert all(c.ok for c in verify(settings)), verify(settings)
    third = sync(settings, show_progress=False)
    assert sum(t.moved for t in third.tables) == 0
