"""The dashboard: widget logic in-process, then the real thing — Voila + headless Chromium.

The browser test starts ``voila notebooks/dashboard.ipynb`` on a free loopback
port with the environment pointing at a test lake and the test PostgreSQL
schema, drives Debian's Chromium through Playwright, visits every tab, edits a
row, creates a table, runs a sync from the Sync tab and checks that the change
reached PostgreSQL and that the history gained a run.  Screenshots go to
``data/runs/`` (``dashboard.png`` holds every tab).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clirun import stop_process

from nwlib import dashboard, lake
from nwlib.bootstrap import bootstrap, mutate
from nwlib.engine import sync

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "data" / "runs"
CHROMIUM = os.environ.get("NW_CHROMIUM", "/usr/bin/chromium")


def _texts(widget) -> str:
    """Every HTML value in a widget tree (what the page would show as text/markup)."""
    out = []
    stack = [widget]
    while stack:
        w = stack.pop()
        value = getattr(w, "value", None)
        if isinstance(value, str):
            out.append(value)
        stack.extend(getattr(w, "children", ()) or ())
    return "\n".join(out)


def _lake_scalar(path, sql, params=()):
    con = lake.connect(path, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchone()[0]
    finally:
        con.close()


# --- in-process: the widget logic ------------------------------------------------------------

def test_missing_lake_is_one_readable_line(make_settings, tmp_path):
    s = make_settings(DUCKDB_PATH=str(tmp_path / "nope.duckdb"))
    text = _texts(dashboard.build(settings=s))
    assert "lake file not found" in text and "nw bootstrap" in text and "Traceback" not in text


def test_destination_down_keeps_the_lake_visible_and_hides_the_password(make_settings, lake_path):
    bootstrap(lake_path, scale=0.02, seed=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    s = make_settings(DATABASE_URL=f"postgresql://nw:Sup3rSecret@127.0.0.1:{port}/db", MAX_RETRIES="0")
    board = dashboard.Dashboard(s)
    board.refresh()
    text = _texts(board.root)
    assert "nw-error" in text and "destination:" in text
    assert f"{_lake_scalar(lake_path, 'SELECT count(*) FROM pedidos'):,}" in text  # the lake part still renders
    board.tab.selected_index = 4
    text = _texts(board.root)
    assert "Sup3rSecret" not in text and "Traceback" not in text


def test_data_tab_pages_by_key_and_filters_with_parameters(settings, lake_path):
    bootstrap(lake_path, scale=0.02, seed=2)
    board = dashboard.Dashboard(settings, page_size=7)
    board.refresh()
    board.tab.selected_index = 1
    board.data.table.value = "pedidos"
    total = _lake_scalar(lake_path, "SELECT count(*) FROM pedidos")
    seen = []
    for _ in range(total // 7 + 2):
        seen += [int(x) for x in _ids(board.data.rows.value)]
        if board.data.next.disabled:
            break
        board.data.next.click()
    assert sorted(seen) == seen and len(seen) == len(set(seen)) == total
    board.data.prev.click()
    assert f"page {-(-total // 7) - 1:,} of" in board.data.info.value

    board.data.column.value, board.data.op.value, board.data.value.value = "status", "=", "pago"
    board.data.apply.click()
    assert f"of {_lake_scalar(lake_path, 'SELECT count(*) FROM pedidos WHERE status = ?', ['pago']):,}" in board.data.info.value
    board.data.column.value, board.data.value.value = "id_pedido", "1' OR '1'='1"
    board.data.apply.click()
    assert "cannot be compared with pedidos.id_pedido (BIGINT)" in board.data.msg.value and board.data.rows.value == ""
    for marker in ("PK", "FK → clientes.id_cliente", "incremental"):
        assert marker in board.data.schema.value


def _ids(table_html: str) -> list[str]:
    import re

    return re.findall(r"<tr><td class='n'>([\d,]+)</td>", table_html.replace(",", ""))


def test_fk_graph_levels_follow_load_order(settings, lake_path):
    bootstrap(lake_path, scale=0.02, seed=2)
    con = lake.connect(lake_path, read_only=True)
    try:
        from nwlib.plan import read_plan

        plan = read_plan(settings, con)
    finally:
        con.close()
    assert dashboard.load_levels(plan) == {"clientes": 0, "pedidos": 1, "itens_pedido": 2, "pagamentos": 2}
    fig = dashboard.fk_graph(plan)
    assert len([a for a in fig.layout.annotations if a.showarrow]) == 3


# --- the browser -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila(make_settings, pg_url, pg_schema, lake_path, tmp_path):
    """A Voila server for the dashboard on a lake that has been synced once and then changed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does)")
    bootstrap(lake_path, scale=0.2, seed=11)
    settings = make_settings()
    assert sync(settings, show_progress=False).ok
    mutate(lake_path, fraction=0.02, seed=3)
    port = _free_port()
    env = {**os.environ, "DESTINATION_TYPE": "POSTGRES", "DATABASE_URL": pg_url, "DB_SCHEMA": pg_schema,
           "DUCKDB_PATH": str(lake_path), "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "1", "PLOOMBER_STATS_ENABLED": "false"}
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "notebooks" / "dashboard.ipynb"), "--no-browser",
                             f"--port={port}", "--Voila.ip=127.0.0.1"], cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("voila did not start: " + (tmp_path / "voila.log").read_text()[-2000:])
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", settings
    finally:
        stop_process(proc, log)


