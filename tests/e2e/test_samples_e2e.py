"""Samples end to end on the tiny demo model: scheduled samples at the steps the config says,
a custom sample mid-run over SSE with its settings, then the playground on the run's LoRA
(identical settings give the identical image; the LoRA strength changes it; Close ends it)."""
from __future__ import annotations

import pytest

from support.demo import short_run
from support.sse import json_frames, read_sse

pytestmark = pytest.mark.slow
PROMPT_STEPS = 4


@pytest.fixture(scope="module")
def finished_run(stack, demo_config):
    """2 epochs of 6 steps; two prompts every 4 steps and before the first step; a custom sample
    asked for once training runs. Returns (run id, the run's events)."""
    samples = [{**s, "diffusion_steps": PROMPT_STEPS} for s in demo_config["samples"][:2]]
    samples[1]["noise_scheduler"] = "EULER_A"
    config = short_run(demo_config, epochs=2, sample_after=4, sample_after_unit="STEP", samples=samples,
                       sample_before_training=True)
    run_id = stack.start(config)
    stack.wait_for(lambda: (stack.run_state(run_id) or {}).get("progress"), timeout=180)
    answer = stack.api("POST", "/api/samples/custom", json={
        "prompt": "a green star", "seed": 11, "steps": 3, "cfg_scale": 2.5, "width": 64, "height": 64,
        "noise_scheduler": "EULER"})
    assert answer.status_code == 202, answer.text
    frames = read_sse(f"{stack.url}/api/events?after=0&run={run_id}",
                      until=lambda f: f.get("event") == "run" and '"state":"running"' not in f["data"]
                      and '"state":"queued"' not in f["data"], timeout=300)
    return run_id, json_frames(frames)


def test_scheduled_samples_at_the_expected_steps(stack, finished_run, demo_config):
    run_id, events = finished_run
    assert stack.wait_until_ended(run_id)["state"] == "completed"
    listed = stack.api("GET", f"/api/samples/list?run={run_id}&kind=default").json()["samples"]
    prompts = [s["prompt"] for s in demo_config["samples"][:2]]
    got = sorted((s["global_step"], s["prompt"]) for s in listed)
    assert got == sorted((step, p) for step in (0, 4, 8, 12) for p in prompts)
    by_prompt = {s["prompt"]: s for s in listed}
    assert by_prompt[prompts[1]]["settings"]["noise_scheduler"] == "EULER_A"
    assert by_prompt[prompts[0]]["settings"]["steps"] == PROMPT_STEPS
    progress = [e for e in events if e["event"] == "sample_progress"]
    assert progress and progress[0]["data"]["max_step"] in (PROMPT_STEPS, 3)
    thumb = stack.api("GET", f"/api/samples/{listed[0]['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"


def test_custom_sample_arrives_with_its_settings(stack, finished_run):
    run_id, events = finished_run
    custom = [e["data"] for e in events if e["event"] == "sample_custom"]
    assert len(custom) == 1
    sample = custom[0]
    assert (sample["prompt"], sample["seed"], sample["steps"], sample["cfg_scale"], sample["noise_scheduler"]) == \
        ("a green star", 11, 3, 2.5, "EULER")
    assert 1 <= sample["global_step"] <= 12
    meta = stack.api("GET", f"/api/samples/{sample['sample_id']}").json()
    assert meta["kind"] == "custom" and meta["size"] == {"width": 64, "height": 64, "bytes": sample["bytes"]}


def test_playground_on_the_runs_lora(stack, finished_run):
    run_id, _ = finished_run
    sources = stack.api("GET", "/api/playground").json()["sources"]
    source = next(s for s in sources if s["run_id"] == run_id and s["label"].endswith(".safetensors"))
    opened = stack.api("POST", "/api/playground/open", json={"source": source["key"]})
    assert opened.status_code == 202, opened.text
    session_id = opened.json()["run_id"]
    request = {"prompt": "a red circle", "seed": 3, "steps": 3, "width": 64, "height": 64, "playground": True}
    stack.wait_for(lambda: (stack.api("GET", "/api/playground").json()["session"] or {}).get("state") == "running",
                   timeout=120)
    for scale in (0.5, 0.5, 0.0):
        answer = stack.api("POST", "/api/samples/custom", json={**request, "lora_scale": scale})
        assert answer.status_code == 202 and answer.json()["run_id"] == session_id
    frames = read_sse(f"{stack.url}/api/events?after=0&run={session_id}",
                      until=lambda f: f.get("event") == "sample_custom" and '"lora_scale":0.0' in f["data"], timeout=180)
    made = [e["data"] for e in json_frames(frames) if e["event"] == "sample_custom"]
    assert [m["lora_scale"] for m in made] == [0.5, 0.5, 0.0]
    images = [stack.api("GET", f"/api/samples/{m['sample_id']}/image").content for m in made]
    assert images[0] == images[1], "the same seed and settings gave different images"
    assert images[0] != images[2], "the LoRA strength changed nothing"
    assert stack.api("POST", "/api/playground/close").status_code == 202
    stack.wait_for(lambda: stack.api("GET", "/api/playground").json()["session"] is None, timeout=60)
    assert stack.api("POST", "/api/samples/custom", json=request).status_code == 409
