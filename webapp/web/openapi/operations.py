"""What the OpenAPI document says about each JSON route, by endpoint name: summary, query, body,
answer and the errors beyond the common ones. ``openapi_spec`` joins it with the URL map (paths,
path parameters, methods); a route without an entry here fails tests/unit/test_openapi.py, so the
document cannot drift from the routes."""
from __future__ import annotations

from webapp.config.train_config import MAX_TEXT
from webapp.store.notifications import KINDS as NOTIFY_KINDS
from webapp.store.run_selection import ENDED_STATES
from webapp.web.api_input import MAX_ID
from webapp.web.models.views import MAX_NOTE, MAX_TAG

ACCOUNT_NAME = 64  # user and token names (store/accounts.py refuses longer ones)

STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
ANY = {}


def obj(required: tuple = (), **props) -> dict:
    schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def between(low: int, high: int) -> dict:
    """An integer query parameter with its limits: the API answers 400 past them."""
    return {"type": "integer", "minimum": low, "maximum": high}


def text(limit: int) -> dict:
    return {"type": "string", "maxLength": limit}


def q(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "schema": schema, "description": description, "required": required}


def op(summary: str, tag: str, *, ok=None, status: int = 200, body: dict | None = None, query=(),
       errors=(), media: str = "application/json", description: str = "", headers=(), also=()) -> dict:
    """``also``: other success statuses ({201: "created"}: PUT of a new config)."""
    return {"summary": summary, "tag": tag, "ok": ok if ok is not None else obj(), "status": status, "body": body,
            "query": list(query), "errors": list(errors), "media": media, "description": description,
            "headers": list(headers), "also": dict(also)}


ID = between(1, MAX_ID)
NOTIFY_SUB = obj(id=INT, events=array(STR), scope=STR, config_name=nullable(STR), channel=STR, url=nullable(STR),
                 format=STR, paused=BOOL, paused_reason=nullable(STR), signed=BOOL, deliveries=array(obj()))
# keyset paging: every list takes the last page's next_before (null on the last page)
BEFORE = q("before", ID, "the next (older) page: the last page's `next_before`; a cursor that is no whole number answers 400")
NEXT = nullable(INT)
QUEUE_ERRORS = [409, 429, 503, 507]  # a start: state, caps per user, the queue or Redis, disk space
COMMAND = obj(run_id=INT, command=STR, accepted=BOOL)
SAMPLE_REQUEST = obj(prompt=text(MAX_TEXT), negative_prompt=text(MAX_TEXT), seed=INT, random_seed=BOOL, steps=INT, cfg_scale=NUM,
                     width=INT, height=INT, noise_scheduler=STR, playground=BOOL, lora_scale=NUM, run_id=INT)
CONFIG_BODY = {"anyOf": [ref("TrainConfig"), obj(("config",), config=ref("TrainConfig"))]}
CONFIG_SHAPE = ('The config itself, or `{"config": {...}}` as `GET /api/config/load` answers it (its other keys are '
                'ignored); a body with `config` beside a config\'s own keys is refused (400).')
QUEUE_ITEM = obj(config_name=STR, config=ref("TrainConfig"), count=INT, overrides=obj())
DATASET = obj(key=STR, name=STR, writable=BOOL, source=STR, path=STR, stats=obj())
UPLOAD = obj(id=STR, dataset=STR, chunk_size=INT, files=array(obj()), skipped=array(obj()), stored=INT, broken=array(obj()),
             bytes=INT, received=INT, complete=BOOL)
VERSIONS_QUERY = [q("model", STR, "a model: the config name"), q("tag", STR, "versions with this tag"),
                  q("base_model", STR, "base_model_name as the run had it"), q("method", STR, "LORA, FINE_TUNE, EMBEDDING"),
                  q("kind", {"enum": ["output", "save", "backup"]}, "what saved it"), q("run", ID, "a run id"),
                  q("picked", {"enum": ["1", "true"]}, "only each model's current pick"),
                  q("order", {"enum": ["newest", "loss", "step"]}, "newest first (default), lowest smoothed loss, highest step"),
                  q("limit", between(1, 500), "at most this many (default 100)"), BEFORE]

