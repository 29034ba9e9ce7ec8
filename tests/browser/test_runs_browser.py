"""The run page and the queue in a real browser (headless Chromium through Selenium) on the whole
stack: the loss chart gains points during a run without a reload; the queue reorders by its buttons."""
from __future__ import annotations

import pytest

from support.demo import short_run
from test_browser import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page(driver, stack):
    return Page(driver, stack)


RESOURCES = "return performance.getEntriesByType('resource').map(e => e.name).slice(-8)"


def settled(page) -> bool:
    """htmx has swapped and processed the new content (a click before that would submit natively)."""
    return page.js("return !document.querySelector('.htmx-added, .htmx-settling, .htmx-swapping, .htmx-request')")


def chart_state(page) -> tuple[int, int]:
    """(points drawn, last step) of the run page's chart; (0, 0) before the first loss value."""
    return page.js("const s = document.querySelector('#chart svg.loss-chart');"
                   "return s ? [+s.dataset.points, +s.dataset.lastStep] : [0, 0]")


def test_the_chart_gains_points_live(page, demo_config):
    stack = page.stack
    run_id = stack.start(short_run(demo_config, epochs=60))
    page.driver.get(f"{stack.url}/runs/{run_id}")
    page.wait(lambda: page.js("return !!window.htmx"), 15)
    page.wait(lambda: chart_state(page)[0] >= 2, 120, "the chart never showed points")
    loads = page.js("return performance.getEntriesByType('navigation').length")
    points, last_step = chart_state(page)
    page.wait(lambda: chart_state(page)[1] > last_step, 60, f"the chart stayed at step {last_step}")
    assert chart_state(page)[0] > points
    assert page.js("return performance.getEntriesByType('navigation').length") == loads  # no reload
    assert page.js("return document.querySelector('#run-status .badge').dataset.state") == "running"
    page.wait(lambda: (page.text("[data-testid=steps]") or "–")[0].isdigit(), 15, "the step count is not live")
    page.run_id = run_id
    page.driver.save_screenshot("/tmp/run_page.png")  # for a person to look at; not asserted


def test_the_queue_reorders_by_the_ui(page, demo_config):
    stack = page.stack
    assert stack.api("POST", "/api/queue/pause", json={"paused": True}).status_code == 200
    first, second = stack.api("POST", "/api/queue", json={"config": short_run(demo_config, epochs=1), "count": 2}
                              ).json()["run_ids"]
    page.driver.get(stack.url + "/")
    order = lambda: page.js("return [...document.querySelectorAll('#queue-panel .queue li[data-run-id]')]"  # noqa: E731
                            ".map(li => +li.dataset.runId)")
    page.wait(lambda: order() == [first, second] and settled(page), 15, f"queue shown as {order()}")
    page.click(f'#queue-panel li[data-run-id="{second}"] button[data-action=up]')
    try:
        page.wait(lambda: order() == [second, first], 15)
    except Exception:
        raise AssertionError(f"queue shown as {order()} after moving #{second} up; server: "
                             f"{stack.api('GET', '/api/queue').text[:300]}; browser log: {page.driver.get_log('browser')};"
                             f" url: {page.driver.current_url}; perf: {page.js(RESOURCES)}")
    assert [r["id"] for r in stack.api("GET", "/api/queue").json()["queue"]] == [second, first]
    page.wait(lambda: settled(page), 15)
    page.click(f'#queue-panel li[data-run-id="{first}"] button[data-action=cancel]')
    page.wait(lambda: order() == [second], 15, f"queue shown as {order()} after canceling #{first}")
    assert stack.api("GET", f"/api/runs/{first}").json()["run"]["state"] == "canceled"
    # clean up: cancel the rest, unpause, stop the long run
    stack.api("DELETE", f"/api/queue/{second}")
    stack.api("POST", "/api/queue/pause", json={"paused": False})
    if getattr(page, "run_id", None):
        stack.api("POST", "/api/training/stop", json={"run_id": page.run_id})
        stack.wait_for(lambda: stack.api("GET", f"/api/runs/{page.run_id}").json()["run"]["state"] != "running", 60)
    assert not [e for e in page.driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]


def test_dashboard_on_a_phone_is_one_column_with_large_buttons(page):
    page.driver.set_window_size(390, 844)
    try:
        page.driver.get(page.stack.url + "/")
        page.wait(lambda: page.js("return !!document.querySelector('#queue-panel .queue')") and settled(page), 15)
        lefts = page.js("return [...document.querySelectorAll('.dashboard > .card')].map(c => c.getBoundingClientRect().left)")
        assert len(set(round(x) for x in lefts)) == 1, f"cards not in one column: {lefts}"
        heights = page.js("return [...document.querySelectorAll('.dashboard button')].map(b => b.getBoundingClientRect().height)"
                          ".filter(h => h > 0)")
        assert heights and min(heights) >= 44, heights
        assert page.js("return document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll
        page.driver.save_screenshot("/tmp/dashboard_phone.png")
    finally:
        page.driver.set_window_size(1280, 1800)


def test_pick_runs_in_the_list_and_compare_them(page):
    from selenium.webdriver.common.by import By
    page.driver.get(f"{page.stack.url}/runs")
    page.wait(lambda: page.js("return !!document.querySelector('#compare-form')"), 15)
    button = "#compare-form button[data-action=compare-runs]"
    assert page.js(f"return document.querySelector('{button}').disabled")
    boxes = page.driver.find_elements(By.CSS_SELECTOR, "input[name=run][form=compare-form]")
    assert len(boxes) >= 2
    picked = [box.get_attribute("value") for box in boxes[:2]]
    for box in boxes[:2]:
        box.click()
    page.wait(lambda: not page.js(f"return document.querySelector('{button}').disabled"), 5, "Compare stayed disabled")
    page.click(button)
    page.wait(lambda: "/runs/compare" in page.driver.current_url, 15, "Compare did not open the compare page")
    assert all(f"run={run_id}" in page.driver.current_url for run_id in picked)
    assert page.text("h1").startswith("Compare runs")
