"""The editor offers only what the backend that will run the config accepts: the built-in
trainer's output formats for its method, and OneTrainer's own table (read from its checkout) when
OneTrainer runs it."""
from __future__ import annotations

import json
import re

from support.onetrainer_env import checkout
from test_config_api import DEMO, demo_workspace


def offered(html: str, field: str) -> list[str]:
    select = re.search(rf'<select[^>]*name="{re.escape(field)}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return re.findall(r'<option value="([^"]*)"', select)  # the config's names (the text is in plain words)


def test_the_builtin_trainer_is_offered_only_its_formats(client, config_dir, workspace):
    demo_workspace(workspace)
    (config_dir / "mine.json").write_text(json.dumps({**DEMO, "training_method": "EMBEDDING"}))
    html = client.get("/configs/mine/edit").get_data(as_text=True)
    assert offered(html, "output_model_format") == ["SAFETENSORS"]


def test_onetrainer_is_offered_its_own_formats(client, config_dir, workspace, monkeypatch):
    monkeypatch.setenv("ONETRAINER_DIR", str(checkout()))
    demo_workspace(workspace)
    (config_dir / "mine.json").write_text(json.dumps({**DEMO, "backend": "onetrainer",
                                                      "output_model_format": "KOHYA_LORA"}))
    html = client.get("/configs/mine/edit").get_data(as_text=True)
    formats = offered(html, "output_model_format")
    assert "KOHYA_LORA" in formats and "DIFFUSERS_LORA" in formats
    assert "SAFETENSORS" not in formats  # OneTrainer's saver refuses it for a LoRA, after the last step
    # a value it cannot take stays visible (with its warning) rather than changing silently
    (config_dir / "mine.json").write_text(json.dumps({**DEMO, "backend": "onetrainer",
                                                      "output_model_format": "SAFETENSORS"}))
    html = client.get("/configs/mine/edit").get_data(as_text=True)
    assert offered(html, "output_model_format")[-1] == "SAFETENSORS"
    assert "DIFFUSERS_LORA" in html and "OneTrainer cannot" in html
