"""The dashboard: widget logic in-process, then the real thing — Voila + headless Chromium.

The browser test starts the dashboard the way ``make dashboard`` does
(``python -m nwlib.dashboard.serve``) on a free loopback port with the
environment pointing at a test lake and the test PostgreSQL schema, drives
Debian's Chromium through Playwright in a 1024-px-wide window, visits every
tab, edits a row, creates a table, runs a plan and a sync from the Sync tab and
checks that the change reached PostgreSQL and that the history gained a run.
It also checks what a person cannot see: every request the page makes stays on
127.0.0.1, nothing in any tab is wider than its box, and every kernel the
visits started is gone after the pages close.  Screenshots go to ``data/runs/``
(``dashboard.png`` holds every tab).  No speed is asserted here: ``make bench``
measures the first render.
"""
from __future__ import annotations

import asyncio
import html
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from clirun import stop_process

from nwlib import dashboard, lake
from nwlib.bootstrap import bootstrap, mutate
from nwlib.dashboard import serve
from nwlib.engine import sync
from nwlib.records import ledger_row
from nwlib.status import Status

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
    graph = dashboard.fk_graph(plan)
    assert graph.startswith("<svg") and graph.count("class='nw-fk'") == 3 and graph.count("class='nw-node'") == 4


def test_charts_are_inline_svg_with_no_plotly_and_no_script(settings, lake_path):
    """The first render imports no plotly or matplotlib and its charts are SVG that shrink with their box."""
    from clirun import env_for

    bootstrap(lake_path, scale=0.02, seed=2)
    code = ("import io, sys, contextlib\nfrom nwlib import dashboard\nfrom nwlib.settings import load_settings\n"
            "root = dashboard.build(settings=load_settings(dotenv=None))\n"
            "stack, html = [root], []\n"
            "while stack:\n    w = stack.pop(); v = getattr(w, 'value', None)\n"
            "    html.append(v if isinstance(v, str) else ''); stack.extend(getattr(w, 'children', ()) or ())\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'matplotlib')))\n"
            "print('\\n'.join(html))")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(settings), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, page = out.stdout.split("\n", 1)
    assert first == "[]", f"the first render imported {first}"
    charts = re.findall(r"<svg class='nw-chart[^>]*>", page)
    assert len(charts) == 2 and all("width='100%'" in c and "viewBox=" in c for c in charts)
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


def _board(settings, lake_path, scale=0.05):
    bootstrap(lake_path, scale=scale, seed=4)
    board = dashboard.Dashboard(settings)
    board.refresh()
    return board


def _banner_rows(board) -> int:
    return int(re.search(r"([\d,]+) rows (?:moved|to move) across", board.sync.msg.value).group(1).replace(",", ""))


def test_dry_run_says_to_insert_update_delete_and_an_empty_plan_says_so(settings, lake_path):
    board = _board(settings, lake_path)
    assert sync(settings, show_progress=False).ok
    mutate(lake_path, fraction=0.05, seed=9)
    board.tab.selected_index = 4
    board.sync.plan.click()
    report, chart = board.sync.report.value, board.sync.report_chart.value
    for label in ("to insert", "to update", "to delete"):
        assert f"<th>{label}</th>" in report and label in chart
    assert "inserted" not in report and "inserted" not in chart and "planned" in report
    assert "rows to move across 4 table(s)" in board.sync.msg.value and _banner_rows(board) > 0

    assert sync(settings, show_progress=False).ok      # now nothing is left to move
    board.sync.plan.click()
    assert _banner_rows(board) == 0
    assert "<svg" not in board.sync.report_chart.value
    assert "Nothing to move" in board.sync.report_chart.value and "already matches the lake" in board.sync.report_chart.value


