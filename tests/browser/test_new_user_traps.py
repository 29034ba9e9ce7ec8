"""Issue 31's traps, as a new user meets them, in a real browser on the whole stack from an empty
workspace: one demo run watched live on the dashboard and its run page (no layout shift, a live
chart whose axes hold still, "Loss" while training), what its end offers, a second run of the
config to compare with, a playground that gives its worker to a training, Close that closes, the
menu's Playground entry, and a missing dataset folder marked as the editor's field error."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from support.browser import js, wait
from support.demo import short_run
from support.stack import demo_stack

pytestmark = pytest.mark.slow

CONFIG, ONE_STEP = "traps", "one-step"
# every layout shift the page makes by itself (not within 0.5 s of a click), with what moved
OBSERVE_SHIFTS = """
window.__shifts = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) { if (e.hadRecentInput) continue;
  window.__shifts.push({value: e.value, time: e.startTime, sources: (e.sources || []).map(s => {
    const n = s.node;
    return n && n.nodeType === 1 ? n.tagName + (n.id ? '#' + n.id : '') + '.' + n.className : '?'; })}); }
}).observe({type: 'layout-shift', buffered: true});
"""
# the run page's chart as drawn at each update: its tick labels per axis
OBSERVE_CHART = """
window.__charts = [];
const keep = () => { const svg = document.querySelector('#chart svg'); if (!svg) return;
  const labels = sel => [...svg.querySelectorAll(sel)].map(t => t.textContent);
  window.__charts.push({x: labels('text.tick[text-anchor=middle]'), y: labels('text.tick[text-anchor=end]'),
                        lr: labels('text.tick.lr'), points: svg.dataset.points}); };
