"""What comes after a run that saved a model: download it, open it in the playground, compare it
with the previous run of its config, run it again. Shown where the run ended (the dashboard's
state) instead of greyed buttons and a path on the server."""
from __future__ import annotations

from pathlib import Path

from webapp import store
from webapp.protocol import RunState
from webapp.web.extensions import get_db
from webapp.web.runs.files import run_dir, run_files

ENDED_WITH_MODEL = (RunState.COMPLETED.value, RunState.STOPPED.value)


def next_steps(run: dict | None) -> dict | None:
    """For templates/dashboard/_next_steps.html: None unless the run ended with a saved model."""
    if not run or run["state"] not in ENDED_WITH_MODEL or not run.get("output_path"):
        return None
    record = store.get_run(get_db(), run["id"])
    if record is None or store.samples.is_playground(record):
        return None
    output = next((f for f in run_files(run_dir(run["id"]), run["output_path"]) if f["kind"] == "output"), None)
    config = store.run_config(record)
    # the playground opens a finished LoRA's output by its key, "<run id>:0" (store.samples.lora_sources)
    lora = output is not None and config.get("training_method") == "LORA" and bool(config.get("base_model_name"))
    return {"run_id": run["id"], "file": output["name"] if output else Path(run["output_path"]).name,
            "downloadable": output is not None, "playground_key": f"{run['id']}:0" if lora else None,
            "previous": store.runs.previous_of(get_db(), run["id"], record["config_name"])}
