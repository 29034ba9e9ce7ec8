"""Every page in a real browser, as a new user sees it, over a workspace with a finished demo run:
plain words on screen (raw config names only on hover), and no page wider than its window."""
from __future__ import annotations

import json
import os

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from support.demo import short_run
from support.stack import demo_stack

pytestmark = pytest.mark.slow
RAW_NAMES = ("STABLE_DIFFUSION_15", "ADAMW", "FLOAT_32", "EPOCH", "learning_rate")


@pytest.fixture(scope="module")
def site(demo_workspace, demo_config, redis_url, redis_server):
    """The stack after one short demo run with samples; yields (stack, {page name: path})."""
    config = short_run(demo_config, sample_before_training=True, sample_after=6, sample_after_unit="STEP")
    (demo_workspace[1] / "pages-demo.json").write_text(json.dumps(config))
    try:
        with demo_stack(demo_workspace, redis_url, redis_server) as stack:
            run_id = stack.start(config)
            stack.wait_until_ended(run_id, 240)
            sample_id = stack.api("GET", f"/api/samples/list?run={run_id}").json()["samples"][0]["id"]
            yield stack, {
                "dashboard": "/", "runs": "/runs", "run": f"/runs/{run_id}",
                "gallery": f"/runs/{run_id}/samples", "sample": f"/samples/{sample_id}",
                "configs": "/configs/", "editor": "/configs/pages-demo/edit", "playground": "/playground",
                "samples": "/samples", "models": "/models", "fleet": "/fleet", "system": "/system",
                "cleanup": "/system/cleanup?older_than_days=0", "datasets": "/datasets", "dataset": "/datasets/shapes"}
    finally:
        (demo_workspace[1] / "pages-demo.json").unlink(missing_ok=True)


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete"
                                    and d.execute_script("return !!window.htmx"))


def test_pages_speak_plainly_with_raw_names_on_hover(driver, site):
    stack, pages = site
    driver.set_window_size(1366, 900)
    for name in ("runs", "run", "sample", "editor"):
        open_page(driver, stack.url + pages[name])
        text = driver.execute_script("return document.body.innerText")
        shown = [raw for raw in RAW_NAMES if raw in text]
        assert not shown, f"{name}: raw names on screen: {shown}"
    open_page(driver, stack.url + pages["run"])
    assert driver.execute_script("return document.querySelector('[title=STABLE_DIFFUSION_15]').textContent") \
        == "Stable Diffusion 1.5"
    open_page(driver, stack.url + pages["sample"])
    made = driver.execute_script("return document.querySelector('time[data-relative]')")
    assert made is not None and "ago" in made.text or made.text == "just now"
    assert made.get_attribute("data-local") == "1" and made.get_attribute("title")  # local time on hover
    assert "KiB" in driver.execute_script("return document.body.innerText") or \
        " B" in driver.execute_script("return document.body.innerText")


# the elements wider than the window, to say what overflows when a page does
OVERFLOW = """
const width = document.documentElement.clientWidth;
return {page: document.documentElement.scrollWidth, window: width,
        wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > width + 1
                 && ![...e.children].some(c => c.getBoundingClientRect().right > width + 1))
              .slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))};
"""


@pytest.mark.parametrize("width", [360, 390, 500, 1366])
def test_no_page_is_wider_than_its_window(driver, site, width):
    stack, pages = site
    driver.set_window_size(width, 844)
    problems = {}
    for name, path in pages.items():
        open_page(driver, stack.url + path)
        found = driver.execute_script(OVERFLOW)
        if found["page"] > found["window"]:
            problems[name] = found
        if os.environ.get("OTWEB_SCREENSHOTS"):  # for a person to look at
            driver.save_screenshot(os.path.join(os.environ["OTWEB_SCREENSHOTS"], f"{name}-{width}.png"))
    if problems:  # the whole list, for the person fixing it
        print(json.dumps(problems, indent=1))
    assert not problems, problems


def test_the_phone_menu_folds_and_the_run_state_stays_in_sight(driver, site):
    stack, pages = site
    driver.set_window_size(390, 844)
    open_page(driver, stack.url + pages["dashboard"])
    visible = "return getComputedStyle(document.querySelector(arguments[0])).display !== 'none'"
    assert not driver.execute_script(visible, "#main-nav") and driver.execute_script(visible, ".nav-toggle")
    driver.find_element("css selector", ".nav-toggle").click()
    assert driver.execute_script(visible, "#main-nav")
    assert driver.find_element("css selector", ".nav-toggle").get_attribute("aria-expanded") == "true"
    links = driver.execute_script("return [...document.querySelectorAll('#main-nav a')].map(a => a.textContent.trim())")
    assert "Runs" in links and "API health" not in links  # developer details live on the System page
    assert driver.execute_script("return getComputedStyle(document.querySelector('#state .run-head')).position") \
        == "sticky"
    driver.set_window_size(1366, 900)
    open_page(driver, stack.url + pages["dashboard"])
    assert driver.execute_script(visible, "#main-nav") and not driver.execute_script(visible, ".nav-toggle")
    # the configs list keeps rename and delete in a menu
    open_page(driver, stack.url + pages["configs"])
    row = "tr[data-config='pages-demo']"
    assert not driver.find_element("css selector", f"{row} .menu .danger").is_displayed()
    driver.find_element("css selector", f"{row} .menu summary").click()
    assert driver.find_element("css selector", f"{row} .menu .danger").is_displayed()
