-- Evaluations during training (`evals_at`): a job holds one row per (evaluation, step), with
-- the training tokens of that checkpoint; and a job that stopped early (`early_stop`) records
-- the step it stopped at (it is completed, not failed). SQLite cannot change a primary key in
-- place: the evals table is rebuilt with its rows.
CREATE TABLE evals_by_step (
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    eval_index INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    params     TEXT NOT NULL,            -- JSON
    result     TEXT NOT NULL,            -- JSON (docs/results-schema.md)
    seq        INTEGER NOT NULL,
    tokens     INTEGER,                  -- training tokens of the checkpoint (absent before event format 2)
    PRIMARY KEY (job_id, eval_index, step)
);
INSERT INTO evals_by_step (job_id, eval_index, step, kind, params, result, seq)
    SELECT job_id, eval_index, step, kind, params, result, seq FROM evals;
DROP TABLE evals;
ALTER TABLE evals_by_step RENAME TO evals;

ALTER TABLE jobs ADD COLUMN stopped_early INTEGER;
