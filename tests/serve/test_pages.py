"""The run page in a real browser (Chromium, headless, driven by Playwright) against a live ``cadence serve``:
the three views, a value recorded after a page opened, and a run's strings shown as text, never run."""

from __future__ import annotations

import os
import shutil

import pytest

from cadence.track.store import RunStore
from tests.serve.server import TIMEOUT, record, serving

pytestmark = pytest.mark.slow

#: The browser: Debian's ``chromium`` (``apt-get install chromium``), or the one ``CADENCE_CHROMIUM`` names.
CHROMIUM = os.environ.get("CADENCE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

#: ``require``: fail, not skip, where the browser is missing (CI sets it: these tests must run there).
REQUIRED = os.environ.get("CADENCE_BROWSER_TESTS") == "require"

#: Markup in every string a run can carry: run, it would set ``window.__xss``.
EVIL = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def _missing(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why}, and CADENCE_BROWSER_TESTS=require")
    pytest.skip(f"{why}: the run page's browser tests need it (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not CHROMIUM:
        _missing("no chromium on PATH")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, timeout=TIMEOUT * 1000)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    with RunStore(runs_dir) as store:
        evil = record(store, EVIL, {"note": EVIL, "optimizer": {"lr": 0.3}}, tags=("<b>x</b>", "sweep"))
        a = record(store, "mnist", {"note": "plain", "optimizer": {"lr": 0.1}}, tags=("sweep",))
        live = record(store, "live", {"optimizer": {"lr": 0.2}}, finish=None, steps=100)
        store.add_event(live, "resumed", f"from {EVIL}", 50)
        store.plan(live, 400)
    (runs_dir / evil / "samples").mkdir()
    (runs_dir / evil / "samples" / "step-100.txt").write_text(f"sampled {EVIL}")
    (runs_dir / evil / "source.diff").write_text(f"+{EVIL}\n")
    with serving(runs_dir) as (url, _):
        yield url, runs_dir, {"evil": evil, "a": a, "live": live}


def _page(browser, errors: list[str], bypass_csp: bool):
    opened = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
    opened.set_default_timeout(TIMEOUT * 1000)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return opened


@pytest.fixture
def page(browser):
    """A page without the server's security policy, which forbids the evaluated scripts Playwright waits with: the
    tests of text shown as text then test the page's own drawing, with no policy to stop what it got wrong."""
    errors: list[str] = []
    opened = _page(browser, errors, bypass_csp=True)
    yield opened
    opened.close()
    assert not errors, f"the page raised: {errors}"


def test_the_pages_work_under_their_own_security_policy(browser, site):
    url, _, ids = site
    errors: list[str] = []
    opened = _page(browser, errors, bypass_csp=False)
    try:
        for path in ("/", f"/runs/{ids['evil']}", f"/compare?runs={ids['a']},{ids['evil']}"):
            opened.goto(url + path)
            opened.wait_for_selector("body[data-ready] .chart canvas" if path != "/" else "body[data-ready] #runs tr")
        assert not errors, f"the policy refused something the page does: {errors}"
    finally:
        opened.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]")


def _no_markup_ran(page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script, main b").count() == 0


def test_the_runs_page_lists_filters_and_sorts_the_runs(page, site):
    url, _, ids = site
    _open(page, f"{url}/")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    assert page.locator(f'tr[data-run="{ids["evil"]}"] td').nth(2).inner_text() == EVIL
    assert page.locator(f'tr[data-run="{ids["live"]}"] [data-status]').inner_text() == "running"
    assert page.locator(f'tr[data-run="{ids["a"]}"] td').last.inner_text() == "1 (1)"  # valid.accuracy: final (best)
    assert page.locator(f'tr[data-run="{ids["live"]}"] td').nth(7).inner_text().startswith("~")  # time left
    _no_markup_ran(page)
    page.fill("#filter-tag", "sweep")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 2")
    assert "tag=sweep" in page.url
    page.click('th[data-column="valid.accuracy"]')
    page.click('th[data-column="name"]')
    assert [rows.nth(i).get_attribute("data-run") for i in range(2)] == [ids["evil"], ids["a"]]  # "<" < "m"
    page.select_option("#filter-status", "running")
    page.fill("#filter-tag", "")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 1")
    assert rows.first.get_attribute("data-run") == ids["live"]


def test_a_run_page_shows_its_curves_config_samples_and_events_as_text(page, site):
    url, _, ids = site
    _open(page, f"{url}/runs/{ids['evil']}")
    assert page.locator('section[data-phase="train"] .chart[data-key="train.loss"] canvas').count() >= 1
    assert page.locator('section[data-phase="valid"] .chart[data-key="valid.accuracy"] canvas').count() >= 1
    assert EVIL in page.locator("h1").inner_text()
    assert page.locator("#config").inner_text().count(EVIL) == 1
    page.wait_for_function("document.getElementById('sample').textContent.length > 0")
    assert page.locator("#sample").inner_text() == f"sampled {EVIL}"
    page.wait_for_function("document.getElementById('diff').textContent.length > 0")
    assert page.locator("#diff").inner_text().strip() == f"+{EVIL}"
    assert "<b>x</b>" in page.locator("#run-header").inner_text()
    _no_markup_ran(page)
    page.check("#log")
    page.fill("#smooth", "10")
    page.press("#smooth", "Enter")
    page.wait_for_selector('tr[data-key="train.loss"] td:text("train.loss(avg10)")')


def test_a_value_recorded_after_the_page_opened_appears_on_it(page, site):
    url, runs_dir, ids = site
    _open(page, f"{url}/runs/{ids['live']}")
    value = page.locator('tr[data-key="train.loss"] td.value')
    assert value.inner_text() == "0.01"
    assert "from " + EVIL in page.locator("#events").inner_text()
    with RunStore(runs_dir) as store:
        store.add_values(ids["live"], {"train.loss": ([101], [0.123456])})
    page.wait_for_function("document.querySelector('tr[data-key=\"train.loss\"] td.value').textContent === '0.12346'",
                           timeout=10_000)
    assert page.locator("#step").inner_text().startswith("step 101")
    _no_markup_ran(page)


def test_compare_overlays_the_runs_and_lists_what_differs(page, site):
    url, _, ids = site
    _open(page, f"{url}/compare?runs={ids['a']},{ids['evil']}")
    differences = page.locator("#differences").inner_text()
    assert "optimizer.lr" in differences and "note" in differences and EVIL in differences
    legend = page.locator('.chart[data-key="train.loss"] .u-legend .u-series')
    assert legend.count() == 3  # the step, and one line per run
    assert EVIL in legend.nth(2).inner_text()
    _no_markup_ran(page)
    _open(page, f"{url}/compare?tag=sweep")
    assert page.locator("#compared tr").count() == 2
    assert page.locator("h1").inner_text() == "Runs tagged sweep"


def test_an_unknown_run_says_so_on_the_page(browser, site):
    url, _, _ = site
    opened = _page(browser, [], bypass_csp=False)
    try:
        response = opened.goto(f"{url}/runs/20990101-000000-0000")
        assert response.status == 404 and "no run '20990101-000000-0000'" in opened.inner_text("body")
    finally:
        opened.close()
