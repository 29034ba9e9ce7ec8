"""Every page passes an automated accessibility audit: axe-core (vendored under tests/vendor, for the
tests only) run in a real Chromium on the whole stack, with a finished run so that the run, sample and
model pages have content. A serious or critical finding fails the test with what axe says and where."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.demo import short_run
from support.stack import demo_stack
from test_browser import Page

pytestmark = pytest.mark.slow

AXE = (Path(__file__).resolve().parents[1] / "vendor" / "axe.min.js").read_text()
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def page(driver, demo_workspace, demo_config, redis_url, redis_server):
    with demo_stack(demo_workspace, redis_url, redis_server) as stack:
        sample = {**demo_config["samples"][0], "diffusion_steps": 2}
        runs = []
        for rate in (1e-4, 3e-4):  # two runs, for the compare page
            runs.append(stack.start(short_run(demo_config, epochs=1, sample_after=3, sample_after_unit="STEP",
                                              samples=[sample], learning_rate=rate)))
            assert stack.wait_until_ended(runs[-1])["state"] == "completed"
        page = Page(driver, stack)
        page.run_id, page.first_run = runs[-1], runs[0]
        yield page


def pages(page) -> list[str]:
    run = page.run_id
    sample_ids = [s["id"] for s in page.stack.api("GET", f"/api/samples/list?run={run}").json()["samples"]]
    found = ["/", "/runs", f"/runs/{run}", f"/runs/{run}/samples", "/samples",
             f"/runs/compare?run={page.first_run}&run={run}", "/configs/", "/configs/demo/edit", "/playground", "/models", "/fleet", "/system",
             "/system/cleanup?older_than_days=0", "/notifications", "/api/docs", "/datasets", "/datasets/shapes"]
    assert sample_ids, "the run made no sample: the sample page would go unaudited"
    return found + [f"/samples/{sample_ids[0]}"]


def audit(page, path: str) -> list[dict]:
    answer = page.stack.api("GET", path)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"  # audit pages, not errors
    page.driver.get(page.stack.url + path)
    page.wait(lambda: page.js("return document.readyState === 'complete'"), 15)
    if not page.js("return !!window.axe"):
        page.js(AXE)
    page.driver.set_script_timeout(60)
    # Swagger UI's own markup (the vendored API explorer inside /api/docs) is left out: its findings are
    # upstream's; the page around it is audited like every other
    result = page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run({exclude: [['#swagger-ui']]}, {resultTypes: ['violations']})"
        ".then(r => done(r.violations), e => done(String(e)));")
    assert isinstance(result, list), f"axe failed on {path}: {result}"
    return [v for v in result if v.get("impact") in BLOCKING]


def describe(path: str, findings: list[dict]) -> str:
    lines = []
    for finding in findings:
        where = "; ".join(" ".join(map(str, node["target"])) + _why(node) for node in finding["nodes"][:4])
        lines.append(f"{path}: [{finding['impact']}] {finding['id']}: {finding['help']} at {where}")
    return "\n".join(lines)


def _why(node: dict) -> str:
    messages = [check.get("message", "") for check in node.get("any", []) + node.get("all", [])]
    return f" ({messages[0]})" if messages and messages[0] else ""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_the_audit(page, scheme):
    """In the light and the dark palette (the system setting, emulated through the DevTools protocol)."""
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    report = []
    try:
        for path in pages(page):
            findings = audit(page, path)
            if path == f"/runs/{page.run_id}":
                page.driver.save_screenshot(f"/tmp/run-page-{scheme}.png")  # for a person to look at
            if findings:
                report.append(describe(path, findings))
        if scheme == "dark":  # the palette really switched: the page is dark, not the light one again
            assert page.js("return getComputedStyle(document.body).backgroundColor") == "rgb(17, 20, 27)"
    finally:
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert not report, f"axe-core found serious or critical problems ({scheme}):\n" + "\n".join(report)
