"""The playground in a real browser on the whole stack, after a short demo run: its prompt starts
filled in (the run's first sample prompt) and Sample waits for one; a sample shows a placeholder
tile at once that the image replaces; one status; the slider shows its number; Close is not red."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from support.demo import short_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(stack, demo_config):
    """The shared stack with one completed demo run (its id as stack.run_id)."""
    run_id = stack.start(short_run(demo_config, epochs=1))
    assert stack.wait_until_ended(run_id, 240)["state"] == "completed"
    stack.run_id = run_id
    return stack


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def wait(driver, condition, timeout, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def status(driver) -> str:
    return js(driver, "const e = document.querySelector('[data-testid=playground-status]'); return e && e.textContent.trim()")


def test_playground_feedback(driver, stack):
    driver.set_window_size(1366, 900)
    driver.get(stack.url + "/playground")
    wait(driver, lambda: js(driver, "return !!window.htmx"), 15)
    select = Select(driver.find_element(By.CSS_SELECTOR, "#playground-open select"))
    select.select_by_index(next(i for i, o in enumerate(select.options) if f"run #{stack.run_id} " in o.text))
    driver.find_element(By.CSS_SELECTOR, "#playground-open button").click()
    wait(driver, lambda: status(driver) == "ready", 120, f"the session did not get ready: {status(driver)!r}")
    # one status, not "running" beside "ready"
    assert "running" not in js(driver, "return document.querySelector('.playground .card p').textContent")
    close = driver.find_element(By.CSS_SELECTOR, "form[hx-post$='/playground/close'] button")
    assert "danger" not in close.get_attribute("class")

    form = "#playground-form"
    prompt = driver.find_element(By.CSS_SELECTOR, f"{form} [name=prompt]")
    assert prompt.get_attribute("value") == "a red circle on a blue background"
    sample = driver.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]")
    prompt.clear()
    prompt.send_keys(" ")
    assert not sample.is_enabled()
    prompt.send_keys("a yellow triangle on a green background")
    assert sample.is_enabled()

    slider = driver.find_element(By.CSS_SELECTOR, f"{form} [name=lora_scale]")
    assert driver.find_element(By.ID, "lora-scale-value").text == "1.00"
    js(driver, "arguments[0].value = 0.5; arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", slider)
    assert driver.find_element(By.ID, "lora-scale-value").text == "0.50"

    js(driver, f"document.querySelector('{form} [name=steps]').value = 40")  # long enough to watch
    sample.click()
    wait(driver, lambda: js(driver, "return document.querySelectorAll('#samples .sample.pending').length") == 1, 10,
         "no placeholder tile")
    wait(driver, lambda: "step" in (js(driver, "const e = document.querySelector('#samples .pending-progress');"
                                              " return e ? e.textContent : 'gone'") or ""), 60,
         "the placeholder showed no progress")
    wait(driver, lambda: js(driver, "return document.querySelectorAll('#samples .sample.pending').length") == 0
         and js(driver, "return document.querySelectorAll('#samples .sample:not(.pending)').length") == 1, 120,
         "the image did not replace its placeholder")
    caption = driver.find_element(By.CSS_SELECTOR, "#samples .sample figcaption").text
    assert "playground" in caption and "LoRA 0.50" in caption and "step 0" not in caption
    close.click()
    wait(driver, lambda: stack.api("GET", "/api/playground").json()["session"] is None, 60)
