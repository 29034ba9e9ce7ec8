"""The answers' shared shapes for the OpenAPI document: a run, an event, a sample, a model version."""
from __future__ import annotations

from webapp.web.openapi.operations import ANY, BOOL, INT, NUM, STR, array, nullable, obj, ref

OPT_INT, OPT_NUM, OPT_STR = nullable(INT), nullable(NUM), nullable(STR)
SAMPLE_REF = obj(id=INT, prompt=STR, global_step=OPT_INT, image_url=STR, thumbnail_url=STR)
VERSION_PROPS = dict(
    id=INT, model=STR, run_id=INT, run_state=STR, kind={"enum": ["output", "save", "backup"]}, backup=BOOL,
    path={"type": "string", "description": "relative to the run folder"}, base_model=STR, model_type=STR, method=STR,
    format=STR, global_step=OPT_INT, epoch=OPT_INT, loss={**OPT_NUM, "description": "smoothed loss at the save"},
    size=OPT_INT, sha256=OPT_STR, exists={"type": "boolean", "description": "false: the file is gone"},
    tags=array(STR), picked=BOOL, note=STR, started_by=OPT_STR, created_at=NUM, download_url=STR, page_url=STR,
    samples=array(SAMPLE_REF))
DATASET = obj(files=INT, bytes=INT, sha256=OPT_STR,
              concepts=array(obj(path=STR, files=INT, bytes=INT, sha256=OPT_STR, readable=BOOL)))

SCHEMAS = {
    "Run": obj(id=INT, config_name=STR, state={"enum": ["queued", "running", "completed", "stopped", "failed",
                                                        "interrupted", "canceled"]},
               status_text=STR, progress=nullable(obj()), worker=OPT_STR, reason=OPT_STR, reason_code=OPT_STR, started_by=OPT_STR,
               created_at=NUM, started_at=OPT_NUM, finished_at=OPT_NUM,
               files_owed={**OPT_STR, "description": "an ended run's files still on its worker, being sent"}),
    "Event": obj(seq=INT, run_id=INT, event=STR, data=obj(), time=NUM),
    "Sample": obj(id=INT, run_id=INT, kind=STR, prompt=STR, global_step=OPT_INT, epoch=OPT_INT, settings=ANY,
                  image_url=STR, thumbnail_url=STR),
    "ModelVersion": obj(**VERSION_PROPS),
    "ModelVersionDetail": obj(**VERSION_PROPS, config=ref("TrainConfig"), dataset=nullable(DATASET)),
}
