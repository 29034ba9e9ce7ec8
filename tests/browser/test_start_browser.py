"""The first seconds after Start, in a real browser on the whole stack: the run's stages appear as
a list at once (the current one live, with a ticking timer), the start notice gives way to them,
and the run reaches its first step without a reload."""
from __future__ import annotations

import re
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from support.demo import short_run

pytestmark = pytest.mark.slow
CONFIG = "browser-start"


@pytest.fixture(scope="module")
def stack_configs(demo_config):
    return {CONFIG: short_run(demo_config, epochs=400)}


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def wait(driver, condition, timeout: float, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: condition(), message)


def current_stage(driver) -> str | None:
    return js(driver, "const e = document.querySelector('#state .stage[aria-current=step]');"
                      "return e && e.dataset.stage")


def test_stages_show_from_the_first_second(driver, stack):
    assert stack.api("POST", "/api/queue/pause", json={"paused": True}).status_code == 200
    driver.get(stack.url + "/")
    wait(driver, lambda: js(driver, "return !!(window.htmx && document.querySelector('#start-form'))"), 15)
    Select(driver.find_element(By.CSS_SELECTOR, "#start-form [name=config_name]")).select_by_visible_text(CONFIG)
    driver.find_element(By.CSS_SELECTOR, "#start-form button[type=submit]").click()
    # held by the paused queue: the list says so, and its timer ticks without a reload
    wait(driver, lambda: current_stage(driver) == "queued", 5, "no 'waiting' stage shown")
    wait(driver, lambda: "paused" in js(driver, "return document.querySelector('#flash').textContent"), 10,
         "no notice that the queue is paused")
    # nothing of the previous run's progress stays beside the new run
    assert not js(driver, "return document.querySelector('[data-testid=step]')")
    run_id = int(re.search(r"Run #(\d+)", js(driver, "return document.querySelector('#state h1').textContent"))[1])
    timer = "#state .stage[aria-current=step] .elapsed"
    first = js(driver, f"return document.querySelector('{timer}').textContent")
    wait(driver, lambda: js(driver, f"return document.querySelector('{timer}').textContent") != first, 5,
         "the stage's timer did not tick")

    released = time.monotonic()
    assert stack.api("POST", "/api/queue/pause", json={"paused": False}).status_code == 200
    seen = []

    def running():
        stage = current_stage(driver)
        if stage and (not seen or seen[-1] != stage):
            seen.append(stage)
        return stage not in (None, "queued")
    wait(driver, running, 10, "the run's stages did not move on from waiting")
    # the worker polls its wake-up list every second; the stages follow the run at once
    assert time.monotonic() - released < 4
    wait(driver, lambda: (running(), js(driver, "return !!document.querySelector('[data-testid=step]')"))[1],
         120, "no first step shown")
    stages = js(driver, "return [...document.querySelectorAll('#state .stage')].map("
                        "e => [e.dataset.stage, e.className, e.querySelector('.stage-time')?.textContent || ''])")
    done = {key: when for key, css, when in stages if "stage-done" in css}
    assert {"queued", "starting", "loading", "data"} <= set(done), (
        stages, [(e["event"], e["data"]) for e in stack.api("GET", f"/api/runs/{run_id}/events").json()["events"]
                 if e["event"] in ("status", "run")][:12])
    assert all(re.fullmatch(r"\d+\.\d s|\d+m \d\ds", when) for when in done.values()), stages
    assert current_stage(driver) == "training"
    # a background tab knows without looking: state, percent and the config in its title and icon
    assert re.match(rf"▶ \d+ % {CONFIG} · ", driver.title), driver.title
    assert js(driver, "return document.querySelector('link[rel=icon]').href").startswith("data:image/png")
    assert stack.api("POST", "/api/training/stop", json={}).status_code == 202
    stack.wait_until_ended(run_id, 60)
    wait(driver, lambda: js(driver, "return !!document.querySelector('#state details.stages-done')"), 10,
         "a finished run's stages did not fold away")
    assert driver.title.startswith(("■ ", "✓ ")), driver.title
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and "/favicon.ico" not in e["message"]]
    assert not errors, errors


def test_the_start_notice_gives_way_to_the_live_state(driver, stack):
    js(driver, "window.noticesSeen = []; new MutationObserver(changes => changes.forEach(c => c.addedNodes.forEach("
               "n => n.dataset && n.dataset.transient && window.noticesSeen.push(n.textContent.trim()))))"
               ".observe(document.querySelector('#flash'), {childList: true, subtree: true})")
    Select(driver.find_element(By.CSS_SELECTOR, "#start-form [name=config_name]")).select_by_visible_text(CONFIG)
    driver.find_element(By.CSS_SELECTOR, "#start-form button[type=submit]").click()
    wait(driver, lambda: current_stage(driver) not in (None, "queued") and
         js(driver, "return document.querySelector('#state [data-run-id]').dataset.runId") != "", 15)
    # the "queued, starting…" notice came, and went once the state showed the run
    wait(driver, lambda: js(driver, "return window.noticesSeen.length"), 10, "no start notice")
    assert "starting" in js(driver, "return window.noticesSeen[0]")
    wait(driver, lambda: not js(driver, "return document.querySelector('#flash [data-transient]')"), 10,
         "the start notice stayed beside the live state")
    assert stack.api("POST", "/api/training/stop", json={}).status_code == 202