keep(); new MutationObserver(keep).observe(document.querySelector('#chart'), {childList: true});
"""


@pytest.fixture(scope="module")
def fresh(demo_workspace, demo_config, redis_url, redis_server, tmp_path_factory):
    """A workspace with the demo model and data, no runs, and two configs: a short demo with samples
    every few steps, and one of a single step."""
    root = tmp_path_factory.mktemp("traps")
    workspace, config_dir = root / "workspace", root / "configs"
    for part in ("models", "datasets"):
        shutil.copytree(demo_workspace[0] / part, workspace / part)
    config_dir.mkdir()
    samples = [{**s, "diffusion_steps": 3} for s in demo_config["samples"][:2]]
    traps = short_run(demo_config, epochs=3, sample_before_training=True, sample_after=6, sample_after_unit="STEP",
                      samples=samples, learning_rate_scheduler="COSINE", learning_rate=5e-3)
    (config_dir / f"{CONFIG}.json").write_text(json.dumps(traps))
    (config_dir / f"{ONE_STEP}.json").write_text(json.dumps(short_run(demo_config, epochs=1, batch_size=24)))
    with demo_stack((workspace, config_dir), redis_url, redis_server) as stack:
        stack.config_dir = config_dir
        yield stack


def loaded(driver, url):
    driver.get(url)
    wait(driver, lambda: js(driver, "return document.readyState === 'complete' && !!window.htmx"), 20)


def cls(shifts: list[dict]) -> float:
    """Cumulative layout shift as browsers report it (web-vitals): the largest session window of
    shifts less than 1 s apart and within 5 s."""
    best = current = 0.0
    start = last = None
    for shift in sorted(shifts, key=lambda s: s["time"]):
        if start is None or shift["time"] - last > 1000 or shift["time"] - start > 5000:
            start, current = shift["time"], 0.0
        current += shift["value"]
        last = shift["time"]
        best = max(best, current)
    return best


@pytest.fixture(scope="module")
def watched(driver, fresh):
    """Run 1 of CONFIG, started from the dashboard's picker and watched to its end on the dashboard
    and, in a second window, on its run page; what each saw on the way."""
    driver.set_window_size(1366, 900)
    loaded(driver, fresh.url + "/")
    seen = {"heading before": driver.find_element(By.CSS_SELECTOR, ".card.start h2").text}
    js(driver, OBSERVE_SHIFTS)
    Select(driver.find_element(By.NAME, "config_name")).select_by_visible_text(CONFIG)
    driver.find_element(By.CSS_SELECTOR, "#start-form button[type=submit]").click()
    run_id = fresh.wait_for(lambda: (fresh.status() or {}).get("id"), 30)
    dashboard = driver.current_window_handle
    driver.switch_to.new_window("window")
    driver.set_window_size(1366, 900)
    loaded(driver, f"{fresh.url}/runs/{run_id}")
    run_page = driver.current_window_handle
    js(driver, OBSERVE_SHIFTS)
    js(driver, OBSERVE_CHART)
    wait(driver, lambda: js(driver, "return document.querySelector('[data-testid=steps]').textContent")
         .strip()[:1] not in ("–", "0"), 240, "the run did not step")
    seen["labels while training"] = js(driver, "return [...document.querySelectorAll('#run-status dl.stats dt')]"
                                               ".map(d => d.textContent.trim())")
    seen["state while training"] = fresh.run_state(run_id)["state"]
    assert fresh.wait_until_ended(run_id, 300)["state"] == "completed"
    wait(driver, lambda: js(driver, "return document.querySelector('#run-status .badge').textContent").strip()
         == "completed", 30)
    seen["run page shifts"], seen["charts"] = js(driver, "return window.__shifts"), js(driver, "return window.__charts")
    driver.close()
    driver.switch_to.window(dashboard)
    wait(driver, lambda: js(driver, "const b = document.querySelector('#state .badge'); return b && b.dataset.state")
         == "completed", 30, "the dashboard did not show the run's end")
    seen["dashboard shifts"] = js(driver, "return window.__shifts")
    seen["run_id"], seen["run page"] = run_id, run_page
    return seen


def test_the_live_pages_do_not_jump(watched):
    """Point 5: cumulative layout shift under 0.1 on the dashboard and the run page over a demo run."""
    for page in ("dashboard", "run page"):
        shifts = watched[f"{page} shifts"]
        assert cls(shifts) < 0.1, (page, cls(shifts), sorted(shifts, key=lambda s: -s["value"])[:5])


def test_the_live_chart_holds_its_axes_and_rounds_its_ticks(watched):
    """Point 8: "Loss" while training; the step and LR axes drawn once, not rescaled per update;
    round tick labels of at most 3 significant digits."""
    assert watched["state while training"] == "running"
    assert "Loss" in watched["labels while training"] and "Final loss" not in watched["labels while training"]
    charts = [c for c in watched["charts"] if c["x"]]
    assert len(charts) >= 2, charts
    assert all(c["x"] == charts[0]["x"] for c in charts), [c["x"] for c in charts]  # 0 .. total steps throughout
    assert all(c["lr"] == charts[0]["lr"] for c in charts), [c["lr"] for c in charts]  # 0 .. the configured LR
    for chart in charts:
        for label in chart["y"] + chart["lr"]:
            digits = re.sub(r"e.*|[^0-9]", "", label).lstrip("0")
            assert len(digits) <= 3, (label, chart)


def test_the_end_of_a_run_offers_what_comes_next(driver, fresh, watched):
    """Point 6: no greyed buttons; the saved model is a link that downloads it; Download, Open in the
    playground, Run again; the heading no longer asks for a first training."""
    assert watched["heading before"] == "Start your first training"
    wait(driver, lambda: js(driver, "return !!document.querySelector('[data-testid=next-steps]')"), 30,
         "the dashboard offered no next steps")
    wait(driver, lambda: driver.find_element(By.CSS_SELECTOR, ".card.start h2").text == "Start a training", 15)
    assert js(driver, "return document.querySelectorAll('#controls button[disabled]').length") == 0
    assert not driver.find_elements(By.CSS_SELECTOR, "#state code")  # no server path
    link = driver.find_element(By.CSS_SELECTOR, "[data-testid=saved-model]")
    assert link.text.endswith(".safetensors")
    assert requests.get(link.get_attribute("href"), timeout=30).status_code == 200
    offered = js(driver, "return [...document.querySelectorAll('[data-next]')].map(e => e.dataset.next)")
    assert offered == ["download", "playground", "again"], offered  # no earlier run of this config yet
    driver.find_element(By.CSS_SELECTOR, "[data-next=again]").click()
    wait(driver, lambda: re.search(r"/runs/(\d+)$", driver.current_url), 30, "Run again did not open the new run")
    second = int(re.search(r"/runs/(\d+)$", driver.current_url).group(1))
    assert second != watched["run_id"]
    assert fresh.wait_until_ended(second, 300)["state"] == "completed"
    loaded(driver, fresh.url + "/")
    compare = driver.find_element(By.CSS_SELECTOR, "[data-next=compare]")
    compare.click()
    wait(driver, lambda: "/runs/compare" in driver.current_url, 15)
    assert f"run={watched['run_id']}" in driver.current_url and f"run={second}" in driver.current_url
    assert driver.find_elements(By.CSS_SELECTOR, "svg")


def playground_status(driver) -> str:
    return js(driver, "const e = document.querySelector('[data-testid=playground-status]');"
                      " return e ? e.textContent.trim() : ''")


def test_a_playground_gives_its_worker_to_a_training(driver, fresh, watched):
    """Point 1 (and 6's "Open in the playground"): with the playground open on the only worker, a
    started training runs, and the playground says it closed for it."""
    loaded(driver, fresh.url + "/")
    driver.find_element(By.CSS_SELECTOR, "[data-next=playground]").click()
    wait(driver, lambda: driver.current_url.endswith("/playground"), 30, "not taken to the playground")
    wait(driver, lambda: playground_status(driver) == "ready", 180, f"never ready: {playground_status(driver)!r}")
    answer = fresh.api("POST", "/api/training/start", json={"config_name": ONE_STEP})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    # without giving way it waited for the session's 10 idle minutes
    fresh.wait_for(lambda: (fresh.run_state(run_id) or {}).get("state") not in (None, "queued"), 90)
    assert fresh.wait_until_ended(run_id, 240)["state"] == "completed"
    loaded(driver, fresh.url + "/playground")
    said = driver.find_element(By.CSS_SELECTOR, "[data-testid=yielded]").text
    assert f"run #{run_id}" in said, said
    fresh.one_step_run = run_id


def test_a_one_point_chart_says_so(driver, fresh, watched):
    """Point 8: a chart of one step shows the point and says why there is no line, not "1 points"."""
    run_id = getattr(fresh, "one_step_run", None)
    if run_id is None:  # the playground test did not get that far: a run of one step on its own
        run_id = fresh.api("POST", "/api/training/start", json={"config_name": ONE_STEP}).json()["run_id"]
        assert fresh.wait_until_ended(run_id, 240)["state"] == "completed"
    loaded(driver, f"{fresh.url}/runs/{run_id}")
    note = driver.find_element(By.CSS_SELECTOR, "[data-testid=chart-note]").text
    assert "1 points" not in note and "one step" in note.lower(), note
    assert driver.find_elements(By.CSS_SELECTOR, "#chart svg circle")


def test_close_closes_and_the_menu_has_the_playground(driver, fresh, watched):
    """Point 7: after Close no Close or Sample buttons; Playground in the menu, on a phone too."""
    loaded(driver, fresh.url + "/playground")
    select = Select(driver.find_element(By.CSS_SELECTOR, "#playground-open select"))
    select.select_by_index(0)
    driver.find_element(By.CSS_SELECTOR, "#playground-open button").click()
    wait(driver, lambda: playground_status(driver) == "ready", 180, f"never ready: {playground_status(driver)!r}")
    driver.find_element(By.CSS_SELECTOR, "form[hx-post$='/playground/close'] button").click()
    wait(driver, lambda: playground_status(driver) in ("closing", ""), 30)
    assert not driver.find_elements(By.CSS_SELECTOR, "form[hx-post$='/playground/close'] button")
    assert not driver.find_elements(By.CSS_SELECTOR, "button#playground-sample")
    fresh.wait_for(lambda: fresh.api("GET", "/api/playground").json()["session"] is None, 60)
    for width, height in ((1366, 900), (390, 844)):
        driver.set_window_size(width, height)
        loaded(driver, fresh.url + "/")
        if width < 600:
            driver.find_element(By.CSS_SELECTOR, ".nav-toggle").click()
        entry = driver.find_element(By.LINK_TEXT, "Playground")
        assert entry.is_displayed()
    entry.click()
    wait(driver, lambda: driver.current_url.endswith("/playground"), 15)


def test_a_missing_dataset_folder_is_a_field_error(driver, fresh, watched):
    """Point 2, in dark mode: marked as typed, counted on its tab and in the summary after Save,
    which still saves (the folder may come later) and says what to fix before a run."""
    dark = [{"name": "prefers-color-scheme", "value": "dark"}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": dark})
    driver.set_window_size(1366, 900)
    loaded(driver, f"{fresh.url}/configs/{ONE_STEP}/edit")
    driver.find_element(By.CSS_SELECTOR, "label[data-tab=concepts]").click()
    field = driver.find_element(By.CSS_SELECTOR, "[name='concepts[0].path']")
    field.clear()
    field.send_keys("datasets/not-here")
    wait(driver, lambda: "no image folder" in js(driver, "return document.getElementById(arguments[0] + '-error')"
                                                          ".textContent", field.get_attribute("id")), 15)
    driver.find_element(By.CSS_SELECTOR, "[data-action=save]").click()
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=errors]"), 20)
    summary = driver.find_element(By.CSS_SELECTOR, "[data-testid=errors]").text
    assert "Saved" in summary and "not-here" in summary, summary
    assert driver.find_element(By.CSS_SELECTOR, "label[data-tab=concepts] .tab-errors").text == "1"
    saved = json.loads((fresh.config_dir / f"{ONE_STEP}.json").read_text())
    assert saved["concepts"][0]["path"] == "datasets/not-here"
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
