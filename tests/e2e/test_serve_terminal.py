"""The terminal of `otweb serve` (issue 31 §13): a person reads the URL it printed, not a line per
request; the model libraries' import notices once, not once per run; Redis's notices explained
once or kept in its log. Counted over a while of page views, live streams and two demo runs."""
from __future__ import annotations

import collections
import signal
import subprocess

import pytest
import requests

from support.demo import short_run
from support.paths import ROOT
from support.polling import wait_for
from support.servers import start_otweb_serve

pytestmark = pytest.mark.slow


def test_the_serve_terminal_keeps_to_what_matters(demo_workspace, demo_config, tmp_path):
    serve, url, log = start_otweb_serve(demo_workspace, tmp_path)
    port = url.rsplit(":", 1)[1]
    try:
        wait_for(lambda: _answers(url + "/api/health"), 90, "otweb serve to answer", every=0.3)
        for _ in range(2):  # two trainer starts: the second one's notices would be the repeats
            run_id = requests.post(url + "/api/training/start", timeout=10,
                                   json={"config": short_run(demo_config, epochs=1)}).json()["run_id"]
            for path in ("/", "/runs", f"/runs/{run_id}", "/samples", "/models", "/system", "/api/training/status") * 5:
                assert requests.get(url + path, timeout=10).status_code == 200
            wait_for(lambda: _ended(url, run_id), 180, f"run {run_id} to end", every=0.5)
        wait_for(lambda: _warm_again(serve.pid), 60, "the next warm trainer", every=0.5)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
    lines = [line for line in output.splitlines() if line.strip()]
    assert any(f"running at http://127.0.0.1:{port}/" in line for line in lines), output[-2000:]
    problems = []  # all of them at once: what a person's terminal showed
    requests_logged = [line for line in lines if '"GET /' in line or '"POST /' in line]
    if requests_logged:
        problems.append(f"{len(requests_logged)} access-log lines, e.g. {requests_logged[:2]}")
    repeated = {line[:120]: n for line, n in collections.Counter(lines).items() if n > 1 and _is_notice(line)}
    if repeated:
        problems.append(f"notices repeated: {repeated}")
    if any("overcommit" in line.lower() and not line.startswith("otweb:") for line in lines):
        problems.append("Redis's own overcommit warning reached the terminal")
    if len(lines) >= 40:
        problems.append(f"{len(lines)} lines in all")
    assert not problems, "\n".join(problems) + "\n--- the last lines:\n" + "\n".join(lines[-25:])
    print(f"otweb serve's terminal: {len(lines)} lines:", *lines, sep="\n")


def test_access_log_flag():
    """On with --access-log (and under the systemd unit, whose gunicorn.conf.py sets accesslog)."""
    from click.testing import CliRunner

    from webapp.cli import main
    from webapp.cli.serve import gunicorn_command
    assert "--access-logfile" not in gunicorn_command("127.0.0.1", 8000, access_log=False)
    assert "--access-logfile" in gunicorn_command("127.0.0.1", 8000)  # `otweb web`, as before
    assert "--access-log" in CliRunner().invoke(main, ["serve", "--help"]).output
    assert 'accesslog = "-"' in (ROOT / "deploy" / "gunicorn.conf.py").read_text()


def _is_notice(line: str) -> bool:
    lowered = line.lower()
    return any(word in lowered for word in ("warn", "torchvision", "bitsandbytes", "deprecat", "overcommit"))


def _warm_again(pid: int) -> bool:
    """A warm trainer for the next run is up (started after the last run): its notices are in."""
    import psutil
    return any("multiprocessing" in " ".join(p.cmdline()) for p in psutil.Process(pid).children(recursive=True))


def _ended(url: str, run_id: int) -> bool:
    run = requests.get(f"{url}/api/runs/{run_id}", timeout=10).json()["run"]
    return run.get("state") in ("completed", "failed", "stopped", "interrupted")


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
