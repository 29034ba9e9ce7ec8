"""The run page's log reads like a terminal: progress bars become their last state, colours and
control characters go, warnings are marked to hide, the first error is marked to jump to."""
from __future__ import annotations

from webapp import store
from webapp.settings import LOG_NAME

RAW = (
    "loading model\n"
    "\x1b[33m/x/diffusers/utils.py:23: FutureWarning: `torch_dtype` is deprecated\x1b[0m\n"
    "  deprecate(\"torch_dtype\", \"1.0.0\", message)\n"
    "Caching:   0%|          | 0/48 [00:00<?, ?it/s]\rCaching:  50%|#####     | 24/48 [00:01<00:01]\r"
    "Caching: 100%|##########| 48/48 [00:02<00:00]\n"
    "step:  10%|#         | 1/10 [00:00<00:01]\n"
    "step:  20%|##        | 2/10 [00:00<00:01]\n"
    "epoch 1 done\x07\n"
    "Traceback (most recent call last):\n"
    "  File \"train.py\", line 3, in <module>\n"
    "RuntimeError: CUDA out of memory\n"
)


def test_the_log_as_a_person_reads_it(app, client):
    conn = store.connect(app.config["DATABASE"])
    run_id = store.create_run(conn, "logged", {"model_type": "STABLE_DIFFUSION_15"})
    conn.commit()
    folder = app.config["SETTINGS"].run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOG_NAME).write_bytes(RAW.encode())
    html = client.get(f"/runs/{run_id}/log").text
    assert "\x1b" not in html and "\r" not in html and "\x07" not in html and "[33m" not in html
    assert "Caching: 100%" in html and "Caching:   0%" not in html and "24/48" not in html  # one line, last state
    assert "step:  20%" in html and "step:  10%" not in html
    assert html.count("level-warning") == 2 and "2 warning lines hidden" in html
    assert 'id="log-first-error">Traceback' in html and "Jump to the first error" in html
    assert html.count("level-error") == 3  # the traceback, its frame, the error
    assert "epoch 1 done" in html
    found = client.get(f"/runs/{run_id}/log?q=cuda").text
    assert "CUDA out of memory" in found and "Caching" not in found
    page = client.get(f"/runs/{run_id}").text
    assert 'id="hide-warnings"' in page
    conn.close()
