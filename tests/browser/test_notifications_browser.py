"""Browser notifications in a real Chromium: permission granted through CDP, a browser subscription
made with the page's form, and a system notification (the real Notification API, wrapped only to
count its calls) for a finished demo run, naming the run and opening its page."""
from __future__ import annotations

import pytest

from support.demo import short_run
from test_browser import Page

pytestmark = pytest.mark.slow

# wraps the real constructor: it still constructs a Notification, and records what it was given
RECORD = """
const Real = window.Notification;
window.__notices = [];
class Recorded extends Real {
  constructor(title, options) { super(title, options); window.__notices.push({title, body: options.body, tag: options.tag}); }
}
Object.defineProperty(Recorded, 'permission', {get: () => Real.permission});
window.Notification = Recorded;
"""


def test_a_finished_run_shows_a_system_notification(driver, stack, demo_config):
    page = Page(driver, stack)
    driver.execute_cdp_cmd("Browser.grantPermissions", {"origin": stack.url, "permissions": ["notifications"]})
    driver.get(f"{stack.url}/notifications")
    page.wait(lambda: page.js("return !!window.htmx"), 15)
    # the real API, not a stand-in: native, and granted by the browser
    assert page.js("return typeof Notification === 'function' && /\\[native code\\]/.test(String(Notification))")
    assert page.js("return Notification.permission") == "granted"
    page.click("[data-notify-permission]")
    page.wait(lambda: "allowed" in (page.text("[data-notify-state]") or ""), 10, "the page did not say allowed")
    page.click("#notify-form button[type=submit]")  # run completed and failed are ticked; this browser
    page.wait(lambda: page.js("return document.querySelectorAll('[data-testid=subscription]').length") == 1, 15,
              "the subscription is not listed")
    page.js(RECORD)
    run_id = stack.start(short_run(demo_config))
    page.wait(lambda: page.js("return window.__notices.length") >= 1, 240, "no notification for the finished run")
    notices = page.js("return window.__notices")
    assert notices[0]["title"] == f"Run #{run_id} finished", notices
    assert notices[0]["tag"].startswith("otweb-notice-")
    assert stack.run_state(run_id)["state"] == "completed"
    for sub in stack.api("GET", "/api/notifications").json()["subscriptions"]:  # the demo workspace is shared
        stack.api("DELETE", f"/api/notifications/{sub['id']}")
