BEGIN TRANSACTION;
CREATE TABLE assignments (
    id TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL
);
INSERT INTO "events" VALUES(1,1,'progress','{"global_step":3,"epoch":0,"loss":0.5,"smooth_loss":0.5}',1.79667198610985827441e+09);
INSERT INTO "events" VALUES(2,1,'sample_default','{"path":"samples/1.png","prompt":"a cat","global_step":3}',1.79667198611676764488e+09);
INSERT INTO "events" VALUES(3,1,'finished','{"output":"runs/1/output.safetensors"}',1.79667198611695647244e+09);
INSERT INTO "events" VALUES(4,2,'progress','{"global_step":3,"epoch":0,"loss":0.5,"smooth_loss":0.5}',1.79667198611730098722e+09);
INSERT INTO "events" VALUES(5,2,'sample_default','{"path":"samples/2.png","prompt":"a cat","global_step":3}',1.79667198611753964419e+09);
INSERT INTO "events" VALUES(6,2,'finished','{"output":"runs/2/output.safetensors"}',1.79667198611760711669e+09);
INSERT INTO "events" VALUES(7,3,'progress','{"global_step":3,"epoch":0,"loss":0.5,"smooth_loss":0.5}',1.79667198611776232717e+09);
INSERT INTO "events" VALUES(8,3,'sample_default','{"path":"samples/3.png","prompt":"a cat","global_step":3}',1.79667198611793565749e+09);
INSERT INTO "events" VALUES(9,3,'finished','{"output":"runs/3/output.safetensors"}',1.79667198611800551415e+09);
INSERT INTO "events" VALUES(10,4,'progress','{"global_step":3,"epoch":0,"loss":0.5,"smooth_loss":0.5}',1.79667198611809086797e+09);
INSERT INTO "events" VALUES(11,4,'sample_default','{"path":"samples/4.png","prompt":"a cat","global_step":3}',1.79667198611825823786e+09);
INSERT INTO "events" VALUES(12,4,'finished','{"output":"runs/4/output.safetensors"}',1.79667198611831784244e+09);
CREATE TABLE ingested (
    run_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run_id, source, n)
) WITHOUT ROWID;
CREATE TABLE metric_buckets (
    run_id INTEGER NOT NULL,
    width INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    lr_sum REAL NOT NULL,
    lr_n INTEGER NOT NULL,
    min_loss REAL,
    min_step INTEGER,
    max_loss REAL,
    max_step INTEGER,
    PRIMARY KEY (run_id, width, bucket)
) WITHOUT ROWID;
INSERT INTO "metric_buckets" VALUES(1,4,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,16,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,64,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,256,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,1024,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,4096,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,16384,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(1,65536,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,4,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,16,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,64,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,256,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,1024,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,4096,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,16384,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(2,65536,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,4,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,16,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,64,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,256,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,1024,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,4096,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,16384,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(3,65536,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,4,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,16,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,64,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,256,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,1024,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,4096,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,16384,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
INSERT INTO "metric_buckets" VALUES(4,65536,0,3,3.00000000000000027929e-04,3,3.33333333333333314829e-01,3,1.0,1);
CREATE TABLE metric_buckets_stale (run_id INTEGER PRIMARY KEY);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    lr REAL,
    time REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    superseded INTEGER NOT NULL DEFAULT 0
);
INSERT INTO "metrics" VALUES(1,1,1.0,0.0001,1001.0,1,0);
INSERT INTO "metrics" VALUES(1,2,0.5,0.0001,1002.0,1,0);
INSERT INTO "metrics" VALUES(1,3,3.33333333333333314829e-01,0.0001,1003.0,1,0);
INSERT INTO "metrics" VALUES(2,1,1.0,0.0001,1001.0,1,0);
INSERT INTO "metrics" VALUES(2,2,0.5,0.0001,1002.0,1,0);
INSERT INTO "metrics" VALUES(2,3,3.33333333333333314829e-01,0.0001,1003.0,1,0);
INSERT INTO "metrics" VALUES(3,1,1.0,0.0001,1001.0,1,0);
INSERT INTO "metrics" VALUES(3,2,0.5,0.0001,1002.0,1,0);
INSERT INTO "metrics" VALUES(3,3,3.33333333333333314829e-01,0.0001,1003.0,1,0);
INSERT INTO "metrics" VALUES(4,1,1.0,0.0001,1001.0,1,0);
INSERT INTO "metrics" VALUES(4,2,0.5,0.0001,1002.0,1,0);
INSERT INTO "metrics" VALUES(4,3,3.33333333333333314829e-01,0.0001,1003.0,1,0);
CREATE TABLE model_tags (
    version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (version_id, tag)
);
CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    config_name TEXT NOT NULL,
    base_model TEXT NOT NULL DEFAULT '',
    model_type TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    global_step INTEGER,
    epoch INTEGER,
    loss REAL,
    size INTEGER,
    sha256 TEXT,
    file_stamp TEXT,
    note TEXT NOT NULL DEFAULT '',
    picked INTEGER NOT NULL DEFAULT 0,
    created_by TEXT,
    created_at REAL NOT NULL,
    UNIQUE (run_id, kind, path)
);
INSERT INTO "model_versions" VALUES(1,1,'output','output.safetensors','cats','models/x','STABLE_DIFFUSION_15','LORA','',NULL,NULL,NULL,NULL,NULL,NULL,'',0,'alice',1.79667198611695647244e+09);
INSERT INTO "model_versions" VALUES(2,2,'output','output.safetensors','dogs','','FLUX_DEV_1','FINE_TUNE','',NULL,NULL,NULL,NULL,NULL,NULL,'',0,NULL,1.79667198611760711669e+09);
INSERT INTO "model_versions" VALUES(3,4,'output','output.safetensors','plain','','','FINE_TUNE','',NULL,NULL,NULL,NULL,NULL,NULL,'',0,NULL,1.79667198611831784244e+09);
CREATE TABLE run_datasets (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    fingerprint_json TEXT NOT NULL,
    taken_at REAL NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_name TEXT NOT NULL,
    config_json TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    status_text TEXT NOT NULL DEFAULT '',
    progress_json TEXT,
    worker TEXT,
    pid INTEGER,
    reason TEXT,
    output_path TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    resume_requested INTEGER NOT NULL DEFAULT 0,
    queue_position REAL,
    started_by TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
, skipped_files INTEGER NOT NULL DEFAULT 0, gpus INTEGER NOT NULL DEFAULT 1, reason_code TEXT, target_json TEXT, assignment TEXT);
INSERT INTO "runs" VALUES(1,'cats','{"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA", "base_model_name": "models/x"}','completed','',NULL,NULL,NULL,NULL,'runs/1/output.safetensors',0,0,NULL,'alice',1.79667198610965347287e+09,1.79667198610965347287e+09,1.79667204610965347295e+09,0,1,NULL,NULL,NULL);
INSERT INTO "runs" VALUES(2,'dogs','{"model_type": "FLUX_DEV_1", "training_method": "FINE_TUNE"}','completed','',NULL,NULL,NULL,NULL,'runs/2/output.safetensors',0,0,NULL,NULL,1.79667198610974740979e+09,1.79667198610974740979e+09,1.79667204610974740987e+09,0,1,NULL,NULL,NULL);
INSERT INTO "runs" VALUES(3,'playground','{"__playground__": {"source": "cats.safetensors", "source_run": 1}}','completed','',NULL,NULL,NULL,NULL,'runs/3/output.safetensors',0,0,NULL,NULL,1.79667198610977745052e+09,1.79667198610977745052e+09,1.7966720461097774506e+09,0,1,NULL,NULL,NULL);
INSERT INTO "runs" VALUES(4,'plain','{}','completed','',NULL,NULL,NULL,NULL,'runs/4/output.safetensors',0,0,NULL,NULL,1.79667198610979771608e+09,1.79667198610979771608e+09,1.79667204610979771616e+09,0,1,NULL,NULL,NULL);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}',
    global_step INTEGER,
    epoch INTEGER,
    created_at REAL NOT NULL
);
INSERT INTO "samples" VALUES(1,1,'default','samples/1.png','a cat','{}',3,NULL,1.79667198611676764488e+09);
INSERT INTO "samples" VALUES(2,2,'default','samples/2.png','a cat','{}',3,NULL,1.79667198611753964419e+09);
INSERT INTO "samples" VALUES(3,3,'default','samples/3.png','a cat','{}',3,NULL,1.79667198611793565749e+09);
INSERT INTO "samples" VALUES(4,4,'default','samples/4.png','a cat','{}',3,NULL,1.79667198611825823786e+09);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "settings" VALUES('metric_buckets_version','1');
INSERT INTO "settings" VALUES('model_versions_backfilled','1796671986.10956');
CREATE TABLE uploads (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
CREATE INDEX runs_state ON runs(state);
CREATE INDEX events_run ON events(run_id, seq);
CREATE INDEX metrics_run ON metrics(run_id, step);
CREATE INDEX samples_run ON samples(run_id, id);
CREATE TRIGGER metrics_insert_buckets_v1 AFTER INSERT ON metrics BEGIN
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 4, CAST(NEW.step AS INTEGER) / 4, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 16, CAST(NEW.step AS INTEGER) / 16, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 64, CAST(NEW.step AS INTEGER) / 64, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 256, CAST(NEW.step AS INTEGER) / 256, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 1024, CAST(NEW.step AS INTEGER) / 1024, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 4096, CAST(NEW.step AS INTEGER) / 4096, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 16384, CAST(NEW.step AS INTEGER) / 16384, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
    INSERT INTO metric_buckets (run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step) VALUES (NEW.run_id, 65536, CAST(NEW.step AS INTEGER) / 65536, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END, NEW.loss, CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END) ON CONFLICT (run_id, width, bucket) DO UPDATE SET n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n, min_loss = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_loss ELSE min_loss END, min_step = CASE WHEN excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss OR (excluded.min_loss = min_loss AND excluded.min_step < min_step)) THEN excluded.min_step ELSE min_step END, max_loss = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_loss ELSE max_loss END, max_step = CASE WHEN excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss OR (excluded.max_loss = max_loss AND excluded.max_step < max_step)) THEN excluded.max_step ELSE max_step END;
END;
CREATE TRIGGER metrics_update_buckets_v1 AFTER UPDATE OF run_id, step, loss, lr ON metrics
BEGIN
    INSERT OR IGNORE INTO metric_buckets_stale (run_id) VALUES (OLD.run_id), (NEW.run_id);
END;
CREATE TRIGGER metrics_delete_buckets_v1 AFTER DELETE ON metrics BEGIN
    INSERT OR IGNORE INTO metric_buckets_stale (run_id) VALUES (OLD.run_id);
END;
CREATE INDEX model_versions_model ON model_versions(config_name, id);
CREATE INDEX assignments_run ON assignments(run_id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('runs',4);
INSERT INTO "sqlite_sequence" VALUES('events',12);
INSERT INTO "sqlite_sequence" VALUES('samples',4);
INSERT INTO "sqlite_sequence" VALUES('model_versions',3);
COMMIT;
