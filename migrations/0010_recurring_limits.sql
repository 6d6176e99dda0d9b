-- mailrun schema, version 10: recurring jobs limited to a number of runs or an end time
-- (docs/scheduling.md). `runs` counts the occurrences that queued a message; it is
-- raised in the transaction that records the occurrence, under the job's row lock, so
-- the limit holds with overlapping ticks.
ALTER TABLE mailrun.recurring_jobs
    ADD COLUMN max_runs integer CHECK (max_runs > 0),
    ADD COLUMN until    timestamptz,
    ADD COLUMN runs     integer NOT NULL DEFAULT 0 CHECK (runs >= 0);
