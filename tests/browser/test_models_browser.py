"""The Models page in a real browser at phone width: cards fit the screen, a tag set through the
htmx form shows on the card, two ticked versions compare, and the CSP is never violated."""
from __future__ import annotations

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.servers import serve_web
from support.model_runs import record_run as _record_run

pytestmark = pytest.mark.slow


def test_models_page_on_a_phone(driver, app, redis_url):
    _record_run(app, "lora-a")
    _record_run(app, "lora-b")
    env = {"OTWEB_WORKSPACE": str(app.config["WORKSPACE"]), "OTWEB_CONFIG_DIR": str(app.config["CONFIG_DIR"]),
           "REDIS_URL": redis_url}
    driver.set_window_size(390, 844)
    try:
        with serve_web(env) as url:
            driver.get(url + "/")
            driver.find_element(By.CSS_SELECTOR, ".nav-toggle").click()  # a phone's menu is folded
            driver.find_element(By.LINK_TEXT, "Models").click()
            WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".version")) == 6)
            width = driver.execute_script("return document.documentElement.clientWidth")
            for card in driver.find_elements(By.CSS_SELECTOR, ".version"):
                assert card.rect["x"] + card.rect["width"] <= width + 1, "a card overflows a phone's screen"
            card = driver.find_elements(By.CSS_SELECTOR, ".version")[0]
            version_id = card.get_attribute("data-version")
            card.find_element(By.NAME, "tag").send_keys("candidate")
            card.find_element(By.CSS_SELECTOR, "[data-action=tag]").click()
            # htmx swaps the whole card: an element found a moment ago may be replaced while read
            WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: "candidate" in d.find_element(By.ID, f"version-{version_id}").text)
            boxes = driver.find_elements(By.CSS_SELECTOR, "input[name=v]")
            boxes[0].click()
            boxes[1].click()
            driver.find_element(By.CSS_SELECTOR, "[data-action=compare]").click()
            WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=config-diff]"))
            problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
            assert not problems, problems
    finally:
        driver.set_window_size(1280, 1800)
