"""Plain words: enum names, field paths, times and sizes as people read them, raw names on hover."""
from __future__ import annotations

import time

from webapp import store
from webapp.web.labels import ago, field_label, plain, value_label, when
from webapp.web.extensions import get_db


def test_values_fields_and_times_read_plainly():
    assert value_label("STABLE_DIFFUSION_15") == "Stable Diffusion 1.5"
    assert value_label("ADAMW") == "AdamW" and value_label("FLOAT_32") == "float32"
    assert value_label("EPOCH") == "epochs"
    assert value_label("SOME_NEW_THING") == "Some new thing"  # a newer OneTrainer's name still reads
    assert value_label("demo") == "demo" and value_label(None) == "–"
    assert field_label("learning_rate") == "Learning rate"
    assert field_label("unet.learning_rate") == "UNet: Learning rate"
    assert field_label("concepts[2].path") == "Concept 3: Path"
    assert str(plain("ADAMW")) == '<span class="raw-name" title="ADAMW">AdamW</span>'
    assert str(plain("<b>")) == "&lt;b&gt;"
    now = time.time()
    assert ago(now - 5, now) == "just now" and ago(now - 150, now) == "2 min ago"
    assert ago(now - 3 * 3600, now) == "3 hours ago" and ago(now - 86400, now) == "1 day ago"
    assert 'datetime="' in when(now) and "data-relative" in when(now)


def test_pages_show_labels_with_the_raw_names_on_hover(app, client, demo_config):
    with app.app_context():
        run_id = store.create_run(get_db(), "demo", demo_config)
    page = client.get("/runs").get_data(as_text=True)
    assert 'title="STABLE_DIFFUSION_15">Stable Diffusion 1.5<' in page
    assert 'title="LORA">LoRA<' in page
    run_page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "Stable Diffusion 1.5" in run_page and "STABLE_DIFFUSION_15" in run_page


def test_the_editor_offers_labels_but_posts_the_names(client, config_dir, demo_config):
    import json
    (config_dir / "mine.json").write_text(json.dumps(demo_config))
    page = client.get("/configs/mine/edit").get_data(as_text=True)
    assert '<option value="ADAMW" title="ADAMW" selected>AdamW</option>' in page
    assert '<option value="FLOAT_32" title="FLOAT_32" selected>float32</option>' in page
    # a bad value's message names the setting in words, the raw path one hover away
    answer = client.post("/configs/mine/edit", data={"learning_rate": "fast"})
    text = answer.get_data(as_text=True)
    assert 'title="learning_rate">Learning rate</span>' in text
