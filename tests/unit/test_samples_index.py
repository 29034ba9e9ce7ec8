"""The Samples menu: every run's samples in one gallery (filtered by prompt, source and run, paged by
id); playground sessions listed on the playground page, not among the runs."""
from __future__ import annotations

from webapp import store
from webapp.protocol import PLAYGROUND_MARKER, Event, make_event


def add_samples(conn, run_id: int, prompts: list[str]) -> None:
    for step, prompt in enumerate(prompts):
        store.append_event(conn, run_id, make_event(Event.SAMPLE_DEFAULT, path=f"s{run_id}-{step}.png",
                                                    prompt=prompt, global_step=step))
    conn.commit()


def test_the_gallery_of_every_run(app, client):
    conn = store.connect(app.config["DATABASE"])
    training = store.create_run(conn, "cats", {"model_type": "STABLE_DIFFUSION_15"})
    session = store.create_run(conn, "playground", {PLAYGROUND_MARKER: {"source": "cats.safetensors",
                                                                        "source_run": training}})
    conn.execute("UPDATE runs SET state = 'completed' WHERE id IN (?, ?)", (training, session))  # closed
    add_samples(conn, training, ["a cat", "a dog"])
    add_samples(conn, session, ["a cat in a hat"])
    html = client.get("/samples").text
    assert html.count('class="sample"') >= 3 and "a cat in a hat" in html and "kind-playground" in html
    only_play = client.get("/samples?source=playground").text
    assert "a cat in a hat" in only_play and "a dog" not in only_play
    trainings = client.get(f"/samples?source=training&prompt=CAT&run={training}").text
    assert "a cat" in trainings and "a dog" not in trainings and "a cat in a hat" not in trainings
    assert "No sample matches" in client.get("/samples?prompt=zebra-unicorn").text
    bad = client.get("/samples?source=nowhere")
    assert bad.status_code == 400 and "training or playground" in bad.text
    # the session is not a run: not in the runs list, not the dashboard's run; the playground lists it
    assert f"/runs/{session}\"" not in client.get("/runs").text
    assert all(r["id"] != session for r in client.get("/api/runs").json["runs"])
    sessions = client.get("/playground").text
    assert 'data-testid="playground-sessions"' in sessions and "cats.safetensors" in sessions
    assert f"/samples?run={session}" in sessions
    conn.close()


def test_older_samples_page_by_id(app, client):
    from webapp.web.samples.pages import GALLERY_PAGE
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "many", {"model_type": "STABLE_DIFFUSION_15"})
    add_samples(conn, run_id, [f"prompt {i}" for i in range(GALLERY_PAGE + 5)])
    first = client.get(f"/samples?run={run_id}").text
    assert first.count('class="sample"') == GALLERY_PAGE and "Older samples" in first
    older = first[first.index("before="):].split('"')[0]
    second = client.get(f"/samples?run={run_id}&{older}").text
    assert second.count('class="sample"') == 5 and "prompt 0<" in second and "Older samples" not in second
    conn.close()