@pytest.mark.parametrize("full_refresh", [False, True])
def test_progress_bar_ends_on_the_banner_total(settings, lake_path, full_refresh):
    """A full refresh sends every row but moves only the changed ones: the bar's last line counts what the banner counts."""
    board = _board(settings, lake_path)
    assert sync(settings, show_progress=False).ok
    mutate(lake_path, fraction=0.05, seed=5)
    board.tab.selected_index = 4
    board.sync.full.value = full_refresh
    board.sync.run.click()
    banner = _banner_rows(board)
    done = re.search(r"done · ([\d,]+) rows moved", board.sync.label.value)
    assert banner > 0 and done and int(done.group(1).replace(",", "")) == banner, (board.sync.msg.value, board.sync.label.value)
    assert ("rows sent" in board.sync.label.value) == full_refresh


def test_history_counts_each_table_once(settings, lake_path):
    """A 4-table run that wrote 6 ledger rows (a load row and a deletes row for two tables) is a 4-table run."""
    board = _board(settings, lake_path, scale=0.02)
    tables = ["clientes", "pedidos", "itens_pedido", "pagamentos"]
    history = [ledger_row("run-1", t, "merge", "ok", linhas_inseridas=10) for t in tables]
    history += [ledger_row("run-1", t, "merge", "ok", linhas_excluidas=2) for t in ("pedidos", "itens_pedido")]
    board.status = Status("test", 1.0, board.status.tables, tuple(history))
    board.tab.selected_index = 4
    cells = re.findall(r"<td[^>]*>(.*?)</td>", board.sync.history.value.split("<tbody>")[1])
    assert cells[0] == "run-1" and cells[2] == "4" and cells[3] == "40" and cells[5] == "4", cells
    assert "in the last 6 ledger rows" in board.sync.history.value


def test_a_filter_with_no_match_says_so_and_how_to_clear_it(settings, lake_path):
    board = _board(settings, lake_path, scale=0.02)
    board.tab.selected_index = 1
    board.data.table.value = "pedidos"
    board.data.column.value, board.data.op.value, board.data.value.value = "status", "=", "no-such-status"
    board.data.apply.click()
    shown = board.data.rows.value + board.data.info.value
    assert "0–0" not in shown and "rows 0" not in shown
    assert "No row of pedidos matches the filter status = 'no-such-status'" in html.unescape(board.data.rows.value)
    assert "Clear filter" in board.data.rows.value and board.data.next.disabled and board.data.prev.disabled
    board.data.clear.click()
    total = _lake_scalar(lake_path, "SELECT count(*) FROM pedidos")
    assert f"of {total:,}" in board.data.info.value and "nw-rows" in board.data.rows.value


def test_first_render_reads_the_destination_in_the_background(settings, lake_path):
    """In a kernel (a running event loop) the lake shows at once and the destination fills in when it answers."""
    bootstrap(lake_path, scale=0.02, seed=3)
    board = dashboard.Dashboard(settings)

    async def first_render():
        board.refresh(wait=False)
        before = (board.status_pending, board.overview.box.children[0].value)
        for _ in range(600):
            if not board.status_pending:
                break
            await asyncio.sleep(0.05)
        return before

    pending, note = asyncio.run(first_render())
    assert pending and "reading the destination" in note
    text = _texts(board.root)
    assert not board.status_pending and board.status is not None and "reading" not in text and "never" in text


def test_transform_tab_shows_the_last_dbt_run_and_runs_the_checks(make_settings, lake_path):
    """After a real `nw transform`, the tab lists the models with their tests and timings; the checks run on demand."""
    from pathlib import Path

    from nwlib.bootstrap import bootstrap
    from nwlib.transform import transform

    root = Path(__file__).resolve().parents[1]
    bootstrap(lake_path, scale=0.05, seed=1)
    s = make_settings(CHECKS_FILE=root / "checks.yml", DBT_PROJECT_DIR=root / "transform")
    board = dashboard.Dashboard(s)
    board.transform.render()
    assert "no dbt run yet" in board.transform.dbt.value
    assert transform(s).ok
    board.transform.render()
    shown = board.transform.dbt.value
    assert "3 model(s)" in shown and "all passed" in shown and "svg" in shown
    for model in ("cliente_valor", "pedidos_completos", "vendas_diarias"):
        assert model in shown
    assert "4 / 4" in shown or "3 / 3" in shown          # tests passed per model
    board.transform.show_checks()
    assert "checks passed" in board.transform.checks_msg.value and "unique(email)" in board.transform.checks.value


