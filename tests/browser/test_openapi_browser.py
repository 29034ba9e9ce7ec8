"""The API docs page renders the OpenAPI document in a real browser under the CSP, from vendored
files only (the document itself: unit/test_openapi.py)."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.servers import serve_web


@pytest.mark.slow
def test_the_docs_render_in_a_browser_under_the_csp(driver, tmp_path, redis_url):
    env = {"OTWEB_WORKSPACE": str(tmp_path), "OTWEB_CONFIG_DIR": str(tmp_path), "REDIS_URL": redis_url}
    with serve_web(env) as url:
        driver.get(url + "/system")
        driver.find_element(By.CSS_SELECTOR, "[data-testid=api-docs]").click()
        WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 40)
        assert "OneTrainer Web API" in driver.find_element(By.CSS_SELECTOR, ".info .title").text
        problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert not problems, problems  # a CSP refusal is logged as SEVERE
