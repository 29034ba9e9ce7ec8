"""Issue 31 as a new user meets it, in a real Chromium at 1366×900, at 390×844 and in dark mode, on
the whole stack with two identical finished demo runs (one module-wide stack): the phone's menu in
dark mode, charts on a phone, plain words, the editor, the API docs inside the app, compare, phone
tables and the samples gallery."""
from __future__ import annotations

import io
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from support.demo import short_run
from support.stack import demo_stack
from test_browser import Page

pytestmark = pytest.mark.slow

PHONE, WIDE = (390, 844), (1366, 900)
# the WCAG contrast ratio of an element's text on the first opaque background behind it
CONTRAST = """
const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const f = v => { v /= 255; return v <= .03928 ? v / 12.92 : ((v + .055) / 1.055) ** 2.4; };
  return .2126 * f(r) + .7152 * f(g) + .0722 * f(b); };
const el = arguments[0];
let bg = null;
for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
  if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) { bg = c.slice(0, 3); break; } }
bg = bg || [255, 255, 255];
const [a, b] = [lum(parse(getComputedStyle(el).color).slice(0, 3)), lum(bg)];
return (Math.max(a, b) + .05) / (Math.min(a, b) + .05);"""


@pytest.fixture(scope="module")
def page(driver, demo_workspace, demo_config, redis_url, redis_server):
    with demo_stack(demo_workspace, redis_url, redis_server) as stack:
        samples = [{**s, "diffusion_steps": 2} for s in demo_config["samples"]]
        config = short_run(demo_config, epochs=1, sample_after=2, sample_after_unit="STEP", samples=samples)
        runs = []
        for _ in range(2):  # the same config twice: identical curves
            runs.append(stack.start(config))
            assert stack.wait_until_ended(runs[-1])["state"] == "completed"
        page = Page(driver, stack)
        page.first_run, page.run_id = runs
        yield page
        driver.set_window_size(*WIDE)
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


@contextmanager
def viewing(page, size, scheme="light"):
    page.driver.set_window_size(*size)
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    try:
        yield
    finally:
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        page.driver.set_window_size(*WIDE)


def open_page(page, path: str) -> None:
    page.driver.get(page.stack.url + path)
    page.wait(lambda: page.js("return document.readyState === 'complete'"), 15)


def test_the_menu_button_reads_in_dark_mode_on_a_phone(page):
    """Point 3: the only navigation on a phone is legible (WCAG AA, 4.5:1) in both palettes."""
    for scheme in ("dark", "light"):
        with viewing(page, PHONE, scheme):
            open_page(page, "/")
            button = page.driver.find_element(By.CSS_SELECTOR, ".nav-toggle")
            assert button.is_displayed()
            ratio = page.js(CONTRAST, button)
            assert ratio >= 4.5, f"the Menu button's contrast is {ratio:.2f}:1 in {scheme} mode"


def test_the_charts_read_on_a_phone(page):
    """Point 4: at 390 px every label of the run's loss chart and of the compare chart is at least
    11 CSS px, and none (the learning rate's axis title included) is cut by the chart's edge."""
    with viewing(page, PHONE):
        for path in (f"/runs/{page.run_id}", f"/runs/compare?run={page.first_run}&run={page.run_id}"):
            open_page(page, path)
            sizes = page.js("""
                const svg = [...document.querySelectorAll('svg.loss-chart')].find(s => s.getBoundingClientRect().width > 0);
                if (!svg) return null;
                const scale = svg.getScreenCTM().a, box = svg.getBoundingClientRect();
                return [...svg.querySelectorAll('text')].map(t => {
                  const r = t.getBoundingClientRect();
                  return {text: t.textContent, px: parseFloat(getComputedStyle(t).fontSize) * scale,
                          inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5 && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5};
                });""")
            assert sizes, f"{path}: no chart shown on a phone"
            page.driver.save_screenshot(f"/tmp/phone-chart-{'compare' if 'compare' in path else 'run'}.png")  # for a person
            small = [(s["text"], round(s["px"], 1)) for s in sizes if s["px"] < 11]
            assert not small, f"{path}: labels under 11 CSS px at 390 px: {small}"
            clipped = [s["text"] for s in sizes if not s["inside"]]
            assert not clipped, f"{path}: labels cut by the chart's edge: {clipped}"
            if path.startswith("/runs/compare"):
                continue
            assert any(s["text"] == "learning rate" for s in sizes)


def test_words_are_plain_and_epochs_count_from_one(page):
    """Point 9: Models shows "LoRA · safetensors" and the model type's name; the Method filters say
    "LoRA"; the dashboard's log has no enum name and no Python dict; one epoch convention."""
    open_page(page, "/models")
    cards = page.text(".versions") or ""
    assert "LoRA · safetensors" in cards, cards[:500]
    assert not re.search(r"\bLORA\b|SAFETENSORS|STABLE_DIFFUSION", cards), cards[:500]
    # a one-epoch run: its model was saved in epoch 1 (of 1), as the dashboard counts
    assert "(epoch 1)" in cards and "(epoch 0)" not in cards, cards[:500]
    for path in ("/models", "/runs"):
        open_page(page, path)
        options = page.js("return [...document.querySelectorAll('select[name=method] option')].map(o => o.textContent.trim())")
        assert "LoRA" in options and "LORA" not in options, (path, options)
    open_page(page, "/models")
    page.driver.find_element(By.CSS_SELECTOR, ".version header a").click()
    page.wait(lambda: page.js("return !!document.querySelector('.lineage')"), 15)
    lineage = page.text(".lineage") or ""
    assert "Stable Diffusion 1.5" in lineage and "STABLE_DIFFUSION_15" not in lineage and "LORA" not in lineage, lineage
    open_page(page, "/")
    log = page.text(".log-lines") or ""
    assert "optimizer AdamW" in log, log[-800:]
    assert not re.search(r"\{'|ADAMW|\bLORA\b|STABLE_DIFFUSION", log), log[-800:]


