-- The pilot's success metrics, measured by the product itself: ratings, the bot's own
-- time per run, and why a run failed.

-- One rating per person per run (changeable); goes with the run (retention, reset) and
-- with the person (`/coffee forget me`).
CREATE TABLE run_ratings (
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    score       smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, user_id)
);
CREATE INDEX run_ratings_user ON run_ratings (user_id);

ALTER TABLE runs
    -- The bot's steps, human time excluded: command received -> run message visible, and
    -- close -> summary and runner DM delivered. NULL until the step happened (and for
    -- runs from before this migration).
    ADD COLUMN command_at           timestamptz,
    ADD COLUMN message_posted_at    timestamptz,
    ADD COLUMN summary_posted_at    timestamptz,
    ADD COLUMN runner_dm_posted_at  timestamptz,
    ADD COLUMN failure_category     text
        CHECK (failure_category IN ('slack_error', 'timeout', 'internal')),
    ADD CONSTRAINT failed_has_category
        CHECK (status <> 'failed' OR failure_category IS NOT NULL) NOT VALID;

-- Runs that failed before categories existed count as internal.
UPDATE runs SET failure_category = 'internal'
 WHERE status = 'failed' AND failure_category IS NULL;
ALTER TABLE runs VALIDATE CONSTRAINT failed_has_category;

-- The pilot report and the metrics read runs by channel and start time (runs_started) and
-- by closed time across channels.
CREATE INDEX runs_started_all ON runs (started_at);
