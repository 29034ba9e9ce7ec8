"""The dashboard in a real browser (headless Chromium through Selenium), as a person uses it, on the
whole stack: gunicorn + gevent, a real worker training the tiny demo model, Redis, htmx + SSE.

The tests run in file order on one module-wide browser and one training run: start it, watch it
live, send commands, reload mid-run, enter bad input, stop it."""
from __future__ import annotations

import re

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from support.demo import short_run

pytestmark = pytest.mark.slow

CONFIG = "browser-short"  # written into the demo configs folder, picked from the select
SCREENSHOT = "/tmp/dashboard.png"
COMMANDS = ("stop", "save", "backup")


@pytest.fixture(scope="module")
def stack_configs(demo_config):
    # long enough to stay running through every test below (the last one stops it); one cheap
    # sample every 5 steps, so that a busy CPU still moves the step counter
    sample = {**demo_config["samples"][0], "diffusion_steps": 4}
    return {CONFIG: short_run(demo_config, epochs=400, sample_after=5, sample_after_unit="STEP", samples=[sample])}


@pytest.fixture(scope="module")
def page(driver, stack):
    return Page(driver, stack)


class Page:
    """Reads the dashboard through the DOM (one script call each: no stale elements mid-swap)."""

    def __init__(self, driver, stack):
        self.driver, self.stack, self.run_id = driver, stack, None

    def wait(self, condition, timeout: float = 60, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(lambda _: condition(), message)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def text(self, css: str) -> str | None:
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null", css)

    def state(self) -> str | None:
        return self.js("const b = document.querySelector('#state .badge'); return b && b.dataset.state")

    def title(self) -> str:
        return self.text("#state h1") or ""

    def step(self) -> int:
        match = re.match(r"(\d+) / (\d+)", self.text("[data-testid=step]") or "")
        return int(match.group(1)) if match else 0

    def enabled(self, command: str) -> bool:
        # an ended run shows no command buttons at all (its next steps instead): absent is not enabled
        return self.js("const b = document.querySelector(`[data-command=${arguments[0]}]`); return !!b && !b.disabled",
                       command)

    def click(self, css: str) -> None:
        # #controls is swapped live: find and click in one go, again if the element went stale
        self.wait(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click() or True, 10)

    def start(self) -> None:
        """Press Start; the run's number is read from the live state (its start notice goes as
        soon as the state shows the run)."""
        before = self.title()
        self.click("#start-form button[type=submit]")
        self.wait(lambda: re.search(r"Run #\d+", self.title()) and self.title() != before, 30,
                  f"the state still shows {self.title()!r}")
        self.run_id = int(re.search(r"Run #(\d+)", self.title()).group(1))

    def flash_after(self, css: str, expected: str, level: str = "info") -> str:
        """Click css; wait for a fresh flash (the old one is cleared first) containing expected."""
        self.js("document.querySelector('#flash').innerHTML = ''")
        self.click(css)
        self.wait(lambda: expected in (self.text(f"#flash .flash-{level}") or ""), 15,
                  f"no {level} flash with {expected!r}; #flash: {self.text('#flash')!r}")
        return self.text("#flash")

    def fill(self, form: str, **values) -> None:
        for name, value in values.items():
            field = self.driver.find_element(By.CSS_SELECTOR, f"{form} [name={name}]")
            field.clear()
            field.send_keys(str(value))

    def loaded_image(self, figure_css: str) -> bool:
        return self.js("const i = document.querySelector(arguments[0] + ' img'); if (!i) return false;"
                       "i.scrollIntoView(); return i.complete && i.naturalWidth > 0", figure_css)

    def wait_running(self, timeout: float = 60) -> None:
        self.wait(lambda: f"Run #{self.run_id}" in self.title() and self.state() == "running", timeout,
                  f"run {self.run_id} not shown running; state {self.state()!r}, title {self.title()!r}")

    def wait_step_above(self, step: int, timeout: float = 90) -> int:
        return self.wait(lambda: self.step() > step and self.step(), timeout,
                         f"the step counter stayed at {self.step()} (was {step})")


def test_start_a_run_and_watch_it_live(page):
    page.driver.get(page.stack.url + "/")
    page.wait(lambda: page.js("return !!(window.htmx && document.querySelector('#start-form'))"), 15)
    Select(page.driver.find_element(By.NAME, "config_name")).select_by_visible_text(CONFIG)
    page.start()
    page.wait_running()
    assert CONFIG in page.title()
    first = page.wait_step_above(0)
    page.wait_step_above(first)  # read twice: it moves without a reload
    assert re.fullmatch(r"\d+\.\d{4}", page.text("[data-testid=loss]"))
    assert re.fullmatch(r"\d+\.\d+ it/s", page.text("[data-testid=speed]"))
    assert page.js("return document.querySelector('#progress progress').value") > 0
    assert all(page.enabled(name) for name in COMMANDS)
    page.wait(lambda: page.loaded_image("#samples .sample"), 60, "no sample image loaded in #samples")


def test_commands_and_a_custom_sample_from_the_page(page):
    assert "Backup sent" in page.flash_after("[data-command=backup]", "Backup sent")
    assert "Save sent" in page.flash_after("[data-command=save]", "Save sent")
    page.fill("#custom-sample-form", prompt="a browser circle", steps=3, width=64, height=64)
    page.flash_after("[data-command=custom-sample]", "Sample queued")
    custom = "#samples .sample:has(.kind-custom)"
    page.wait(lambda: "a browser circle" in (page.text(custom) or ""), 60, "no custom sample figure appeared")
    page.wait(lambda: page.loaded_image(custom), 15, "the custom sample image did not load")
    page.js("window.scrollTo(0, 0)")
    page.driver.save_screenshot(SCREENSHOT)  # for a person to look at; not asserted


def test_reload_mid_run_shows_the_run_and_stays_live(page):
    page.driver.refresh()
    page.wait_running(15)
    before = page.step()
    assert before > 0, f"no progress after a reload: {page.text('#progress')!r}"
    assert page.js("return document.querySelectorAll('#samples .sample').length") > 0
    assert all(page.enabled(name) for name in COMMANDS)
    page.wait_step_above(before)  # the SSE stream reconnected: still live


def test_bad_input_shows_a_message_in_the_page(page):
    form = "#custom-sample-form"
    page.fill(form, prompt="bad width", width=65)
    # the width field's step="8": the browser itself refuses to send it, and says why
    page.js("document.querySelector('#flash').innerHTML = ''")
    page.click("[data-command=custom-sample]")
    assert page.js(f"return document.querySelector('{form} [name=width]').validity.stepMismatch")
    assert page.js(f"return document.querySelector('{form} [name=width]').validationMessage")
    assert page.text("#flash") == ""
    # past what the browser checks (no max on the field): the server's answer lands in #flash
    page.fill(form, width=4104)
    message = page.flash_after("[data-command=custom-sample]", "Width", level="error")  # in plain words
    assert "4096" in message and "Traceback" not in page.driver.page_source
    page.fill(form, width=64)


def test_stop_from_the_page(page):
    page.wait_running(5)
    page.flash_after("[data-command=stop]", "Stop sent")
    page.wait(lambda: page.state() in ("stopped", "completed"), 60, f"state stayed {page.state()!r}")
    page.wait(lambda: not any(page.enabled(name) for name in COMMANDS), 10, "commands still enabled")
    assert page.stack.run_state(page.run_id)["state"] in ("stopped", "completed")
    # allowed: the 400 answer to the bad input above, and the browser asking for a favicon
    errors = [entry["message"] for entry in page.driver.get_log("browser") if entry["level"] == "SEVERE"
              and "status of 400" not in entry["message"] and "/favicon.ico" not in entry["message"]]
    assert not errors, errors


def test_a_new_run_starts_with_its_own_gallery_and_log(page):
    old_run = page.run_id
    Select(page.driver.find_element(By.NAME, "config_name")).select_by_visible_text(CONFIG)
    page.start()
    page.wait_running()
    # the previous run's figures and log lines are gone without a reload...
    assert "a browser circle" not in (page.text("#samples") or "")
    # ...and the fresh gallery is live: the new run's first scheduled sample appears in it
    page.wait(lambda: page.loaded_image("#samples .sample"), 90, "no sample of the new run appeared")
    assert page.run_id != old_run
    assert page.stack.api("POST", "/api/training/stop", json={}).status_code == 202
    page.wait(lambda: page.state() in ("stopped", "completed"), 60, f"state stayed {page.state()!r}")
