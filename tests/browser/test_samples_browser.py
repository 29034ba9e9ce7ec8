"""The sample gallery in a real browser (headless Chromium) during a run on the whole stack: a new
sample appears in the prompt-by-step grid without a reload, and the compare view opens."""
from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.demo import short_run

pytestmark = pytest.mark.slow


def cells(driver) -> int:
    return driver.execute_script("return document.querySelectorAll('#sample-grid .grid-cell').length")


def test_gallery_grows_live_and_compare_opens(stack, driver, demo_config):
    sample = {**demo_config["samples"][0], "diffusion_steps": 4}
    run_id = stack.start(short_run(demo_config, epochs=400, sample_after=3, sample_after_unit="STEP",
                                   samples=[sample]))
    try:
        stack.wait_for(lambda: (stack.run_state(run_id) or {}).get("state") == "running", timeout=120)
        driver.get(f"{stack.url}/runs/{run_id}/samples")
        wait = WebDriverWait(driver, 180, poll_frequency=0.2)
        wait.until(lambda d: d.execute_script("return !!(window.htmx && document.querySelector('#sample-grid'))"))
        driver.execute_script("window.notReloaded = true")
        before = cells(driver)
        wait.until(lambda d: cells(d) >= max(2, before + 1), "no new sample appeared in the grid")
        assert driver.execute_script("return window.notReloaded === true"), "the page was reloaded"
        assert driver.execute_script(
            "const i = document.querySelector('#sample-grid .grid-cell img'); i.scrollIntoView();"
            "return i.complete && i.naturalWidth > 0") is not None
        # the grid is swapped live on every new sample: find and click in one go, again if it went stale
        WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#sample-grid .compare-form button").click() or True)
        wait.until(lambda d: "/samples/compare" in d.current_url)
        wait.until(lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('.compare .sample-large img')];"
            "return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0)"))
        steps = driver.execute_script(
            "return [...document.querySelectorAll('.compare figcaption')].map(f => f.textContent)")
        assert all(sample["prompt"] in text for text in steps)
        # before / after: the slider moves where the top image is cut
        driver.execute_script("const r = document.querySelector('[data-split]'); r.value = 20;"
                              "r.dispatchEvent(new Event('input', {bubbles: true}))")
        assert driver.execute_script("return getComputedStyle(document.querySelector('[data-before-after]'))"
                                     ".getPropertyValue('--split').trim()") == "20%"
        # the grid opens at its newest steps, the prompt column fixed beside them
        driver.get(f"{stack.url}/runs/{run_id}/samples")
        wait.until(lambda d: d.execute_script("return !!document.querySelector('.sample-grid-scroll[data-opened]')"))
        assert driver.execute_script("return getComputedStyle(document.querySelector('.sample-grid tbody th'))"
                                     ".position") == "sticky"
    finally:
        stack.api("POST", "/api/training/stop", json={"run_id": run_id})
        stack.wait_until_ended(run_id, timeout=120)