def test_serve_keeps_the_page_offline_and_culls_kernels():
    c = serve.voila_config()
    assert c.Voila.ip == "127.0.0.1" and c.VoilaConfiguration.template == "nw"
    assert c.MappingKernelManager.cull_idle_timeout > 0 and c.MappingKernelManager.cull_connected is False
    assert c.VoilaConfiguration.extension_allowlist == ["@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8"]
    template = (serve.JUPYTER_DIR / "voila" / "templates" / "nw" / "index.html.j2").read_text()
    assert "https://" not in template and "http://" not in template


# --- the browser -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CULL_IDLE_SECONDS = 10   # the test's server culls a page's kernel this long after the page is gone (make dashboard: 60)


@pytest.fixture
def voila(make_settings, pg_url, pg_schema, lake_path, tmp_path):
    """The dashboard served as `make dashboard` serves it, on a lake that has been synced once and then changed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does)")
    bootstrap(lake_path, scale=0.2, seed=11)
    settings = make_settings()
    assert sync(settings, show_progress=False).ok
    mutate(lake_path, fraction=0.02, seed=3)
    port = _free_port()
    env = {**os.environ, "DESTINATION_TYPE": "POSTGRES", "DATABASE_URL": pg_url, "DB_SCHEMA": pg_schema,
           "DUCKDB_PATH": str(lake_path), "DESTINATION_PATH": str(tmp_path), "MAX_RETRIES": "1", "PLOOMBER_STATS_ENABLED": "false"}
    log_path = tmp_path / "voila.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "nwlib.dashboard.serve", f"--port={port}",
                             f"--cull-idle-seconds={CULL_IDLE_SECONDS}", "--cull-interval-seconds=2"],
                            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("voila did not start: " + log_path.read_text()[-2000:])
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", settings, proc, log_path
    finally:
        stop_process(proc, log)


def _kernels(server: subprocess.Popen) -> list[int]:
    """The kernel processes the dashboard's server runs now."""
    import psutil

    found = []
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _wait_for_no_kernels(server: subprocess.Popen, seconds: float) -> float:
    """Seconds until the server runs no kernel (bounded: fails after ``seconds``)."""
    start = time.monotonic()
    while _kernels(server):
        assert time.monotonic() - start < seconds, f"kernels still running {seconds:.0f} s after the pages closed: {_kernels(server)}"
        time.sleep(0.25)
    return time.monotonic() - start


def _clean_page(page, where: str) -> None:
    content = page.content()
    assert "Traceback" not in content, f"{where}: a traceback is shown"
    errors = page.locator(".nw-error").all_inner_texts()
    assert not errors, f"{where}: error shown: {errors}"
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, f"{where}: stderr output shown"


# Everything on the dashboard fits its box at this width: an element whose content is wider than it (spilling out,
# or cut off with "…") or that sticks out of the dashboard is reported.  Boxes made to scroll sideways (.nw-scroll around
# a wide table, a list box, a text area) are not cut off, and what is inside them is theirs to scroll.
OVERFLOW_JS = """(root) => {
  const bad = [], box = root.getBoundingClientRect();
  const scrolls = (el) => el.matches('.nw-scroll, select, textarea');   // made to scroll (ipywidgets' boxes are overflow:auto too: not these)
  const inScroller = (el) => { for (let p = el.parentElement; p && p !== root; p = p.parentElement) if (scrolls(p)) return true; return false; };
  const name = (el) => el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined ? '.' + String(el.className).trim().split(/\\s+/).join('.') : '')
                       + ' "' + (el.innerText || el.textContent || '').trim().slice(0, 40) + '"';
  for (const el of root.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (!r.width || inScroller(el)) continue;
    if (!scrolls(el) && el.clientWidth && el.scrollWidth > el.clientWidth + 1) bad.push('content wider than its box: ' + name(el) + ` ${el.scrollWidth} > ${el.clientWidth}`);
    if (r.right > box.right + 1) bad.push('sticks out of the dashboard: ' + name(el) + ` right ${Math.round(r.right)} > ${Math.round(box.right)}`);
  }
  if (document.documentElement.scrollWidth > window.innerWidth) bad.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${window.innerWidth}`);
  return bad;
}"""