def _clean_page(page, where: str) -> None:
    content = page.content()
    assert "Traceback" not in content, f"{where}: a traceback is shown"
    errors = page.locator(".nw-error").all_inner_texts()
    assert not errors, f"{where}: error shown: {errors}"
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, f"{where}: stderr output shown"


def test_dashboard_in_headless_chromium(voila, pg, pg_schema, lake_path):
    from playwright.sync_api import expect, sync_playwright

    url, settings = voila
    RUNS.mkdir(parents=True, exist_ok=True)
    shots = []
    lake_rows = sum(_lake_scalar(lake_path, f"SELECT count(*) FROM {t}") for t in ("clientes", "pedidos", "itens_pedido", "pagamentos"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # waits for the kernel, not a timing assertion
            page.goto(url)
            page.wait_for_selector(".nw-overview")
            page.wait_for_selector(".nw-tab-overview .js-plotly-plot")
            expect(page.locator(".nw-tab-overview")).to_contain_text(f"{lake_rows:,}")
            expect(page.locator(".nw-tab-overview .js-plotly-plot")).to_have_count(2)
            _clean_page(page, "Overview")

            def tab(name: str):
                page.locator(".lm-TabBar-tab", has_text=name).click()
                return page.locator(f".nw-tab-{name.lower()}")

            def shoot(name: str):
                path = RUNS / f"dashboard-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            # Data: pick a table, page, filter.
            data = tab("Data")
            expect(data.locator(".nw-rows")).to_be_visible()
            data.locator("select").first.select_option("pedidos")
            pedidos = _lake_scalar(lake_path, "SELECT count(*) FROM pedidos")
            expect(data).to_contain_text(f"of {pedidos:,} · page 1 of")
            expect(data.locator(".nw-rows th").first).to_have_text("id_pedido")
            data.get_by_role("button", name="Next ▶").click()
            expect(data).to_contain_text("· page 2 of")
            data.locator("select").nth(1).select_option("status")
            data.get_by_placeholder("value").fill("pago")
            data.get_by_role("button", name="Apply").click()
            pago = _lake_scalar(lake_path, "SELECT count(*) FROM pedidos WHERE status = 'pago'")
            expect(data).to_contain_text(f"of {pago:,} · page 1 of")
            expect(data.locator(".nw-schema")).to_contain_text("FK → clientes.id_cliente")
            _clean_page(page, "Data")
            shoot("data")

            # Edit: the form starts on a real row; change it.
            edit = tab("Edit")
            nome = edit.locator(".widget-text", has_text="nome").locator("input")
            expect(nome).not_to_have_value("")
            nome.fill("Cliente Editado no Painel")
            edit.get_by_role("button", name="Update").click()
            expect(edit.locator(".nw-ok")).to_contain_text("updated clientes id_cliente=1 (updated_at bumped)")
            _clean_page(page, "Edit")
            shoot("edit")

            # Schemas: create a table with a foreign key.
            schemas = tab("Schemas")
            expect(schemas.locator(".nw-schemas")).to_contain_text("pagamentos")
            schemas.get_by_placeholder("e.g. produtos").fill("avaliacoes")
            schemas.locator("textarea").first.fill("id BIGINT\nid_cliente BIGINT\nnota INTEGER")
            schemas.get_by_placeholder("id", exact=True).fill("id")
            schemas.locator("textarea").nth(1).fill("id_cliente -> clientes.id_cliente")
            schemas.get_by_role("button", name="Create table").click()
            expect(schemas.locator(".nw-ok")).to_contain_text("created table avaliacoes")
            expect(schemas.locator(".nw-schemas")).to_contain_text("id_cliente → clientes.id_cliente")
            _clean_page(page, "Schemas")
            shoot("schemas")

            # Sync: plan, run, watch the history gain a run.
            sync_tab = tab("Sync")
            history = sync_tab.locator("table.nw-history tbody tr")
            expect(history).to_have_count(1)
            expect(sync_tab.locator(".nw-latency")).to_contain_text(" ms")
            sync_tab.get_by_role("button", name="Dry-run plan").click()
            expect(sync_tab.locator(".nw-report")).to_contain_text("planned")
            sync_tab.get_by_role("button", name="Run sync").click()
            expect(history).to_have_count(2)
            expect(sync_tab.locator(".nw-ok")).to_contain_text("rows moved across 5 table(s)")
            expect(sync_tab).to_contain_text("done ·")
            expect(sync_tab.locator(".nw-fresh")).to_contain_text("up to date")
            _clean_page(page, "Sync")
            shoot("sync")

            tab("Overview")
            expect(page.locator(".nw-tab-overview .nw-overview")).to_contain_text("avaliacoes")
            page.get_by_role("button", name="Refresh").click()
            expect(page.get_by_text("re-read the lake and the destination")).to_be_visible()
            expect(page.locator(".nw-tab-overview .nw-overview")).to_contain_text("avaliacoes")
            _clean_page(page, "Overview after the sync")
            shoot("overview")
        finally:
            browser.close()

    nome = pg.execute(f'SELECT nome FROM "{pg_schema}".clientes WHERE id_cliente = 1').fetchone()[0]
    assert nome == "Cliente Editado no Painel"
    assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".avaliacoes').fetchone()[0] == 0
    runs = pg.execute(f'SELECT count(DISTINCT run_id) FROM "{pg_schema}".controle_cargas').fetchone()[0]
    assert runs == 2
    _montage(shots[-1:] + shots[:-1], RUNS / "dashboard.png")


def _montage(paths, out: Path) -> None:
    """Every tab's screenshot side by side in one picture (Overview first)."""
    from PIL import Image

    images = [Image.open(p) for p in paths]
    width = 700
    scaled = [im.resize((width, int(im.height * width / im.width))) for im in images]
    cols = 3
    rows = -(-len(scaled) // cols)
    heights = [max(im.height for im in scaled[r * cols:(r + 1) * cols]) for r in range(rows)]
    sheet = Image.new("RGB", (cols * width, sum(heights)), "white")
    y = 0
    for r in range(rows):
        for c, im in enumerate(scaled[r * cols:(r + 1) * cols]):
            sheet.paste(im, (c * width, y))
        y += heights[r]
    sheet.save(out)
