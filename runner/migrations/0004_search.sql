-- The adaptive threshold search's record (sweep files' `search:` block): per cell of the other
-- varied keys, one row per probe of each round and one final row (probe = -1) with the
-- cell's outcome. Written by the controller only; rebuilt from the jobs' answers each round,
-- so rows are upserted by (sweep, cell, round, probe).
CREATE TABLE search_steps (
    sweep      TEXT NOT NULL REFERENCES sweeps(name) ON DELETE CASCADE,
    cell       TEXT NOT NULL,            -- label of the other varied keys ('' when none)
    round      INTEGER NOT NULL,         -- 0: both ends
    probe      INTEGER NOT NULL,         -- index in the searched values; -1 on the final row
    value      TEXT NOT NULL,            -- the probed value, JSON (null on the final row)
    job_id     TEXT,                     -- the probe's job
    answer     TEXT,                     -- yes / no / undecided: why, once its job completed
    decision   TEXT NOT NULL,            -- JSON SearchDecision (protocol)
    lo         TEXT,                     -- bracket when the decision was made, JSON values
    hi         TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sweep, cell, round, probe)
);
