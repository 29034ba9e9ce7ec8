"""Compare runs: two to five runs' smoothed loss on one chart aligned by step, the config keys that
differ, their samples of a shared prompt at the same step; bad picks answered with a clear 400/404."""
from __future__ import annotations

import re

from webapp import store
from webapp.protocol import Event, make_event


def make_run(conn, name: str, lr: float, steps: int, samples: dict[str, list[int]]) -> int:
    run_id = store.create_run(conn, name, {"model_type": "STABLE_DIFFUSION_15", "learning_rate": lr,
                                           "samples": [{"prompt": p} for p in samples]})
    store.append_metrics(conn, run_id, [(s, 1.0 / s, lr, 0.0) for s in range(1, steps + 1)])
    for prompt, at_steps in samples.items():
        for step in at_steps:
            store.append_event(conn, run_id, make_event(Event.SAMPLE_DEFAULT, path=f"{prompt}-{step}.png",
                                                        prompt=prompt, global_step=step))
    conn.commit()
    return run_id


def test_two_runs_side_by_side(app, client):
    conn = store.connect(app.config["DATABASE"])
    a = make_run(conn, "short", 1e-4, 40, {"a red circle": [10, 20, 30], "a blue square": [20]})
    b = make_run(conn, "long", 3e-4, 80, {"a red circle": [10, 20, 40], "only in b": [10]})
    page = client.get(f"/runs/compare?run={a}&run={b}")
    assert page.status_code == 200, page.text
    html = page.text
    # one line per run, on one x axis from the first step to the longest run's last
    chart = html[:html.index("</svg>")]  # the wide drawing (a phone's narrow one follows it)
    lines = re.findall(r'<polyline class="series run-(\d)" points="([^"]+)"', chart)
    assert [index for index, _ in lines] == ["0", "1"]
    ends = [float(points.split()[-1].split(",")[0]) for _, points in lines]
    assert ends[0] < ends[1]  # the 40-step run ends halfway along the 80-step axis
    assert ">step</text>" in html and "smoothed loss</text>" in html
    # only the keys that differ: the learning rate, not the model type
    diff = html[html.index('data-testid="config-diff"'):]
    assert "learning_rate" in diff and "model_type" not in diff and "samples[1].prompt" in diff
    # the shared prompt at the newest step both have (20); prompts only one run has are left out
    rows = html.split('data-testid="sample-row"')
    assert "a red circle <small>step 20</small>" in html and len(rows) == 2
    assert "only in b" not in html.split("Samples")[1].split("Config differences")[0]
    chosen = client.get(f"/runs/compare?run={a}&run={b}&step=10").text
    assert "a red circle <small>step 10</small>" in chosen
    conn.close()


def test_bad_picks_are_refused_clearly(app, client):
    conn = store.connect(app.config["DATABASE"])
    a = make_run(conn, "one", 1e-4, 5, {})
    for query in (f"run={a}", "", f"run={a}&run=x", "&".join(f"run={i}" for i in range(1, 8))):
        answer = client.get(f"/runs/compare?{query}")
        assert answer.status_code == 400 and "pick 2 to 5 runs" in answer.text, query
    missing = client.get(f"/runs/compare?run={a}&run=99999")
    assert missing.status_code == 404 and "no run with id 99999" in missing.text
    conn.close()
