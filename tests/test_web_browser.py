"""The web view in headless Chromium, against a run log the real daemon writes: what a person sees.

Chromium is Debian's (installed by tests/sysdeps.need when missing), driven by playwright;
no browser is ever downloaded. Screenshots go to the test's temp dir, and to docs/ with
CRONSUP_SCREENSHOTS=docs (how docs/web-overview.png and docs/web-job.png are made).
"""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import ROOT, DaemonProcess, wait_until
from sysdeps import need
from webserver import WebServer

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DESC = 'Prints colours <script>alert("d")</script> "><img src=x onerror=alert(1)>'
GREEN, RED = "rgb(31, 157, 85)", "rgb(214, 69, 69)"

JOBS = f"""\
[job.hello]
description = '{DESC}'
@every 2s printf '\\033[1;31mred\\033[0m <script>alert(1)</script> "><img src=x onerror=alert(2)>\\n'

[job.broken]
description = "Fails every time"
@every 3s echo "no luck"; exit 3

[job.flaky]
description = "Takes a varying time; fails one time in three"
@every 2s n=$(date +\\%s); sleep 0.$((n \\% 7)); [ $((n \\% 3)) -ne 0 ]

[job.after-hello]
after = ["hello"]
@after echo "hello went well"

[job.grow]
description = "Prints a line every 0.2 s for a minute"
@every 1h for i in $(seq 1 300); do echo "line $i"; sleep 0.2; done
"""


