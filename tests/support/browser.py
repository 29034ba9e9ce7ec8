"""Debian's chromium driven by Selenium, set up as NOTES-environment says (offline, headless)."""
from __future__ import annotations

import os
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@contextmanager
def chromium(user_data_dir, *extra_args: str):
    """A driver for one chromium with its profile in ``user_data_dir``; ``extra_args`` are added to its command line."""
    os.environ["SE_OFFLINE"] = "true"  # else Selenium Manager tries the network first
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1800",
                f"--user-data-dir={user_data_dir}", *extra_args):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, for asserts
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def js(driver, script, *args):
    """The value of ``script`` run in the page."""
    return driver.execute_script(script, *args)


def wait(driver, condition, timeout, message="", every: float = 0.2):
    """Poll ``condition()`` until it is truthy (its value), or fail with ``message`` after ``timeout`` s."""
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=every).until(lambda _: condition(), message)