def _fits(page, where: str) -> None:
    bad = page.locator(".nw-board").evaluate(OVERFLOW_JS)
    assert not bad, f"{where} at {page.viewport_size['width']} px: " + "; ".join(bad[:8])


def _kernel_ids(requests: list[str]) -> set[str]:
    return {m.group(1) for u in requests for m in [re.search(r"/api/kernels/([0-9a-f-]{36})", u)] if m}


def test_dashboard_in_headless_chromium(voila, pg, pg_schema, lake_path):
    from playwright.sync_api import expect, sync_playwright

    url, settings, server, log_path = voila
    RUNS.mkdir(parents=True, exist_ok=True)
    shots = []
    lake_rows = sum(_lake_scalar(lake_path, f"SELECT count(*) FROM {t}") for t in ("clientes", "pedidos", "itens_pedido", "pagamentos"))
    requests: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        try:
            # A visit that ends without a word (the browser context just goes, as when a browser crashes):
            # its kernel is culled once it has been idle with no page for CULL_IDLE_SECONDS.
            gone = browser.new_context(viewport={"width": 1024, "height": 900})
            gone_requests: list[str] = []
            gone.on("request", lambda r: gone_requests.append(r.url))
            gone.new_page().goto(url)
            gone.pages[0].wait_for_selector(".nw-overview", timeout=60_000)
            gone.close()
            requests += gone_requests

            context = browser.new_context(viewport={"width": 1024, "height": 1200})
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.on("console", lambda m: console_errors.append(m.text[:300]) if m.type == "error" else None)
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # waits for the kernel, not a timing assertion
            started = time.monotonic()
            page.goto(url)
            page.wait_for_selector(".nw-overview")
            print(f"first render in the browser: {time.monotonic() - started:.1f} s (not asserted; `make bench` measures build())")
            expect(page.locator(".nw-tab-overview svg.nw-chart")).to_have_count(2)
            expect(page.locator(".nw-tab-overview")).to_contain_text(f"{lake_rows:,}")
            expect(page.locator(".nw-tab-overview .nw-note")).to_have_count(0)      # the destination has answered
            _clean_page(page, "Overview")

            def tab(name: str):
                page.locator(".lm-TabBar-tab", has_text=name).click()
                return page.locator(f".nw-tab-{name.lower()}")

            def shoot(name: str):
                _fits(page, name)
                path = RUNS / f"dashboard-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            shoot("overview-first")

            # Data: pick a table, page, filter; a filter that matches nothing says so and how to clear it.
            data = tab("Data")
            expect(data.locator(".nw-rows")).to_be_visible()
            data.locator("select").first.select_option("pedidos")
            pedidos = _lake_scalar(lake_path, "SELECT count(*) FROM pedidos")
            expect(data).to_contain_text(f"of {pedidos:,} · page 1 of")
            expect(data.locator(".nw-rows th").first).to_have_text("id_pedido")
            data.get_by_role("button", name="Next ▶").click()
            expect(data).to_contain_text("· page 2 of")
            data.locator("select").nth(1).select_option("status")
            data.get_by_placeholder("value").fill("no-such-status")
            data.get_by_role("button", name="Apply").click()
            expect(data.locator(".nw-note")).to_contain_text("No row of pedidos matches the filter status = 'no-such-status'")
            expect(data.locator(".nw-note")).to_contain_text("Press Clear filter")
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

            # Sync: plan (rows to insert / update / delete), run, watch the history gain a run.
            sync_tab = tab("Sync")
            history = sync_tab.locator("table.nw-history tbody tr")
            expect(history).to_have_count(1)
            expect(sync_tab.locator(".nw-latency")).to_contain_text(" ms")
            sync_tab.get_by_role("button", name="Dry-run plan").click()
            expect(sync_tab.locator(".nw-report")).to_contain_text("planned")
            expect(sync_tab.locator(".nw-report th")).to_contain_text(["to insert", "to update", "to delete"])
            expect(sync_tab.locator("svg.nw-report-chart")).to_be_visible()
            sync_tab.get_by_role("button", name="Run sync").click()
            expect(history).to_have_count(2)
            expect(sync_tab.locator(".nw-ok")).to_contain_text("rows moved across 5 table(s)")
            banner = re.search(r"([\d,]+) rows moved", sync_tab.locator(".nw-ok").inner_text()).group(1)
            expect(sync_tab).to_contain_text(f"done · {banner} rows moved")
            expect(sync_tab.locator(".nw-fresh")).to_contain_text("up to date")
            expect(sync_tab.locator("svg.nw-runs-chart")).to_be_visible()
            _clean_page(page, "Sync")
            shoot("sync")

            transform_tab = tab("Transform")
            expect(transform_tab).to_contain_text("no dbt run yet")
            transform_tab.get_by_role("button", name="Run the quality checks").click()
            expect(transform_tab).to_contain_text("no checks:")
            _clean_page(page, "Transform")

            tab("Overview")
            expect(page.locator(".nw-tab-overview .nw-overview")).to_contain_text("avaliacoes")
            page.get_by_role("button", name="Refresh").click()
            expect(page.get_by_text("re-read the lake and the destination")).to_be_visible()
            expect(page.locator(".nw-tab-overview .nw-overview")).to_contain_text("avaliacoes")
            _clean_page(page, "Overview after the sync")
            shoot("overview")

            # Closing the tab: the page asks its server to shut its kernel down.
            page.close(run_before_unload=True)
            waited = _wait_for_no_kernels(server, 30 + 3 * CULL_IDLE_SECONDS)
            print(f"kernels running {waited:.1f} s after the last page closed: 0")
        finally:
            browser.close()

    outside = sorted({u for u in requests if urlparse(u).hostname not in ("127.0.0.1", "localhost")})
    assert requests and not outside, f"the page fetched from outside this machine: {outside}"
    assert not console_errors, f"the browser console shows errors: {console_errors[:5]}"
    log = log_path.read_text()
    gone_kernel, *rest = _kernel_ids(gone_requests)
    assert not rest and f"Culling 'idle' kernel 'python3' ({gone_kernel})" in log        # the vanished page's kernel: culled
    last_kernel = (_kernel_ids(requests) - {gone_kernel}).pop()
    assert f"Kernel shutdown: {last_kernel}" in log and f"({last_kernel}) with" not in log   # the closed page's: shut down by it
    refused = re.findall(r"(?<![\w-])403 [A-Z]+ \S+", log)      # "403 POST /uri": a request refused (not a kernel id's digits)
    assert not refused, refused

    nome = pg.execute(f'SELECT nome FROM "{pg_schema}".clientes WHERE id_cliente = 1').fetchone()[0]
    assert nome == "Cliente Editado no Painel"
    assert pg.execute(f'SELECT count(*) FROM "{pg_schema}".avaliacoes').fetchone()[0] == 0
    runs = pg.execute(f'SELECT count(DISTINCT run_id) FROM "{pg_schema}".controle_cargas').fetchone()[0]
    assert runs == 2
    _montage(shots[-1:] + shots[1:-1], RUNS / "dashboard.png")


def _montage(paths, out: Path) -> None:
    """Every tab's screenshot side by side in one picture (Overview first)."""
    from PIL import Image

    images = [Image.open(p) for p in paths]
    width = 1024 // 2
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
