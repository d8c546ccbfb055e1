"""nwlib.watch and `nw sync --watch / --every`: one warm process publishes each change of the lake."""
from __future__ import annotations

import signal
import threading
import time

import duckdb

from nwlib import watch as nwwatch
from nwlib.bootstrap import bootstrap

from clirun import env_for, start_nw


def _wait(predicate, seconds: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError("timed out")


def _status(pg, schema, id_pedido):
    return pg.execute(f'SELECT status FROM "{schema}".pedidos WHERE id_pedido = %s', [id_pedido]).fetchone()


def test_watch_syncs_each_change_with_one_destination(settings, pg):
    bootstrap(settings.duckdb_path, scale=0.05, seed=9)
    cycles, stop = [], threading.Event()
    made = []
    real_create = nwwatch.destinations.create

    def counting_create(s):
        made.append(s)
        return real_create(s)

    nwwatch.destinations.create = counting_create
    try:
        t = threading.Thread(target=nwwatch.watch, args=(settings,), kwargs={"poll": 0.05, "on_cycle": cycles.append, "stop": stop})
        t.start()
        _wait(lambda: cycles and cycles[0].report is not None)
        assert cycles[0].report.ok and cycles[0].moved > 0
        for n, value in enumerate(("pago", "enviado"), start=1):
            with duckdb.connect(str(settings.duckdb_path)) as con:
                con.execute("UPDATE pedidos SET status = ?, updated_at = now()::TIMESTAMP WHERE id_pedido = 7", [value])
            _wait(lambda v=value: _status(pg, settings.db_schema, 7) == (v,))
            _wait(lambda n=n: len(cycles) >= n + 1)
            assert cycles[n].report.ok and cycles[n].moved == 1
        time.sleep(0.3)                      # nothing changed: no sync
        assert len(cycles) == 3
    finally:
        stop.set()
        t.join(10)
        nwwatch.destinations.create = real_create
    assert len(made) == 1, "one destination for every cycle"


def test_a_locked_lake_is_tried_again_not_fatal(settings, pg):
    bootstrap(settings.duckdb_path, scale=0.02, seed=9)
    writer = duckdb.connect(str(settings.duckdb_path))        # another process would hold it like this
    cycles, stop = [], threading.Event()
    t = threading.Thread(target=nwwatch.watch, args=(settings,), kwargs={"poll": 0.05, "on_cycle": cycles.append, "stop": stop})
    t.start()
    try:
        _wait(lambda: len(cycles) >= 1)
        writer.execute("UPDATE clientes SET nome = 'novo nome' WHERE id_cliente = 1")
        writer.close()
        _wait(lambda: any(c.report is not None and c.report.ok for c in cycles))
        assert pg.execute(f'SELECT nome FROM "{settings.db_schema}".clientes WHERE id_cliente = 1').fetchone() == ("novo nome",)
    finally:
        stop.set()
        t.join(10)


def test_nw_sync_watch_publishes_within_a_second_and_stops_on_ctrl_c(settings, pg):
    bootstrap(settings.duckdb_path, scale=0.2, seed=9)
    proc = start_nw(env_for(settings), "sync", "--watch", "--no-progress")
    try:
        first = proc.stdout.readline()
        assert first.startswith("watching ") and "Ctrl-C stops" in first
        assert " sync #1 ok: " in proc.stdout.readline()
        latencies = []
        for value in ("pago", "enviado", "entregue"):
            with duckdb.connect(str(settings.duckdb_path)) as con:
                con.execute("UPDATE pedidos SET status = ?, updated_at = now()::TIMESTAMP WHERE id_pedido = 11", [value])
            latencies.append(_wait(lambda v=value: _status(pg, settings.db_schema, 11) == (v,)))
            lines = [proc.stdout.readline() for _ in range(1)]
            while "1 updated" not in lines[-1] and len(lines) < 4:    # a checkpoint of the WAL may add a no-change sync
                lines.append(proc.stdout.readline())
            assert "ok: 0 inserted, 1 updated, 0 deleted" in lines[-1], lines
        print(f"\n[watch] change → PostgreSQL: {', '.join(f'{x:.2f}' for x in latencies)} s")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after" in out and "Traceback" not in err


def test_nw_sync_every_prints_json_lines_and_refuses_a_dry_run(settings, pg):
    import json

    from clirun import one_line_error, run_nw

    bootstrap(settings.duckdb_path, scale=0.02, seed=9)
    env = env_for(settings)
    refused = run_nw(env, "sync", "--every", "1", "--dry-run")
    assert refused.returncode == 2 and "--watch and --every take no --dry-run" in one_line_error(refused)
    assert run_nw(env, "sync", "--every", "0").returncode == 2
    proc = start_nw(env, "sync", "--every", "0.3", "--json")
    try:
        docs = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert [d["cycle"] for d in docs] == [1, 2, 3] and all(d["report"]["ok"] and d["error"] is None for d in docs)
    assert sum(t["inserted"] for t in docs[0]["report"]["tables"]) > 0
    assert all(t["inserted"] + t["updated"] + t["deleted"] == 0 for d in docs[1:] for t in d["report"]["tables"])