CLEANUP_QUERY = [q("older_than_days", {"type": "number", "minimum": 0}, "runs that ended more than this many days ago"),
                 q("state", {"enum": list(ENDED_STATES)}, "runs that ended in this state"),
                 q("config", text(200), "runs whose config name contains this")]

OPERATIONS = {
    # training
    "api.health": op("Health: Redis, the database and whether the record can be written (record_error says why not)",
                     "system", ok=obj(status=STR, redis=ANY, database=ANY, record=ANY, time=NUM),
                     errors=[503], description="Public. 503 with the same body when degraded."),
    "api.training_status": op("The current run and the queue length", "training", ok=obj(run=nullable(ref("Run")), queued=INT)),
    "api.training_start": op("Start a run from a library config or an inline one", "training", status=202,
                             body=obj(config_name=STR, config=ref("TrainConfig")), ok=obj(run_id=INT, state=STR),
                             errors=QUEUE_ERRORS),
    "api.training_stop": op("Stop the running run (it saves first)", "training", status=202, body=obj(run_id=ID), ok=COMMAND, errors=[409, 503]),
    "api.training_save": op("Save the model now", "training", status=202, body=obj(run_id=ID), ok=COMMAND, errors=[409, 503]),
    "api.training_backup": op("Write a backup now", "training", status=202, body=obj(run_id=ID), ok=COMMAND, errors=[409, 503]),
    "api.training_sample_default": op("Sample the config's prompts now", "training", status=202, body=obj(run_id=ID), ok=COMMAND, errors=[409, 503]),
    "api.training_progress": op("Step, epoch, loss, smoothed loss, it/s, ETA of the current run", "training",
                                ok=obj(run_id=INT, state=STR, status=STR, progress=nullable(obj())), errors=[404]),
    "runs_api.run_resume": op("Resume an ended run from its newest backup", "runs", status=202,
                         ok=obj(run_id=INT, state=STR, resumed=BOOL), errors=QUEUE_ERRORS),
    # events
    "events.json_events": op("The live event stream (SSE, JSON data, id = sequence number)", "events",
                             media="text/event-stream", ok={"type": "string"},
                             query=[q("after", between(0, MAX_ID), "replay events after this sequence number (or send Last-Event-ID)"),
                                    q("run", ID, "only this run's events")], errors=[429, 503],
                             description="Each frame: `id: <seq>`, `event: <name>`, `data: {seq, run_id, event, data, time}`."),
    "events.stats": op("SSE broker statistics of this web process", "events", ok=obj()),
    # runs and the queue
    "runs_api.list_runs": op("Run history, newest first, a page at a time", "runs",
                             ok=obj(runs=array(ref("Run")), limit=INT, offset=INT, before=NEXT, next_before=NEXT),
                             query=[q("state", STR, "a run state"), q("config", STR, "config name contains"),
                                    q("model_type", STR, "model type"), q("method", STR, "training method"),
                                    q("started_by", STR, "who started it"), q("limit", between(1, 500), "at most this many (default 50)"),
                                    q("offset", between(0, 10**9), "skip this many (prefer before: a keyset page)"), BEFORE]),
    "runs_api.get_run": op("One run and its config as it ran", "runs", ok=obj(run=ref("Run"), config=ref("TrainConfig"))),
    "runs_api.delete_run": op("Delete an ended run and its files (admin)", "runs", ok=obj(run_id=INT, deleted=BOOL), errors=[409]),
    "runs_api.run_events": op("A run's recorded events", "runs",
                              ok=obj(run_id=INT, events=array(ref("Event")), last_seq=INT, next_before=NEXT),
                              description="Forward from `after`; or back from `before` (a sequence number): the events "
                                          "just before it, oldest first, and `next_before` for the page before those.",
                              query=[q("after", between(0, 2**62), "after this sequence number"), BEFORE,
                                     q("limit", between(1, 5000), "at most this many (default 1000)")]),
    "runs_api.run_loss": op("A run's downsampled loss curve and its markers", "runs",
                            ok=obj(run_id=INT, max_points=INT, total=INT, points=array(obj()), markers=array(obj())),
                            query=[q("max_points", between(2, 20_000), "at most this many points (default 1000)")]),
    "runs_api.get_queue": op("The queue", "queue", ok=obj(queue=array(ref("Run")), paused=BOOL)),
    "runs_api.add_to_queue": op("Queue configs", "queue", status=202, body=obj(items=array(QUEUE_ITEM)),
                                ok=obj(run_ids=array(INT)), errors=QUEUE_ERRORS),
    "runs_api.cancel_queued": op("Take a run out of the queue", "queue", ok=obj(), errors=[409]),
    "runs_api.reorder": op("Reorder the queue", "queue", body=obj(order=array(INT)), ok=obj()),
    "runs_api.pause": op("Pause or resume the queue", "queue", body=obj(paused=BOOL), ok=obj(paused=BOOL)),
    "fleet_api.api_workers": op("The fleet: each worker (GPUs, load, labels, run, last seen) and the totals", "fleet",
                            ok=obj(workers=array(obj()), totals=obj())),
    "fleet_api.drain": op("Drain a worker (finish its run, take no more) or take runs again (admin)", "fleet",
                      body=obj(drain=BOOL), ok=obj(name=STR, draining=BOOL)),
    "fleet_api.remove": op("Remove a gone worker from the fleet (admin)", "fleet", ok=obj(name=STR, removed=BOOL)),
    # configs
    "config_api.current": op("The running run's config", "configs", ok=obj(run_id=INT, config_name=STR, config=ref("TrainConfig")), errors=[404]),
    "config_api.list_configs": op("The config library", "configs", ok=obj(configs=array(obj()))),
    "config_api.load": op("One config (ETag = its version)", "configs", query=[q("packed", STR, "concepts and samples inline")],
                          ok=obj(name=STR, read_only=BOOL, version=STR, config=ref("TrainConfig")), headers=["ETag"]),
    "config_api.validate_config": op("Validate a config", "configs", body=CONFIG_BODY, errors=[413],
                                     description=CONFIG_SHAPE,
                                     ok=obj(valid=BOOL, errors=array(ref("FieldError")), warnings=ANY, notes=ANY)),
    "config_api.schema": op("The config's JSON schema", "configs", ok=ANY),
    "config_api.defaults": op("OneTrainer's config defaults", "configs", ok=ref("TrainConfig")),
    "config_api.save": op("Save a config (send If-Match with the loaded version)", "configs", body=CONFIG_BODY,
                          ok=obj(name=STR, version=STR, warnings=ANY, notes=ANY), errors=[409, 413],
                          also={201: "created: no config had this name"}, description=CONFIG_SHAPE),
    "config_api.delete": op("Delete a config", "configs", status=204, ok=None, errors=[409]),
    # datasets
    "datasets_api.list_datasets": op("The dataset library: each dataset with its figures (images, bytes, captions, resolutions)",
                                     "datasets", ok=obj(datasets=array(DATASET))),
    "datasets_api.create": op("Create a library dataset (operator)", "datasets", status=201,
                              body=obj(("name",), name=text(64)), ok=DATASET, errors=[409]),
    "datasets_api.get_dataset": op("One dataset, its figures and the configs and runs that use it", "datasets",
                                   ok=obj(used_by=obj(configs=array(STR), runs=array(obj())), **DATASET["properties"])),
    "datasets_api.rename": op("Rename a library dataset (refused while a queued or running run uses it)", "datasets",
                              body=obj(("name",), name=text(64)), ok=obj(), errors=[403, 409]),
    "datasets_api.delete": op("Delete a library dataset (refused while a queued or running run uses it)", "datasets",
                              status=204, ok=None, errors=[403, 409]),
    "datasets_api.open_upload": op("Open an upload: its file list; images, captions and archives are taken, the rest skipped",
                                   "datasets", status=201, body=obj(("files",), files=array(obj(("path", "size"), path=STR, size=INT))),
                                   ok=UPLOAD, errors=[403, 413, 507],
                                   description="413: past the dataset's quota (OTWEB_MAX_DATASET_MB); 507: past all datasets' "
                                               "(OTWEB_MAX_DATASETS_MB). Then PUT each file's bytes in chunks."),
    "datasets_api.upload_state": op("What of an upload arrived (a client resumes from here)", "datasets", ok=UPLOAD, errors=[403]),
    "datasets_api.put_chunk": op("One chunk of one file of an upload, at its byte offset (body: the raw bytes)", "datasets",
                                 ok=obj(index=INT, path=STR, size=INT, received=INT, result=nullable(obj())), errors=[400, 403, 409, 413],
                                 description="A chunk already received is a no-op; one past what arrived answers 409 with "
                                             "`detail.received`. At most 8 MiB a chunk. A complete file is checked (images "
                                             "decoded, archives unpacked safely) and its `result` lists stored, broken, skipped."),
    "datasets_api.images": op("The dataset's images and captions, filtered and paged (48 a page)", "datasets",
                              query=[q("page", between(1, 10**6), "page number"), q("text", STR, "caption contains"),
                                     q("missing", {"enum": ["1"]}, "only images without a caption"),
                                     q("smaller", between(0, 65536), "only images with a side smaller than this"),
                                     q("duplicates", {"enum": ["1"]}, "only exact duplicates (same sha256)"),
                                     q("unreadable", {"enum": ["1"]}, "only images that do not decode")],
                              ok=obj(images=array(obj()), page=INT, pages=INT, total=INT)),
    "datasets_api.save_caption": op("Save one image's caption (send the token it was loaded with)", "datasets",
                                    body=obj(("image", "caption"), image=STR, caption=text(65536), token=STR),
                                    ok=obj(image=STR, token=STR), errors=[403, 409]),
    "datasets_api.bulk": op("Change the captions of the filtered images: replace, trigger word, remove a tag", "datasets",
                            body=obj(("op",), op={"enum": ["replace", "trigger", "remove_tag"]}, find=text(200), replace=text(200),
                                     word=text(200), where={"enum": ["start", "end"]}, tag=text(200), preview=BOOL),
                            query=[q("text", STR, "caption contains"), q("missing", {"enum": ["1"]}, "only uncaptioned")],
                            ok=obj(changes=INT, changed=INT, selected=INT), errors=[403],
                            description="`preview: true` only counts the captions that would change."),
    "datasets_api.undo": op("Undo the last bulk change", "datasets", ok=obj(restored=INT, changed_since=array(STR)), errors=[403, 409]),
    "datasets_api.tags": op("Tag frequency over comma-separated captions", "datasets", ok=obj(tags=array(obj(tag=STR, count=INT)))),
    # samples and the playground
    "samples_api.samples_default": op("Sample the config's prompts now", "samples", status=202, body=obj(run_id=INT, playground=BOOL),
                                      ok=COMMAND, errors=[409]),
    "samples_api.samples_custom": op("A custom sample", "samples", status=202, body=SAMPLE_REQUEST,
                                     ok=obj(run_id=INT, command=STR, sample=obj(), accepted=BOOL), errors=[409]),
    "samples_api.samples_list": op("A run's samples, newest first", "samples",
                                   ok=obj(run_id=INT, samples=array(ref("Sample")), next_before=NEXT),
                                   query=[q("run", ID, "the run", required=True), q("prompt", STR, "prompt contains"),
                                          q("kind", {"enum": ["default", "custom"]}, "scheduled or custom"),
                                          q("limit", between(1, 5000), "at most this many (default 500)"), BEFORE],
                                   errors=[404]),
    "samples_api.samples_latest": op("The newest samples", "samples", ok=obj(samples=array(ref("Sample"))),
                                     query=[q("count", between(1, 200), "how many (default 12)")]),
    "samples_api.sample_metadata": op("A sample's metadata", "samples", ok=ref("Sample")),
    "samples_api.sample_image": op("A sample's image (ETag, cached)", "samples", media="image/png", ok={"type": "string", "format": "binary"}),
    "samples_api.sample_thumbnail": op("A sample's thumbnail (PNG, at most size pixels a side)", "samples", media="image/png",
                                       ok={"type": "string", "format": "binary"},
                                       query=[q("size", {"type": "integer", "enum": [128, 256]}, "pixels a side (default 128)")]),
    "playground.state": op("The playground session and the LoRA files it can open", "playground",
                           query=[BEFORE],
                           ok=obj(session=nullable(obj()), sources=array(obj(key=STR, run_id=INT, label=STR, config_name=STR)),
                                  sessions=array(obj(id=INT, state=STR, source=nullable(STR), source_run=nullable(INT), images=INT, created_at=NUM)),
                                  next_before=NEXT)),
    "playground.api_open": op("Open a playground session", "playground", status=202, body=obj(("source",), source=STR, idle_s=INT),
                              ok=obj(run_id=INT, state=STR), errors=[409]),
    "playground.api_close": op("Close the playground session", "playground", status=202, ok=obj(run_id=INT, closing=BOOL), errors=[409]),
    # model versions
    "models_api.list_models": op("Model versions, filtered and ordered", "models", query=VERSIONS_QUERY,
                                 ok=obj(versions=array(ref("ModelVersion")), order=STR, limit=INT, next_before=NEXT),
                                 description="The best version of a model: `?model=<config>&picked=1`, or `&order=loss&limit=1`."),
    "models_api.get_model": op("One model version with its lineage (config as it ran, dataset fingerprint, sha256)", "models",
                               ok=obj(version=ref("ModelVersionDetail"))),
    "models_api.download": op("Download a version's file (a backup as a zip); X-Checksum-SHA256 has its sha256", "models",
                              media="application/octet-stream", ok={"type": "string", "format": "binary"}, errors=[410],
                              headers=["X-Checksum-SHA256"]),
    "models_api.change_tags": op("Tag a version (operator); pick marks it as its model's current pick", "models",
                                 body=obj(tag=text(MAX_TAG), pick=BOOL, remove=BOOL), ok=obj(id=INT, tags=array(STR), picked=BOOL)),
    "models_api.set_note": op("A note on a version (operator)", "models", body=obj(("note",), note=text(MAX_NOTE)),
                              ok=obj(id=INT, note=STR)),
    "models_api.delete_model": op("Delete a version and its file (admin)", "models", ok=obj(deleted=INT, file_removed=BOOL)),
    # notifications (the caller's own; a viewer may subscribe)
    "notifications_api.list_subscriptions": op("My subscriptions with their recent deliveries; the kinds, formats and approved hosts",
                                               "notifications", ok=obj(subscriptions=array(NOTIFY_SUB), kinds=array(STR),
                                                                       formats=array(STR), webhook_hosts=array(STR))),
    "notifications_api.add_subscription": op(
        "Subscribe to run events: a browser notification or a webhook", "notifications", status=201, errors=[409],
        body=obj(("events",), events=array({"enum": list(NOTIFY_KINDS)}), channel={"enum": ["browser", "webhook"]},
                 scope={"enum": ["mine", "all", "config"]}, config_name=STR, url=text(2000),
                 format={"enum": ["generic", "slack", "discord", "ntfy"]}),
        ok=obj(id=INT, secret=nullable(STR)),
        description="A generic webhook's signing secret is in this answer only: it is never shown again. "
                    "Signature: `X-OTWeb-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + \".\" + body)>`; "
                    "a URL whose host is not in OTWEB_WEBHOOK_HOSTS, or that resolves to a loopback, link-local "
                    "or metadata address, is refused (400)."),
    "notifications_api.delete_subscription": op("Remove a subscription and its log", "notifications", ok=obj(id=INT, deleted=BOOL)),
    "notifications_api.resume": op("Resume a paused destination: its waiting deliveries go out in order", "notifications",
                                   ok=obj(id=INT, paused=BOOL)),
    "notifications_api.send_test": op("Send a test now (a webhook: its answer; a browser: shown on open pages)", "notifications",
                                      ok=obj(id=INT, sent=BOOL, code=nullable(INT), error=nullable(STR))),
    "notifications_api.deliveries": op("A destination's delivery log (status, attempts, last answer, time)", "notifications",
                                       ok=obj(id=INT, deliveries=array(obj()))),
    "notifications_api.browser": op("My browser notifications after a delivery id (without after: only where to start)",
                                    "notifications", query=[q("after", between(0, MAX_ID), "the last delivery id seen")],
                                    ok=obj(notices=array(obj(id=INT, kind=STR, title=STR, body=STR, run_id=nullable(INT),
                                                             link=STR, image=nullable(STR))), last=INT)),
    # system, accounts, this document
    "system_api.api_info": op("Machine, libraries, GPUs", "system", ok=obj()),
    "system_api.api_resources": op("CPU, RAM, disk and GPU use", "system", ok=obj()),
    "system_api.api_processes": op("The product's processes", "system", ok=obj()),
    "system_api.api_record": op("The record: entries set aside as malformed, and why it cannot be written", "system",
                            ok=obj(blocked=ANY, dead_letters=ANY)),
    "system_api.cleanup_preview": op("Bulk deletion, step 1 (admin): the ended runs the filters pick and what deleting them frees",
                                     "system", query=CLEANUP_QUERY, errors=[403],
                                     ok=obj(filters=obj(), runs=array(obj(id=INT, config_name=STR, state=STR, created_at=NUM,
                                                                          finished_at=nullable(NUM), bytes=INT, files=INT)),
                                            total=obj(runs=INT, files=INT, bytes=INT), more=BOOL, selection=STR),
                                     description="Queued and running runs are never picked; at most 1,000 runs, the oldest "
                                                 "first (`more`: others match). Nothing is deleted."),
    "system_api.cleanup_delete": op("Bulk deletion, step 2 (admin): delete the runs a preview showed, with their files", "system",
                                    body=obj(("selection",), older_than_days=NUM, state={"enum": list(ENDED_STATES)},
                                             config=text(200), selection=STR),
                                    ok=obj(deleted=array(INT), runs=INT, files=INT, bytes=INT, more=BOOL), errors=[403, 409],
                                    description="The same filters as the preview and its `selection`; 409 when the runs "
                                                "they pick are no longer those (preview again)."),
    "auth.token_login": op("Trade a password for an API token", "auth", status=201,
                           body=obj(("username", "password"), username=text(ACCOUNT_NAME), password=STR, name=text(ACCOUNT_NAME)),
                           ok=obj(id=INT, token=STR, role=STR), errors=[401],
                           description="Public; rate-limited per address and per account. A new password revokes the tokens made here."),
    "auth.whoami": op("Who am I", "auth", ok=obj(name=STR, role=STR, via=STR)),
    "auth.users_list": op("Accounts (admin)", "auth", ok=obj(users=array(obj()))),
    "auth.users_add": op("Add an account (admin)", "auth", status=201,
                         body=obj(("name", "password"), name=text(ACCOUNT_NAME), password=STR, role=STR),
                         ok=obj(id=INT), errors=[409]),
    "auth.user_delete": op("Remove an account (admin)", "auth", status=204, ok=None),
    "openapi.document": op("This document (OpenAPI 3.1)", "system", ok=obj()),
}
# routes under /api that answer HTML, not JSON: the docs page
NOT_JSON = ("openapi.docs",)
