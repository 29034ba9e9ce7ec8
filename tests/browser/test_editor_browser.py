"""The config editor in a real browser: one line of help per field, number inputs with their
ranges, a mark for unsaved changes and a warning before leaving them, one error summary that links
to the fields, an error count on each tab, and tabs usable from the keyboard."""
from __future__ import annotations


import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from support.servers import serve_config_editor

pytestmark = pytest.mark.slow
NAME = "editor-check"


@pytest.fixture(scope="module")
def editor_url(tmp_path_factory, redis_url, redis_server):
    with serve_config_editor(tmp_path_factory.mktemp("editor-browser"), redis_url, NAME) as (url, _):
        yield f"{url}/configs/{NAME}/edit"


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def wait(driver, condition, message, timeout=15):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _: condition(), message)


def leaving_is_warned(driver) -> bool:
    return js(driver, "const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e);"
                      " return e.defaultPrevented")


def test_help_numbers_and_the_unsaved_mark(driver, editor_url):
    driver.set_window_size(1366, 900)
    driver.get(editor_url)
    wait(driver, lambda: js(driver, "return !!(window.htmx && document.querySelector('#editor'))"), "no editor")
    fields = js(driver, "return document.querySelectorAll('#editor .field').length")
    helped = js(driver, "return document.querySelectorAll('#editor .field .hint').length")
    assert helped >= 0.8 * fields, (helped, fields)
    assert "Images per step" in js(driver, "return document.querySelector('#f-batch_size-help').textContent")
    assert js(driver, "return document.querySelector('#f-batch_size').getAttribute('aria-describedby')") \
        .endswith("f-batch_size-help")  # read out with the field
    epochs = driver.find_element(By.ID, "f-epochs")
    assert epochs.get_attribute("type") == "number" and epochs.get_attribute("min") == "1"
    assert driver.find_element(By.ID, "f-learning_rate").get_attribute("step") == "any"
    assert not driver.find_element(By.CSS_SELECTOR, "[data-testid=unsaved]").is_displayed()
    assert not leaving_is_warned(driver)
    driver.find_element(By.CSS_SELECTOR, "label[for=tab-general]").click()  # epochs: among the essentials
    epochs.clear()
    epochs.send_keys("3")
    assert driver.find_element(By.CSS_SELECTOR, "[data-testid=unsaved]").is_displayed()
    assert leaving_is_warned(driver)


def test_one_error_summary_linking_to_fields_and_counts_on_tabs(driver, editor_url):
    driver.find_element(By.CSS_SELECTOR, "label[for=tab-training]").click()
    rate = driver.find_element(By.ID, "f-learning_rate")
    rate.clear()
    rate.send_keys("-0.5")
    resolution = driver.find_element(By.ID, "f-resolution")
    resolution.clear()
    resolution.send_keys("big")
    driver.find_element(By.CSS_SELECTOR, "label[for=tab-lora]").click()
    alpha = driver.find_element(By.ID, "f-lora_alpha")
    alpha.clear()
    alpha.send_keys("-1")
    driver.find_element(By.CSS_SELECTOR, "[data-action=save]").click()
    # the save's answer: its summary links the typed errors (the summary may already be there before it,
    # listing this workspace's missing concept folder, which the editor shows as soon as it opens)
    links_js = "return [...document.querySelectorAll('[data-testid=errors] a')].map(a => a.getAttribute('href'))"
    wait(driver, lambda: "#f-learning_rate" in (js(driver, links_js) or []), "no error summary from the save")
    assert js(driver, "return document.querySelectorAll('#editor-messages .flash-error').length") == 1
    links = js(driver, links_js)
    assert {"#f-learning_rate", "#f-resolution", "#f-lora_alpha"} <= set(links), links
    counts = js(driver, "return Object.fromEntries([...document.querySelectorAll('.tab-labels label')].map("
                        "l => [l.dataset.tab, (l.querySelector('.tab-errors') || {}).textContent || '']))")
    assert counts["training"] == "2" and counts["lora"] == "1" and counts["general"] == "", counts
    assert js(driver, "return document.querySelector('#tab-lora').checked")  # the tab is kept
    assert driver.find_element(By.CSS_SELECTOR, "[data-testid=unsaved]").is_displayed()  # nothing was saved


def test_tabs_from_the_keyboard(driver, editor_url):
    driver.get(editor_url)
    wait(driver, lambda: js(driver, "return !!document.querySelector('#editor')"), "no editor")
    js(driver, "document.querySelector('#tab-general').focus()")
    driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    assert js(driver, "return document.querySelector('#tab-model').checked")
    assert driver.find_element(By.ID, "f-model_type").is_displayed()
    outline = js(driver, "return getComputedStyle(document.querySelector('.tab-labels [data-tab=model]')).outlineStyle")
    assert outline != "none"
