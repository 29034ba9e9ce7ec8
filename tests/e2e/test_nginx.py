"""The shipped nginx site (deploy/) in front of gunicorn + a worker, under /trainer/: log in, load
the dashboard, start the demo run, read its SSE events through nginx, load static files and images."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from support.accounts import PASSWORD
from support.demo import short_run
from support.paths import ROOT
from support.ports import free_port
from support.servers import serve_web
from support.stack import run_worker

pytestmark = pytest.mark.slow
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_config(tmp: Path, listen: int, upstream: int) -> Path:
    site = (ROOT / "deploy/nginx-otweb.conf").read_text()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};").replace("127.0.0.1:8000", f"127.0.0.1:{upstream}")
    site = site.replace("/etc/nginx/otweb-proxy-headers.conf", str(ROOT / "deploy/otweb-proxy-headers.conf"))
    (tmp / "site.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(f"""daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{ access_log {tmp}/access.log; client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  types {{ text/css css; image/svg+xml svg; }} include {tmp}/site.conf; }}
""")
    return main


@pytest.fixture
def proxied(demo_workspace, redis_url, redis_server, tmp_path):
    if not Path(NGINX).exists():
        pytest.skip("nginx is missing: scripts/setup.sh --test installs nginx-light")
    from webapp.store import accounts
    redis_server.flushall()
    workspace, config_dir = demo_workspace
    worker = f"nginx-{free_port()}"
    conn = accounts.connect(workspace / "otweb.sqlite3")
    accounts.add_user(conn, "nina", PASSWORD, "operator")
    worker_token = accounts.replace_worker_token(conn, worker)  # accounts on: a worker needs its token
    conn.close()
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url,
           "OTWEB_WORKER_NAME": worker, "OTWEB_WORKER_TOKEN": worker_token, "OTWEB_PROXY_HOPS": "1",
           "OTWEB_AUTH": "on"}
    listen = free_port()
    try:
        with run_worker(env), serve_web(env) as url:
            upstream = int(url.rsplit(":", 1)[1])
            proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(nginx_config(tmp_path, listen, upstream))])
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        requests.get(f"http://127.0.0.1:{listen}/trainer/api/health", timeout=1)
                        break
                    except requests.ConnectionError:
                        time.sleep(0.1)
                yield f"http://127.0.0.1:{listen}/trainer"
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    finally:
        conn = accounts.connect(workspace / "otweb.sqlite3")
        accounts.remove_user(conn, "nina")
        conn.close()


def test_the_app_through_nginx_under_a_prefix(proxied, demo_config):
    session = requests.Session()
    session.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"  # as a browser asks
    first = session.get(proxied + "/", allow_redirects=False)
    assert first.status_code == 302 and first.headers["Location"].startswith("/trainer/login")
    page = session.get(proxied + "/login").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    assert 'action="/trainer/login"' in page and 'href="/trainer/static/app.css' in page
    answer = session.post(proxied + "/login", data={"username": "nina", "password": PASSWORD, "csrf_token": token,
                                                    "next": "/"}, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/trainer/"), answer.text
    assert "Path=/trainer" in answer.headers["Set-Cookie"]  # the cookie is the app's, not the host's
    dashboard = session.get(proxied + "/").text
    assert 'sse-connect="/trainer/events' in dashboard or "/trainer/events" in dashboard
    token = re.search(r'name="csrf-token" content="([^"]+)"', dashboard)[1]
    for asset in ("/static/app.css", "/static/vendor/htmx.min.js", "/static/favicon.svg"):
        assert session.get(proxied + asset).status_code == 200, asset

    # a config is at most 1 MB: nginx refuses more before the app reads it
    big = session.post(proxied + "/api/config/validate", data=b'{"x": "' + b"a" * 2_000_000 + b'"}',
                       headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert big.status_code == 413

    stream = session.get(proxied + "/api/events", stream=True, timeout=(5, 60))
    assert stream.status_code == 200
    started = time.monotonic()
    config = short_run(demo_config, sample_after=6, sample_after_unit="STEP",
                       samples=[{**demo_config["samples"][0], "diffusion_steps": 2}])
    run = session.post(proxied + "/api/training/start", json={"config": config},
                       headers={"X-CSRF-Token": token})
    assert run.status_code == 202, run.text
    first_event_s, events = None, []
    for line in stream.iter_lines(decode_unicode=True):
        assert time.monotonic() - started < 240, f"the run did not finish; events so far: {events[-20:]}"
        if line.startswith("event:"):
            first_event_s = first_event_s or time.monotonic() - started
            events.append(line.split(":", 1)[1].strip())
            if "finished" in events or len(events) > 400:
                break
    stream.close()
    assert first_event_s is not None and first_event_s < 1.0, first_event_s
    run_id = run.json()["run_id"]
    assert session.get(proxied + f"/api/runs/{run_id}").json()["run"]["started_by"] == "nina"
    assert "finished" in events and "sample_default" in events
    # the run's sample image, its thumbnail and its page load under the prefix too
    sample = session.get(proxied + "/api/samples/latest?count=1").json()
    sample = sample["samples"][0] if isinstance(sample, dict) else sample[0]
    assert sample["image_url"].startswith("/trainer/"), sample
    for url in (sample["image_url"], sample["thumbnail_url"]):
        image = session.get(proxied.rsplit("/trainer", 1)[0] + url)
        assert image.status_code == 200 and image.headers["Content-Type"].startswith("image/"), url
    assert f'src="/trainer/api/samples/{sample["id"]}' in session.get(proxied + "/").text
