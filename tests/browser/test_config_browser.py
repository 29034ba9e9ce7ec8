"""The config editor in a real browser (headless Chromium through Selenium) against the app under
gunicorn + gevent: a field is checked as it is typed, without a reload, and a save sticks."""
from __future__ import annotations

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.servers import serve_config_editor
from webapp.config.library import PRESETS_DIR

pytestmark = pytest.mark.slow

NAME = "browser-edit"


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, redis_server):
    with serve_config_editor(tmp_path_factory.mktemp("config-browser"), redis_url, NAME) as (url, config_dir):
        yield url, config_dir


def wait(driver, condition, message: str, timeout: float = 15):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def text_of(driver, css: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null",
                                 css)


def test_type_an_invalid_learning_rate_fix_it_save_and_reload(driver, server):
    url, config_dir = server
    driver.get(f"{url}/configs/{NAME}/edit")
    wait(driver, lambda: driver.execute_script("return !!(window.htmx && document.querySelector('#editor'))"),
         "the editor did not load with htmx")
    driver.find_element(By.CSS_SELECTOR, "label[for=tab-training]").click()
    field = driver.find_element(By.ID, "f-learning_rate")
    preset_rate = json.loads((PRESETS_DIR / "demo.json").read_text())["learning_rate"]
    assert field.is_displayed() and field.get_attribute("value") == repr(preset_rate)
    driver.execute_script("window.notReloaded = true")

    field.clear()
    field.send_keys("-0.5")
    error = "#f-learning_rate-error"
    wait(driver, lambda: text_of(driver, error) == "must be greater than 0",
         f"no error next to the field; it reads {text_of(driver, error)!r}")
    assert driver.execute_script("return window.notReloaded === true"), "the page reloaded"

    field = driver.find_element(By.ID, "f-learning_rate")
    field.clear()
    field.send_keys("0.0005")
    wait(driver, lambda: text_of(driver, error) == "", f"the error stayed: {text_of(driver, error)!r}")

    driver.find_element(By.CSS_SELECTOR, "[data-action=save]").click()
    # "Saved, but ...": this workspace has no demo dataset, so the concept's folder is a field error
    wait(driver, lambda: "Saved" in (text_of(driver, "#editor-messages") or ""),
         f"no 'Saved'; messages: {text_of(driver, '#editor-messages')!r}", timeout=30)
    assert driver.execute_script("return window.notReloaded === true")
    assert json.loads((config_dir / f"{NAME}.json").read_text())["learning_rate"] == 0.0005

    driver.refresh()
    wait(driver, lambda: driver.execute_script("return window.notReloaded === undefined"), "no reload")
    assert driver.find_element(By.ID, "f-learning_rate").get_attribute("value") == "0.0005"
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "/favicon.ico" not in entry["message"]]
    assert not severe, severe
