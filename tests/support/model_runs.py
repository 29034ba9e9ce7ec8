"""A run that wrote models, recorded from events as a worker's are (no trainer): for the Models
tests in unit/ and browser/."""
from __future__ import annotations

from webapp import store
from webapp.protocol import Event, make_event

CONFIG = {"base_model_name": "models/tiny-sd15", "model_type": "STABLE_DIFFUSION_15", "training_method": "LORA",
          "output_model_format": "SAFETENSORS", "concepts": [], "learning_rate": 0.001}


def progress(step: int, smooth: float) -> dict:
    return make_event(Event.PROGRESS, global_step=step, max_step=12, epoch=step // 6, max_epoch=2,
                      epoch_step=step % 6, epoch_length=6, loss=smooth + 0.1, lr=1e-3, smooth_loss=smooth)


def record_run(app, name="lora-a", config=None, files=True, started_by="otto") -> tuple[int, dict]:
    """A run that saved at step 4, backed up at step 6 and ended at 12, as a worker records it;
    its files written where the run folder has them."""
    conn = store.connect(app.config["SETTINGS"].database)
    run_id = store.create_run(conn, name, config or CONFIG)
    store.set_started_by(conn, run_id, started_by)
    folder = app.config["SETTINGS"].run_dir(run_id)
    paths = {"save": folder / "saves" / "lora-step4.safetensors", "backup": folder / "backups" / "t-step6",
             "output": folder / "models" / f"{name}.safetensors"}
    if files:
        paths["save"].parent.mkdir(parents=True)
        paths["save"].write_bytes(b"save at 4" * 100)
        paths["backup"].mkdir(parents=True)
        (paths["backup"] / "trained.safetensors").write_bytes(b"backup" * 50)
        paths["output"].parent.mkdir(parents=True)
        paths["output"].write_bytes(b"final" * 300)
        from PIL import Image
        (folder / "samples" / "default").mkdir(parents=True)
        Image.new("RGB", (64, 64), "red").save(folder / "samples" / "default" / "4-0.png")
    events = [make_event(Event.RUN, state="running"), progress(4, 0.5),
              make_event(Event.LOG, text="saved: saves/lora-step4.safetensors",
                         artifact={"kind": "save", "path": "saves/lora-step4.safetensors", "global_step": 4, "epoch": 0}),
              make_event(Event.SAMPLE_DEFAULT, path="samples/default/4-0.png", prompt="a square", global_step=4, epoch=0),
              progress(6, 0.4),
              make_event(Event.LOG, text="backup written: backups/t-step6",
                         artifact={"kind": "backup", "path": "backups/t-step6", "global_step": 6, "epoch": 1}),
              progress(12, 0.3),
              # the output as a worker on another host names it: an absolute path in its own workspace
              make_event(Event.FINISHED, stopped=False, output=f"/elsewhere/workspace/runs/{run_id}/models/{name}.safetensors"),
              make_event(Event.RUN, state="completed")]
    for event in events:
        store.append_event(conn, run_id, event)
    conn.close()
    return run_id, paths
