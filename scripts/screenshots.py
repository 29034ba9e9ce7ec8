"""Regenerate the README's screenshots from the real app: `otweb serve` on a fresh temporary workspace
(embedded Redis, the tiny demo model), two demo trainings through the API, then Debian's headless
Chromium on the pages at desktop and phone widths, light and dark.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

Needs the test extras (selenium) and Debian's chromium + chromium-driver, as the tests do.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: chromium, ports, polling, shared with the tests
from support.browser import chromium  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.ports import free_port  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
DESKTOP, PHONE = (1366, 900), (390, 844)


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
            wait_for(lambda: requests.get(f"{base}/api/health", timeout=5).ok, 300, "otweb serve", every=1,
                     ignore=(requests.RequestException,))
            queued = requests.post(f"{base}/api/queue", timeout=30, json={"config_name": "demo", "count": 1}).json()
            short = requests.post(f"{base}/api/queue", timeout=30, json={
                "config_name": "demo", "overrides": {"learning_rate": 3e-4}}).json()
            first, second = queued["run_ids"][0], short["run_ids"][0]
            for run_id in (first, second):
                wait_for(lambda: requests.get(f"{base}/api/runs/{run_id}", timeout=5).json()["run"]["state"]
                         in ("completed", "failed", "stopped"), 900, f"run {run_id}", every=1,
                         ignore=(requests.RequestException,))
            with chromium(Path(tmp) / "chromium", "--hide-scrollbars") as driver:
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
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    for path in shots:
        print(f"screenshots: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
