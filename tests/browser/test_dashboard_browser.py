"""The dashboard as a new user first sees it, in a real browser on the whole stack: a "Start your
first training" panel with one picker for Start and Add to queue, no run commands until there is a
run, then the run's newest samples arriving live with a link to the prompt × step grid."""
from __future__ import annotations

import json
import shutil

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.demo import short_run
from support.stack import demo_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh(demo_workspace, demo_config, redis_url, redis_server, tmp_path_factory):
    """A workspace with the demo model and data but no runs yet."""
    root = tmp_path_factory.mktemp("fresh")
    workspace, config_dir = root / "workspace", root / "configs"
    for part in ("models", "datasets"):
        shutil.copytree(demo_workspace[0] / part, workspace / part)
    config_dir.mkdir()
    config = short_run(demo_config, epochs=300, sample_before_training=True, sample_after=20,
                       sample_after_unit="STEP", samples=[{**demo_config["samples"][0], "diffusion_steps": 4}])
    (config_dir / "demo.json").write_text(json.dumps(config))
    with demo_stack((workspace, config_dir), redis_url, redis_server) as stack:
        yield stack


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def wait(driver, condition, timeout, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def test_a_fresh_dashboard_offers_one_start_panel(driver, fresh):
    driver.set_window_size(1366, 900)
    driver.get(fresh.url + "/")
    wait(driver, lambda: js(driver, "return !!window.htmx"), 15)
    assert driver.find_element(By.CSS_SELECTOR, ".card.start h2").text == "Start your first training"
    assert js(driver, "return document.querySelectorAll('select[name=config_name]').length") == 1
    assert js(driver, "return document.querySelectorAll('[data-command]').length") == 0  # nothing to command yet
    assert driver.find_element(By.CSS_SELECTOR, ".samples .empty-hint").is_displayed()
    # the picker and its buttons sit on one line, bottoms aligned
    bottoms = js(driver, "return ['#start-form select', '#start-form button[type=submit]', '[data-action=enqueue]']"
                         ".map(s => Math.round(document.querySelector(s).getBoundingClientRect().bottom))")
    assert max(bottoms) - min(bottoms) <= 3, bottoms
    # the queue panel keeps its card's padding
    card, panel = js(driver, "return [document.querySelector('.card.queue-card').getBoundingClientRect().left,"
                             " document.querySelector('#queue-panel').getBoundingClientRect().left]")
    assert panel - card >= 8


def test_add_to_queue_then_the_run_shows_commands_and_live_samples(driver, fresh):
    driver.find_element(By.CSS_SELECTOR, "[data-action=enqueue]").click()
    # the idle worker takes it at once: the queue's confirmation gives way to the running run
    wait(driver, lambda: js(driver, "return document.querySelectorAll('[data-command]').length") >= 4, 60,
         "the run's commands did not appear")
    wait(driver, lambda: js(driver, "return document.querySelectorAll('#samples .sample').length") > 0, 120,
         "no sample arrived live")
    assert "demo" in driver.find_element(By.CSS_SELECTOR, "#state h1").text  # the picker's config
    check_the_sample_prompt(driver, fresh)
    assert not driver.find_element(By.CSS_SELECTOR, ".samples .empty-hint").is_displayed()
    grid = driver.find_element(By.CSS_SELECTOR, ".card.samples .samples-link a").get_attribute("href")
    assert grid.endswith("/samples")
    assert driver.find_element(By.CSS_SELECTOR, ".card.start h2").text == "Start a training"  # (reloaded above)
    assert fresh.api("POST", "/api/training/stop", json={}).status_code == 202


def check_the_sample_prompt(driver, fresh):
    """The prompt is a real value (the run's first sample prompt), and Sample waits for one."""
    driver.refresh()  # the form is filled from the run the page shows
    wait(driver, lambda: js(driver, "return !!window.htmx"), 15)
    prompt = driver.find_element(By.CSS_SELECTOR, "#custom-sample-form [name=prompt]")
    assert prompt.get_attribute("value") == "a red circle on a blue background"
    button = "[data-command=custom-sample]"
    wait(driver, lambda: js(driver, f"return !document.querySelector('{button}').disabled"), 30, "Sample prompt disabled")
    prompt.clear()
    prompt.send_keys(" ")
    assert js(driver, f"return document.querySelector('{button}').disabled")
    prompt.send_keys("a white square")
    assert not js(driver, f"return document.querySelector('{button}').disabled")
