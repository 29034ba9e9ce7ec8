-- The record's schema as the starting commit of issue 29 (a4c8b64) made it (sqlite_master's SQL), for
-- the migration tests: a workspace from before auto_vacuum, compaction and disk use.
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
CREATE INDEX runs_state ON runs(state);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX events_run ON events(run_id, seq);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    lr REAL,
    time REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX metrics_run ON metrics(run_id, step);
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
CREATE INDEX samples_run ON samples(run_id, id);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TABLE metric_buckets_stale (run_id INTEGER PRIMARY KEY);
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
CREATE INDEX model_versions_model ON model_versions(config_name, id);
CREATE TABLE model_tags (
    version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (version_id, tag)
);
CREATE TABLE run_datasets (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    fingerprint_json TEXT NOT NULL,
    taken_at REAL NOT NULL
);
CREATE TABLE uploads (
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
CREATE TABLE assignments (
    id TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX assignments_run ON assignments(run_id);
CREATE TABLE ingested (
    run_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run_id, source, n)
) WITHOUT ROWID;
