"""Issue 27, point 2: no request does unbounded work before it is refused; prompts have a cap."""
from __future__ import annotations

import json

from webapp.config.train_config import MAX_ITEMS, MAX_TEXT
from webapp.web.configs.files import MAX_BODY


def test_a_megabyte_of_empty_concepts_is_refused_before_defaults_are_laid(client):
    """349,000 ``{}`` concepts: refused by their count, before the defaults were laid over each
    (that took the web 15 s); the answer says nothing else was checked."""
    count = (MAX_BODY - len('{"concepts": []}')) // 3
    body = '{"concepts": [' + ",".join(["{}"] * count) + "]}"
    assert len(body) <= MAX_BODY
    answer = client.post("/api/config/validate", data=body, content_type="application/json")
    assert answer.status_code == 400 and set(answer.json) == {"error", "detail"}
    assert answer.json["detail"] == [{"field": "concepts", "message":
                                      f"has {count:,} entries; at most {MAX_ITEMS:,} (nothing else was checked)"}]


def test_a_concept_list_file_is_counted_before_defaults_are_laid(client, workspace):
    (workspace / "many.json").write_text(json.dumps([{}] * (MAX_ITEMS + 1)))
    answer = client.post("/api/config/validate", json={"concept_file_name": "many.json"})
    warned = {w["field"]: w["message"] for w in answer.json.get("warnings", [])}
    assert f"has {MAX_ITEMS + 1:,} entries; at most {MAX_ITEMS:,}" in warned["concept_file_name"]


def test_prompts_are_capped(client):
    for field in ("prompt", "negative_prompt"):
        body = {"prompt": "a cat", field: "x" * (MAX_TEXT + 1)}
        answer = client.post("/api/samples/custom", json=body)
        assert answer.status_code == 400, answer.json
        assert answer.json["detail"] == [{"field": field, "message": f"must be text of at most {MAX_TEXT:,} characters"}]
    wrong = client.post("/api/samples/custom", json={"prompt": "a cat", "negative_prompt": 7})
    assert wrong.status_code == 400 and wrong.json["detail"][0]["field"] == "negative_prompt"
    at_the_cap = client.post("/api/samples/custom", json={"prompt": "x" * MAX_TEXT})
    assert at_the_cap.status_code == 409  # accepted as a sample; nothing is running to make it


GEVENT_CHECK = r"""
from gevent import monkey; monkey.patch_all()
import sys, json, gevent, time
from pathlib import Path
from webapp.config import datasets
from webapp.web.configs.scans import Scanner

folder = Path(sys.argv[1])
ticks, done = [], []
def ticker():
    while not done:
        ticks.append(time.monotonic())
        gevent.sleep(0.005)
gevent.spawn(ticker)
gevent.sleep(0.01)
fingerprint = Scanner().call(datasets.fingerprint_dataset, {"concepts": [{"path": str(folder),
                             "include_subdirectories": True}]}, folder.parent)
done.append(1)
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
print(json.dumps({"files": fingerprint["files"], "ticks": len(ticks), "longest_gap": max(gaps)}))
"""


def test_a_dataset_fingerprint_runs_off_the_event_loop(tmp_path):
    """Queuing a run fingerprints its dataset (every file's size and mtime); under gevent that
    walk runs in a real thread, while the event loop goes on serving (here: a ticker greenlet)."""
    import subprocess
    import sys
    folder = tmp_path / "data"
    for part in range(20):
        (folder / f"p{part}").mkdir(parents=True)
        for n in range(500):
            (folder / f"p{part}" / f"{n}.png").touch()
    done = subprocess.run([sys.executable, "-c", GEVENT_CHECK, str(folder)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["files"] == 10_000
    assert found["ticks"] > 2  # the loop ran during the walk, not only before and after it


START_CHECK = r"""
from gevent import monkey; monkey.patch_all()
import sys, json, gevent, time
from pathlib import Path
from support.apps import make_app
from webapp.web.runs.actions import check_runnable

workspace, config = Path(sys.argv[1]), json.loads(sys.argv[2])
app = make_app(workspace, workspace / "configs", sys.argv[3])
ticks, done = [], []
def ticker():
    while not done:
        ticks.append(time.monotonic())
        gevent.sleep(0.002)
gevent.spawn(ticker)
gevent.sleep(0.01)
with app.test_request_context():
    began = time.monotonic()
    check_runnable(config)
    ended = time.monotonic()
done.append(1)
print(json.dumps({"during": sum(began < t < ended for t in ticks), "seconds": ended - began}))
"""


def test_the_start_checks_disk_count_runs_off_the_event_loop(demo_workspace, demo_config, redis_url):
    """A start counts the dataset's images to plan its disk use; under gevent that walk ran in the
    request's greenlet (20,000 files held every page of the process), now in a real thread."""
    import os
    import subprocess
    import sys
    folder = demo_workspace[0] / "huge-for-start"
    for part in range(40):
        (folder / f"p{part}").mkdir(parents=True, exist_ok=True)
        for n in range(500):
            (folder / f"p{part}" / f"{n}.png").touch()
    config = {**demo_config, "concepts": [{**demo_config["concepts"][0], "path": str(folder),
                                           "include_subdirectories": True}]}
    done = subprocess.run([sys.executable, "-c", START_CHECK, str(demo_workspace[0]), json.dumps(config),
                           redis_url], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["during"] >= 3, found  # the loop went on while the start's checks walked the folder
