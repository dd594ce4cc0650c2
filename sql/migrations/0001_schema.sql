-- CoffeeBuddy schema: the spec's data model plus the job table (the outbox and queue).
-- Rules the database can hold are constraints here, so no code path can break them.

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slack_user_id   text NOT NULL UNIQUE CHECK (slack_user_id ~ '^[UW][A-Z0-9]{2,30}$'),
    display_name    text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    -- IANA zone from users.info; pickup times like "10:30" are read in it.
    tz              text,
    -- Workspace admin/owner per users.info; refreshed with the profile.
    is_workspace_admin boolean NOT NULL DEFAULT false,
    profile_fetched_at timestamptz,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE channels (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slack_channel_id        text NOT NULL UNIQUE CHECK (slack_channel_id ~ '^[CGD][A-Z0-9]{2,30}$'),
    slack_team_id           text NOT NULL DEFAULT '',
    name                    text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    enabled                 boolean NOT NULL DEFAULT true,
    reminders_enabled       boolean NOT NULL DEFAULT true,
    reminder_offset_minutes integer NOT NULL DEFAULT 5 CHECK (reminder_offset_minutes BETWEEN 0 AND 120),
    last_call_enabled       boolean NOT NULL DEFAULT false,
    last_call_minutes       integer NOT NULL DEFAULT 5 CHECK (last_call_minutes BETWEEN 1 AND 60),
    fairness_window_runs    integer NOT NULL DEFAULT 10 CHECK (fairness_window_runs BETWEEN 1 AND 100),
    data_retention_days     integer NOT NULL DEFAULT 90 CHECK (data_retention_days BETWEEN 1 AND 3650),
    -- Set once the first run message (with its "how this works" line) was created.
    onboarded_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id          uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    initiator_user_id   uuid NOT NULL REFERENCES users (id),
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'closed', 'canceled', 'failed')),
    pickup_time         timestamptz,
    pickup_note         text CHECK (length(pickup_note) <= 120),
    runner_user_id      uuid REFERENCES users (id),
    runner_reason       text,
    runner_rule         text,
    started_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz,
    failure_reason      text,
    first_in_channel    boolean NOT NULL DEFAULT false,
    -- Correlation id of the request that started the run; carried into its jobs and logs.
    correlation_id      text NOT NULL,
    -- Slack message timestamps, recorded so that a retried job never posts twice.
    message_ts          text,
    summary_ts          text,
    runner_dm_channel   text,
    runner_dm_ts        text,
    -- A closed run always has its runner; a finished run always has its end time.
    CONSTRAINT closed_has_runner CHECK (status <> 'closed' OR (runner_user_id IS NOT NULL AND closed_at IS NOT NULL)),
    CONSTRAINT ended_has_time CHECK (status = 'open' OR closed_at IS NOT NULL),
    CONSTRAINT failed_has_reason CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
);
-- At most one open run per channel: a second /coffee is pointed at the open one.
CREATE UNIQUE INDEX runs_one_open_per_channel ON runs (channel_id) WHERE status = 'open';
CREATE INDEX runs_channel_closed ON runs (channel_id, closed_at DESC) WHERE status = 'closed';

CREATE TABLE orders (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id),
    order_text  text NOT NULL CHECK (length(btrim(order_text)) BETWEEN 1 AND 150),
    -- "I'll go": this participant offered to be the runner (and so opts in to run again).
    volunteer   boolean NOT NULL DEFAULT false,
    is_final    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    canceled_at timestamptz
);
-- One active order per user per run; editing replaces it in place.
CREATE UNIQUE INDEX orders_one_active ON orders (run_id, user_id) WHERE canceled_at IS NULL;

CREATE TABLE user_preferences (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id      uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    last_order_text text NOT NULL CHECK (length(btrim(last_order_text)) BETWEEN 1 AND 150),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, channel_id)
);

CREATE TABLE runner_stats (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id        uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- Runs served in the channel's fairness window, recomputed from run history at each close.
    runs_served_count integer NOT NULL DEFAULT 0 CHECK (runs_served_count >= 0),
    last_run_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, channel_id)
);

CREATE TABLE channel_admin_actions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    channel_id      uuid REFERENCES channels (id) ON DELETE SET NULL,
    -- Kept as Slack ids so the audit trail outlives a channel reset or a user purge.
    slack_channel_id text NOT NULL,
    admin_slack_user_id text NOT NULL,
    action_type     text NOT NULL CHECK (action_type IN ('enable', 'disable', 'update_config', 'data_reset')),
    action_details  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channel_admin_actions_channel ON channel_admin_actions (slack_channel_id, created_at DESC);

-- The job queue and outbox: every side effect is a row written in the same transaction
-- as the change that needs it.
CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'done', 'dead')),
    run_at          timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    locked_until    timestamptz,
    locked_by       text,
    -- Jobs with the same key coalesce: at most one queued at a time (e.g. refresh run message).
    dedupe_key      text,
    run_id          uuid,
    correlation_id  text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_one_queued_per_key ON jobs (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL;
CREATE INDEX jobs_running_key ON jobs (dedupe_key) WHERE status = 'running' AND dedupe_key IS NOT NULL;
CREATE INDEX jobs_run ON jobs (run_id) WHERE run_id IS NOT NULL;