def test_the_editor_shows_whole_values_and_the_essentials_first(page):
    """Point 10: no input cuts its value, on any tab; General opens with the base model, the
    dataset and the length of training; the backend line says something or nothing."""
    with viewing(page, WIDE):
        open_page(page, "/configs/demo/edit")
        page.wait(lambda: page.js("return !!(window.htmx && document.querySelector('#editor'))"), 15)
        first = page.js("return [...document.querySelectorAll('#panel-general .field input, #panel-general .field select')]"
                        ".slice(0, 3).map(e => e.name)")
        assert first[:2] == ["base_model_name", "epochs"], first
        page.driver.save_screenshot("/tmp/editor-general.png")  # for a person to look at
        general = page.text("#panel-general") or ""
        assert "datasets/" in general.split("Workspace")[0], "the dataset is not shown before the workspace fields"
        assert page.js("return [...document.querySelectorAll('#panel-general .field input')].map(e => e.name)"
                       ".indexOf('workspace_dir')") >= 2
        backend = page.text("[data-testid=backend]")
        assert backend is None or "supports this model type and method" not in backend, backend
        cut = []
        for tab in page.js("return [...document.querySelectorAll('.tab-radio')].map(r => r.id)"):
            page.driver.find_element(By.CSS_SELECTOR, f"label[for={tab}]").click()
            cut += page.js("""return [...document.querySelectorAll('#editor input[type=text]')]
                .filter(e => e.offsetWidth > 0 && e.scrollWidth > e.clientWidth + 1).map(e => e.name + '=' + e.value)""")
        assert not cut, f"inputs that cut their value: {cut}"


def test_the_api_docs_are_a_page_of_the_app(page):
    """Point 11: the app's header and menu, its stylesheet, and dark in dark mode."""
    from PIL import Image, ImageStat
    with viewing(page, WIDE, "dark"):
        open_page(page, "/api/docs")
        page.wait(lambda: len(page.driver.find_elements(By.CSS_SELECTOR, ".opblock")) > 10, 30)
        assert page.driver.find_element(By.CSS_SELECTOR, ".topbar nav").is_displayed()
        assert page.js("return document.querySelector('.topbar nav a[aria-current]').textContent") == "System"
        assert page.js("return getComputedStyle(document.body).backgroundColor") == "rgb(17, 20, 27)"
        shot = page.driver.get_screenshot_as_png()
        (Path("/tmp") / "api-docs-dark.png").write_bytes(shot)  # for a person to look at
        image = Image.open(io.BytesIO(shot)).convert("L")
        brightness = ImageStat.Stat(image).mean[0]
        assert brightness < 110, f"the docs page is bright in dark mode (mean {brightness:.0f} of 255)"


def test_compare_says_when_curves_overlap(page):
    """Point 12: two identical runs: a note that the curves lie on top of each other; the config
    table has no empty header above "The same config."; the model version's headings have room."""
    open_page(page, f"/runs/compare?run={page.first_run}&run={page.run_id}")
    note = page.text("[data-testid=overlap]") or ""
    assert "overlap" in note, page.text(".run-compare")[:600]
    assert "The same config." in page.text(".run-compare")
    assert not page.js("return !!document.querySelector('[data-testid=config-diff] thead')")
    open_page(page, "/models")
    page.driver.find_element(By.CSS_SELECTOR, ".version header a").click()
    page.wait(lambda: page.js("return !!document.querySelector('.lineage')"), 15)
    gaps = page.js("""return [...document.querySelectorAll('.models h2')].map(h => {
        const before = h.previousElementSibling; return h.getBoundingClientRect().top - before.getBoundingClientRect().bottom; })""")
    assert gaps and min(gaps) >= 16, f"headings crowd what is above them: {gaps}"


def test_phone_tables_show_that_they_scroll_and_the_gallery_fills_the_width(page):
    """Point 14: at 390 px the runs table is wider than the screen and says so (a fade at the edge
    it scrolls to); at 1366 px the samples gallery's columns fill its width."""
    with viewing(page, PHONE):
        open_page(page, "/runs")
        wrap = page.js("""const w = document.querySelector('.table-wrap');
            return {scrolls: w.scrollWidth > w.clientWidth, shade: getComputedStyle(w).backgroundImage}""")
        page.driver.save_screenshot("/tmp/phone-runs.png")  # for a person to look at
        assert wrap["scrolls"], "the table fits: nothing to show"
        assert "gradient" in wrap["shade"], wrap
        sticky = page.js("return getComputedStyle(document.querySelector('.runs-table tbody td:nth-child(2)')).position")
        assert sticky == "sticky"
    with viewing(page, WIDE):
        open_page(page, "/samples")
        spare = page.js("""const g = document.querySelector('.gallery.across-runs'), box = g.getBoundingClientRect();
            const figures = [...g.querySelectorAll('figure')], top = figures[0].getBoundingClientRect().top;
            const row = figures.filter(f => Math.abs(f.getBoundingClientRect().top - top) < 2);
            return {count: figures.length, columns: row.length,
                    spare: box.right - Math.max(...row.map(f => f.getBoundingClientRect().right))}""")
        assert spare["count"] > spare["columns"], f"too few samples to fill a row: {spare}"
        assert spare["spare"] < 24, f"the gallery leaves {spare['spare']:.0f} px empty at its right: {spare}"