@pytest.fixture(scope="module")
def browser():
    chromium = need("chromium", "chromium", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A daemon running the jobs above, and `cronsup web` on its run log."""
    tmp = tmp_path_factory.mktemp("web")
    d = DaemonProcess(tmp)
    d.write(JOBS)
    d.start()
    server = None
    try:
        d.finished("hello", 3, timeout=60)
        d.finished("broken", 2, timeout=60)
        d.finished("after-hello", 1, timeout=60)
        d.finished("flaky", 6, timeout=60)
        server = WebServer(d.jobs, d.db)
        server.daemon = d
        server.shots = tmp / "shots"
        server.shots.mkdir()
        yield server
    finally:
        if server:
            server.stop()
        d.kill()


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.dialogs = []
    p.console = []
    p.on("dialog", lambda dialog: (p.dialogs.append(dialog.message), dialog.dismiss()))
    p.on("console", lambda message: p.console.append(message.text))
    yield p
    assert p.dialogs == [], "a script from a job ran in the page"
    assert not [m for m in p.console if "Content Security Policy" in m], p.console
    context.close()


def shot(live, page, name: str) -> None:
    path = live.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("CRONSUP_SCREENSHOTS") == "docs":
        shutil.copy(path, ROOT / "docs" / f"{name}.png")


def colour(page, selector: str, prop: str = "fill") -> str:
    return page.eval_on_selector(selector, f"el => getComputedStyle(el).{prop}")


def test_the_overview_shows_every_job_with_its_last_runs_coloured_by_status(live, page):
    page.goto(live.url + "/")
    rows = page.locator("table#jobs tr.job")
    assert rows.count() == 5
    assert page.locator("table#jobs tr.job a.name").all_inner_texts() == ["hello", "broken", "flaky", "after-hello",
                                                                          "grow"]
    hello = 'tr.job[data-job="hello"]'
    assert page.inner_text(f"{hello} a.status") == "success"
    assert colour(page, f"{hello} a.status", "backgroundColor") == GREEN
    assert colour(page, 'tr.job[data-job="broken"] svg.strip rect.s-failed') == RED
    assert page.locator(f"{hello} svg.strip rect").count() >= 3
    assert page.inner_text(f"{hello} .desc") == DESC  # markup in a description is text
    assert "daemon running" in page.inner_text("p.daemon")
    page.fill("input[name=q]", "brok")
    page.click("form.search button")
    assert page.locator("table#jobs tr.job").count() == 1
    page.goto(live.url + "/")
    shot(live, page, "web-overview")


def test_a_job_page_charts_each_runs_duration_and_hovering_a_point_names_the_run(live, page):
    page.goto(live.url + "/jobs/hello")
    assert page.inner_text("#description") == DESC
    points = page.locator("#chart svg a")
    ended = page.locator("table#runs tr.run[data-status=success] td.num a").all_inner_texts()
    assert points.count() == len(ended) >= 3  # a point for each run of the table that ended
    first = points.first
    assert first.locator("title").text_content().startswith(f"run {ended[-1]} · success")
    assert colour(page, "#chart circle.point") == GREEN
    first.hover()
    assert colour(page, "#chart a:hover .point", "strokeWidth") == "2px"
    assert page.locator("table#runs tr.run").count() >= 3
    assert page.locator("a.downstream").inner_text() == "after-hello"
    page.goto(live.url + "/jobs/flaky")
    shot(live, page, "web-job")
    page.goto(live.url + "/jobs/broken")
    assert colour(page, "#chart rect.point") == RED  # a failure: a red square
    page.select_option("select[name=status]", "success")
    page.click("form.filters button")
    assert page.locator("table#runs td.empty").inner_text() == "No runs match."


def test_a_running_runs_output_grows_in_the_page(live, page):
    live.daemon.cli("run", "grow", check=True)
    run = wait_until(lambda: next((r for r in live.json("/api/jobs/grow")["runs"] if r["status"] == "running"), None),
                     timeout=30, what="grow to be running")
    page.goto(live.url + run["url"])
    assert page.inner_text("#run-status") == "running"
    wait_until(lambda: "line 3" in page.inner_text("#output"), timeout=30, what="the first lines")
    wait_until(lambda: int(page.inner_text("#output-bytes")) > 20, timeout=30, what="its size to follow")
    before = page.inner_text("#output").count("\n")
    # (polled from here: the page's CSP forbids the string evaluation wait_for_function uses)
    wait_until(lambda: page.inner_text("#output").count("\n") > before + 5, timeout=30, what="more lines")
    text = page.inner_text("#output")
    lines = [line for line in text.splitlines() if line]
    assert lines == [f"line {i}" for i in range(1, len(lines) + 1)]  # in order, none twice, none lost
    shot(live, page, "web-run-live")


def test_a_runs_output_shows_colours_and_markup_as_text(live, page):
    run = live.json("/api/jobs/hello")["runs"][0]
    page.goto(live.url + run["url"])
    text = page.inner_text("#output")
    assert '<script>alert(1)</script> "><img src=x onerror=alert(2)>' in text and "\x1b" not in text
    assert colour(page, "#output span.fg1", "color") == "rgb(205, 49, 49)"
    assert colour(page, "#output span.b", "fontWeight") == "700"
    assert page.locator("#output img, #output script").count() == 0
    for field in ("exit code", "trigger", "attempt", "CPU", "peak memory", "host"):
        assert page.locator(f"#fields th:text-is('{field}')").count() == 1


def test_the_failures_page_lists_the_failed_runs_newest_first(live, page):
    page.goto(live.url + "/failures")
    rows = page.locator("table#runs tr.run")
    assert rows.count() >= 2
    ids = [int(x) for x in page.locator("table#runs tr.run td.num a").all_inner_texts()]
    assert ids == sorted(ids, reverse=True)
    jobs = page.locator("table#runs tr.run td:nth-child(2)").all_inner_texts()
    statuses = page.locator("table#runs tr.run").evaluate_all("rows => rows.map(r => r.dataset.status)")
    # The jobs that fail; a loaded machine may also stall the daemon past a fire of any job,
    # which is listed as `missed`.
    assert "broken" in jobs
    assert {j for j, s in zip(jobs, statuses) if s != "missed"} <= {"broken", "flaky"}, list(zip(jobs, statuses))
    assert colour(page, "table#runs tr.run span.status", "backgroundColor") == RED
    shot(live, page, "web-failures")


def test_the_graph_draws_the_chain_with_nodes_coloured_by_their_last_result(live, page):
    page.goto(live.url + "/graph")
    nodes = page.locator("#graph g.node")
    assert sorted(nodes.evaluate_all("els => els.map(e => e.dataset.job)")) == ["after-hello", "hello"]
    assert colour(page, '#graph g.node[data-job="hello"] rect') == GREEN
    assert page.locator('#graph path.edge[data-from="hello"][data-to="after-hello"]').count() == 1
    shot(live, page, "web-graph")
    page.click('#graph g.node[data-job="after-hello"]')
    page.wait_for_url("**/jobs/after-hello")


def test_a_long_output_shows_its_first_part_and_loads_the_rest_on_demand(live, page, tmp_path):
    from cronsup.model import RunStatus
    from cronsup.store import open_store

    # A finished run of 200 KiB output in the daemon's own run log would need a job printing it;
    # a second run log written through the store is the same to the view.
    db = tmp_path / "runs.db"
    store = open_store(str(db))
    from cronsup.model import Trigger
    from cronsup.store import NewRun

    [run_id] = store.insert_runs([NewRun("big", Trigger.MANUAL, 1, 1.0e9)], host="h", boot_id="b")
    store.mark_started(run_id, 1, None, 1.0e9)
    data = b"".join(b"line %06d\n" % i for i in range(20000))  # 220 KB
    store.finish_run(run_id, RunStatus.SUCCESS, finished_at=1.0e9 + 5, exit_code=0, output=(data, False))
    store.close()
    server = WebServer(live.jobs, db)
    try:
        page.goto(f"{server.url}/runs/{run_id}")
        first = page.inner_text("#output")
        assert first.startswith("line 000000") and len(first) < len(data) // 2
        for _ in range(4):
            if page.locator("#more-row").is_hidden():
                break
            before = len(page.inner_text("#output"))
            page.click("#more")
            wait_until(lambda: len(page.inner_text("#output")) > before, timeout=20, what="the next part")
        assert page.inner_text("#output").rstrip("\n").splitlines() == data.decode().splitlines()
    finally:
        server.stop()
