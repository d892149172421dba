-- The results database. Only the controller writes it; workers append JSON-line events to
-- their run directories and the controller ingests them idempotently.

CREATE TABLE sweeps (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    spec         TEXT NOT NULL,          -- the sweep YAML as given
    source_path  TEXT,
    backend      TEXT NOT NULL DEFAULT 'local',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    cancelled_at TEXT
);

-- One row per distinct resolved job config (id = hash of the canonical config): a config
-- that appears in two sweeps is trained once.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    config       TEXT NOT NULL,          -- resolved job config, JSON
    state_size   INTEGER NOT NULL,
    n_params     INTEGER NOT NULL,
    train_len    INTEGER NOT NULL,
    run_dir      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    error_class  TEXT,
    last_seq     INTEGER NOT NULL DEFAULT 0,
    step         INTEGER,
    total_steps  INTEGER,
    last_loss    REAL,
    tokens_per_s REAL,
    peak_mem_gb  REAL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE INDEX jobs_status ON jobs(status);

CREATE TABLE sweep_jobs (
    sweep    TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,
    job_id   TEXT NOT NULL REFERENCES jobs(id),
    label    TEXT NOT NULL,
    varied   TEXT NOT NULL,              -- JSON object: varied key -> value
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep, job_id)
);
CREATE INDEX sweep_jobs_job ON sweep_jobs(job_id);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    number      INTEGER NOT NULL,
    backend     TEXT NOT NULL,
    backend_id  TEXT,                    -- e.g. a Slurm job id
    host        TEXT,
    gpu         TEXT,                    -- CUDA_VISIBLE_DEVICES given to the worker
    gpu_name    TEXT,
    pid         INTEGER,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL DEFAULT 'running',
    exit_code   INTEGER,
    error_class TEXT,                    -- config, data, diverged, oom, killed, timeout, interrupted, cancelled, failed
    error       TEXT,
    log_path    TEXT,
    git_commit  TEXT,
    git_dirty   INTEGER,
    version     TEXT,
    libtorch    TEXT,
    seed        INTEGER,
    UNIQUE (job_id, number)
);

-- Upserted by (job, key, step): a step re-logged after a resume replaces its row.
CREATE TABLE metrics (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    key    TEXT NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (job_id, key, step)
);

CREATE VIEW latest_metrics AS
SELECT m.job_id, m.key, m.step, m.value
FROM metrics m
WHERE m.step = (SELECT MAX(m2.step) FROM metrics m2 WHERE m2.job_id = m.job_id AND m2.key = m.key);

CREATE TABLE evals (
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    eval_index INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    params     TEXT NOT NULL,            -- JSON
    result     TEXT NOT NULL,            -- JSON (docs/results-schema.md)
    seq        INTEGER NOT NULL,
    PRIMARY KEY (job_id, eval_index)
);

CREATE TABLE artifacts (
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    kind       TEXT NOT NULL,            -- checkpoint, log, events
    path       TEXT NOT NULL,
    step       INTEGER,
    created_at TEXT NOT NULL,
    PRIMARY KEY (job_id, kind, path)
);
