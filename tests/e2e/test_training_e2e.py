"""End to end: the JSON API, a real worker spawning the trainer on the tiny model, and the SSE feed,
all through a real gunicorn + gevent server and a real Redis."""
from __future__ import annotations

import os
import signal
import time

import pytest

from support.demo import short_run
from support.sse import json_frames, read_sse

pytestmark = pytest.mark.slow


def test_training_through_the_api_and_sse(stack, demo_config, demo_workspace):
    config = short_run(demo_config, epochs=3, sample_after=8, sample_after_unit="STEP")
    run_id = stack.start(config)
    frames = read_sse(f"{stack.url}/api/events?after=0&run={run_id}",
                      until=lambda f: f.get("event") == "run" and '"completed"' in f["data"], timeout=240)
    events = json_frames(frames)
    names = [e["event"] for e in events]
    assert "progress" in names and "sample_default" in names and "finished" in names
    assert [int(f["id"]) for f in frames] == sorted({e["seq"] for e in events})  # ids are the seq, in order
    last_progress = [e for e in events if e["event"] == "progress"][-1]["data"]
    assert last_progress["global_step"] == last_progress["max_step"] == 18
    assert last_progress["speed"] > 0 and last_progress["loss"] is not None

    run = stack.wait_until_ended(run_id)
    assert run["state"] == "completed" and run["output_path"].endswith(".safetensors")
    sample = [e for e in events if e["event"] == "sample_default"][0]["data"]
    image = stack.api("GET", f"/api/samples/{sample['sample_id']}/image")
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert stack.api("GET", f"/api/samples/{sample['sample_id']}/image",
                     headers={"If-None-Match": image.headers["ETag"]}).status_code == 304
    _load_lora_with_diffusers(demo_workspace[0], run["output_path"])


def _load_lora_with_diffusers(workspace, lora_path):
    from pathlib import Path

    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(workspace / "models" / "tiny-sd15"))
    pipe.load_lora_weights(str(Path(lora_path).parent), weight_name=Path(lora_path).name)
    assert any("lora" in name for name, _ in pipe.unet.named_parameters())


def test_commands_reach_the_trainer(stack, demo_config):
    run_id = stack.start(short_run(demo_config, epochs=40))
    stack.wait_for(lambda: (stack.status() or {}).get("progress"), timeout=120)
    assert stack.api("POST", "/api/training/backup", json={}).status_code == 202
    assert stack.api("POST", "/api/training/save", json={}).status_code == 202
    custom = stack.api("POST", "/api/samples/custom", json={"prompt": "a red circle", "steps": 3,
                                                             "width": 64, "height": 64, "seed": 7})
    assert custom.status_code == 202
    frames = read_sse(f"{stack.url}/api/events?after=0&run={run_id}",
                      until=lambda f: f.get("event") == "sample_custom", timeout=120)
    sample = json_frames(frames)[-1]["data"]
    assert sample["prompt"] == "a red circle" and sample["seed"] == 7
    assert stack.api("POST", "/api/training/stop", json={}).status_code == 202
    run = stack.wait_until_ended(run_id, timeout=120)
    assert run["state"] == "stopped" and run["output_path"]
    assert run["progress"]["global_step"] < run["progress"]["max_step"]
    run_dir = stack_run_dir(stack, run_id)
    assert any((run_dir / "backups").iterdir()), "the backup command wrote nothing"


def stack_run_dir(stack, run_id):
    from pathlib import Path
    return Path(stack.env["OTWEB_WORKSPACE"]) / "runs" / str(run_id)


def test_killed_trainer_fails_the_run_and_the_worker_goes_on(stack, demo_config):
    run_id = stack.start(short_run(demo_config, epochs=100))
    run = stack.wait_for(lambda: (r := stack.status()) and r["id"] == run_id and r.get("progress") and r, 120)
    os.kill(run["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    run = stack.wait_until_ended(run_id, timeout=10)
    assert time.monotonic() - killed_at < 5
    assert run["state"] == "failed" and "SIGKILL" in run["reason"]
    assert run["reason_code"] == "trainer_exited"  # the code beside the words: what code reads
    assert stack.worker.poll() is None
    next_id = stack.start(short_run(demo_config, epochs=1))
    assert stack.wait_until_ended(next_id)["state"] == "completed"


def test_reconnect_with_last_event_id_gets_every_missed_event_once(stack, demo_config):
    run_id = stack.start(short_run(demo_config, epochs=4))
    url = f"{stack.url}/api/events?run={run_id}&after=0"
    first = read_sse(url, until=lambda f: f.get("event") == "progress")
    time.sleep(2)  # the run goes on while this client is away
    rest = read_sse(f"{stack.url}/api/events?run={run_id}", headers={"Last-Event-ID": first[-1]["id"]},
                    until=lambda f: f.get("event") == "run" and '"completed"' in f["data"], timeout=240)
    seqs = [int(f["id"]) for f in first + rest]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    everything = read_sse(url, until=lambda f: f.get("event") == "run" and '"completed"' in f["data"])
    assert seqs == [int(f["id"]) for f in everything]


def test_stop_while_the_model_loads_takes_effect_quickly(stack, demo_config):
    run_id = stack.start(short_run(demo_config, epochs=50))
    stack.wait_for(lambda: (r := stack.run_state(run_id)) and r["state"] == "running", 60, every=0.05)
    assert stack.api("POST", "/api/training/stop", json={}).status_code == 202
    stopped_at = time.monotonic()
    run = stack.wait_until_ended(run_id, timeout=30)
    assert run["state"] == "stopped"
    assert time.monotonic() - stopped_at < 5  # 2 s by design, plus polling on a busy machine


def test_a_killed_run_resumes_from_its_backup(stack, demo_config):
    run_id = stack.start(short_run(demo_config, epochs=6, backup_after=6, backup_after_unit="STEP",
                                   backup_before_save=False))  # 36 steps, a backup every 6
    run = stack.wait_for(lambda: (r := stack.run_state(run_id)) and (r.get("progress") or {}).get(
        "global_step", 0) >= 8 and r, 120, every=0.05)
    os.kill(run["pid"], signal.SIGKILL)
    assert stack.wait_until_ended(run_id, timeout=10)["state"] == "failed"
    assert stack.api("POST", f"/api/runs/{run_id}/resume").status_code == 202
    run = stack.wait_until_ended(run_id)
    assert run["state"] == "completed" and run["progress"]["global_step"] == 36
    events = json_frames(read_sse(f"{stack.url}/api/events?after=0&run={run_id}",
                                  until=lambda f: f.get("event") == "run" and '"completed"' in f["data"]))
    starts = [i for i, e in enumerate(events) if e["event"] == "run" and e["data"]["state"] == "running"]
    assert len(starts) == 2
    resumed = next(e["data"] for e in events[starts[1]:] if e["event"] == "progress")
    assert (resumed["global_step"] - 1) % 6 == 0 and resumed["global_step"] > 1  # right after a backup
