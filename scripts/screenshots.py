"""Regenerate the README's screenshots from the real app: `otweb serve` on a fresh temporary workspace
(embedded Redis, the tiny demo model), two demo trainings through the API, then Debian's headless
Chromium on the pages at desktop and phone widths, light and dark.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

Needs the test extras (selenium) and Debian's chromium + chromium-driver, as the tests do.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
DESKTOP, PHONE = (1366, 900), (390, 844)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit(f"screenshots: gave up waiting for {what}")


def browser(profile: Path) -> webdriver.Chrome:
    os.environ["SE_OFFLINE"] = "true"  # no Selenium Manager download: Debian's driver
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shoot(driver, url: str, name: str, size: tuple[int, int], scheme: str = "light") -> Path:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": size[0] < 600})
    driver.get(url)
    time.sleep(2)  # htmx swaps, the live stream's first frames, lazy thumbnails
    path = OUT / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="otweb-shots-") as tmp:
        workspace, configs = Path(tmp) / "workspace", Path(tmp) / "configs"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded Redis
        server = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--port", str(port),
                                   "--workspace", str(workspace), "--config-dir", str(configs)],
                                  cwd=ROOT, env=env, start_new_session=True)
        try:
            wait_for(lambda: requests.get(f"{base}/api/health", timeout=5).ok, 300, "otweb serve")
            queued = requests.post(f"{base}/api/queue", timeout=30, json={"config_name": "demo", "count": 1}).json()
            short = requests.post(f"{base}/api/queue", timeout=30, json={
                "config_name": "demo", "overrides": {"learning_rate": 3e-4}}).json()
            first, second = queued["run_ids"][0], short["run_ids"][0]
            for run_id in (first, second):
                wait_for(lambda: requests.get(f"{base}/api/runs/{run_id}", timeout=5).json()["run"]["state"]
                         in ("completed", "failed", "stopped"), 900, f"run {run_id}")
            driver = browser(Path(tmp) / "chromium")
            try:
                shots = [
                    shoot(driver, f"{base}/", "dashboard", DESKTOP),
                    shoot(driver, f"{base}/runs/{first}", "run", DESKTOP),
                    shoot(driver, f"{base}/runs/{first}", "run-dark", DESKTOP, "dark"),
                    shoot(driver, f"{base}/runs/compare?run={first}&run={second}", "compare", DESKTOP),
                    shoot(driver, f"{base}/runs/{first}/samples", "samples-grid", DESKTOP),
                    shoot(driver, f"{base}/configs/demo/edit", "editor", DESKTOP),
                    shoot(driver, f"{base}/", "dashboard-phone", PHONE),
                    shoot(driver, f"{base}/runs/{first}", "run-phone", PHONE, "dark"),
                ]
            finally:
                driver.quit()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    for path in shots:
        print(f"screenshots: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
