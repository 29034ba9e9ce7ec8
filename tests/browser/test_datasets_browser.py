"""Issue 28, "done when": in Chromium, a dataset is created, a folder of images with captions is
uploaded into it (the folder picker: webkitdirectory), a caption is fixed inline, a bulk "add
trigger word" runs; the demo trained on it records the dataset's fingerprint, and after the fixes
a second run's fingerprint differs (the model version page shows it)."""
from __future__ import annotations

import re
import shutil
import uuid

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support.demo import short_run
from webapp.trainer.demo import DATASET_DIR

pytestmark = pytest.mark.slow
STALE = (StaleElementReferenceException,)


def fingerprint(stack, driver, run_id: int) -> str:
    """The dataset's sha256 as the run's output model page shows it."""
    versions = stack.api("GET", f"/api/models?run={run_id}&kind=output").json()["versions"]
    driver.get(f"{stack.url}/models/{versions[0]['id']}")
    text = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.TAG_NAME, "main").text)
    return re.search(r"list sha256 ([0-9a-f]{16})", text)[1]


def test_create_upload_fix_and_train(driver, stack, demo_workspace, demo_config, tmp_path):
    workspace = demo_workspace[0]
    name = f"browsed-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "shapes"
    shutil.copytree(workspace / DATASET_DIR, source)
    wait = WebDriverWait(driver, 60, ignored_exceptions=STALE)

    driver.get(stack.url + "/")
    driver.find_element(By.LINK_TEXT, "Datasets").click()
    driver.find_element(By.CSS_SELECTOR, "[data-testid=new-dataset] input[name=name]").send_keys(name)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=new-dataset] button").click()
    wait.until(lambda d: d.current_url.endswith(f"/datasets/{name}"))

    driver.find_element(By.CSS_SELECTOR, "input.pick-folder").send_keys(str(source))
    wait.until(lambda d: "files stored" in d.find_element(By.CSS_SELECTOR, "[data-testid=upload-result]").text)
    images = len(list(source.glob("*.png")))
    assert f"{len(list(source.iterdir()))} files stored" in driver.find_element(By.CSS_SELECTOR, "[data-testid=upload-result]").text
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=grid-count]").text.startswith(f"{images} images"))
    folder = workspace / "datasets" / name
    config = short_run(demo_config, concepts=[{**demo_config["concepts"][0], "path": str(folder)}])
    first = stack.start(config)
    assert stack.wait_until_ended(first)["state"] == "completed"

    driver.get(f"{stack.url}/datasets/{name}")
    card = driver.find_elements(By.CSS_SELECTOR, ".dataset-image")[0]
    image = card.get_attribute("data-image")
    caption = card.find_element(By.NAME, "caption")
    caption.clear()
    caption.send_keys("a fixed caption")
    card.find_element(By.CSS_SELECTOR, "form.caption button").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'[data-image="{image}"] .saved'))
    assert (folder / image).with_suffix(".txt").read_text() == "a fixed caption"

    bulk = driver.find_element(By.CSS_SELECTOR, "[data-testid=bulk]")
    bulk.find_element(By.NAME, "word").send_keys("ohwx")
    bulk.find_element(By.CSS_SELECTOR, "button[value=preview]").click()
    wait.until(lambda d: f"{images} of {images} selected captions would change" in d.find_element(By.ID, "bulk-result").text)
    bulk.find_element(By.CSS_SELECTOR, "button[value=apply]").click()
    wait.until(lambda d: f"Changed {images} captions" in d.find_element(By.ID, "bulk-result").text)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'[data-image="{image}"] textarea').get_attribute("value")
               == "ohwx, a fixed caption")

    second = stack.start(config)
    assert stack.wait_until_ended(second)["state"] == "completed"
    before, after = fingerprint(stack, driver, first), fingerprint(stack, driver, second)
    assert before != after
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not problems, problems
