-- CoffeeBuddy's database schema as of migration 0009: every table, column, default,
-- constraint and index, in one file for a DBA to read. The tables:
--   channels               a Slack channel using CoffeeBuddy, with its settings and admins
--   users                  a Slack person, with their cached profile (name, tz, admin flag)
--   user_preferences       a person's usual order in a channel
--   runs                   a coffee run: its pickup, status, runner and Slack message ids
--   orders                 a person's order in a run (one active order per person and run)
--   runner_stats           who served how often in a channel (mirrors the run history)
--   run_ratings            the one-tap CSAT of a closed run (one per person and run)
--   jobs                   the job queue the worker claims from (Slack calls, reminders)
--   events                 the outbox of domain events the relay publishes to Kafka
--   channel_admin_actions  the admins' audit trail (never purged)
--   ops_actions            every change made through the operations API, with its caller
--   slack_budget           the shared Slack rate budget: calls granted per method in the last
--                          minute (per channel for chat.postMessage), and 429 pauses
-- Migrations also keep `schema_migrations` (which files were applied), left out here.
--
-- GENERATED: do not edit by hand. The migrations in sql/migrations/ are the source of
-- truth; after adding one, regenerate this file and commit it with the migration:
--     .venv/bin/python scripts/dump_schema.py
-- tests/integration/test_schema.py compares the catalogs of a database built from this
-- file and one built by the migrations, and fails when they differ.

CREATE TABLE public.channel_admin_actions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    channel_id uuid,
    slack_channel_id text NOT NULL,
    admin_slack_user_id text NOT NULL,
    action_type text NOT NULL,
    action_details jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    seq bigint NOT NULL,
    CONSTRAINT channel_admin_actions_action_type_check CHECK ((action_type = ANY (ARRAY['enable'::text, 'disable'::text, 'update_config'::text, 'data_reset'::text])))
);

CREATE SEQUENCE public.channel_admin_actions_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.channel_admin_actions_seq_seq OWNED BY public.channel_admin_actions.seq;

CREATE TABLE public.channels (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    slack_channel_id text NOT NULL,
    slack_team_id text DEFAULT ''::text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    reminders_enabled boolean DEFAULT true NOT NULL,
    reminder_offset_minutes integer DEFAULT 5 NOT NULL,
    last_call_enabled boolean DEFAULT false NOT NULL,
    last_call_minutes integer DEFAULT 5 NOT NULL,
    fairness_window_runs integer DEFAULT 10 NOT NULL,
    data_retention_days integer DEFAULT 90 NOT NULL,
    onboarded_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    admin_user_ids text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT channels_admin_user_ids_check CHECK ((cardinality(admin_user_ids) <= 50)),
    CONSTRAINT channels_data_retention_days_check CHECK (((data_retention_days >= 1) AND (data_retention_days <= 3650))),
    CONSTRAINT channels_fairness_window_runs_check CHECK (((fairness_window_runs >= 1) AND (fairness_window_runs <= 100))),
    CONSTRAINT channels_last_call_minutes_check CHECK (((last_call_minutes >= 1) AND (last_call_minutes <= 60))),
    CONSTRAINT channels_name_check CHECK ((length(name) <= 200)),
    CONSTRAINT channels_reminder_offset_minutes_check CHECK (((reminder_offset_minutes >= 0) AND (reminder_offset_minutes <= 120))),
    CONSTRAINT channels_slack_channel_id_check CHECK ((slack_channel_id ~ '^[CGD][A-Z0-9]{2,30}$'::text))
);

CREATE TABLE public.events (
    id bigint NOT NULL,
    event_id uuid NOT NULL,
    topic text NOT NULL,
    event_type text NOT NULL,
    run_id uuid,
    envelope jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    CONSTRAINT events_topic_check CHECK ((topic = ANY (ARRAY['coffeebuddy.run.events'::text, 'coffeebuddy.reminder.events'::text])))
);

CREATE SEQUENCE public.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.events_id_seq OWNED BY public.events.id;

CREATE TABLE public.jobs (
    id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    status text DEFAULT 'queued'::text NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer DEFAULT 8 NOT NULL,
    locked_until timestamp with time zone,
    locked_by text,
    dedupe_key text,
    run_id uuid,
    correlation_id text,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    lane text,
    CONSTRAINT jobs_max_attempts_check CHECK ((max_attempts >= 1)),
    CONSTRAINT jobs_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'running'::text, 'done'::text, 'dead'::text])))
);

CREATE SEQUENCE public.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.jobs_id_seq OWNED BY public.jobs.id;

CREATE TABLE public.ops_actions (
    id bigint NOT NULL,
    subject text NOT NULL,
    action text NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE SEQUENCE public.ops_actions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.ops_actions_id_seq OWNED BY public.ops_actions.id;

CREATE TABLE public.orders (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    run_id uuid NOT NULL,
    user_id uuid NOT NULL,
    order_text text NOT NULL,
    volunteer boolean DEFAULT false NOT NULL,
    is_final boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    canceled_at timestamp with time zone,
    CONSTRAINT orders_order_text_check CHECK (((length(btrim(order_text)) >= 1) AND (length(btrim(order_text)) <= 150)))
);

CREATE TABLE public.run_ratings (
    run_id uuid NOT NULL,
    user_id uuid NOT NULL,
    score smallint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT run_ratings_score_check CHECK (((score >= 1) AND (score <= 5)))
);

CREATE TABLE public.runner_stats (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    channel_id uuid NOT NULL,
    runs_served_count integer DEFAULT 0 NOT NULL,
    last_run_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT runner_stats_runs_served_count_check CHECK ((runs_served_count >= 0))
);

CREATE TABLE public.runs (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    channel_id uuid NOT NULL,
    initiator_user_id uuid NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    pickup_time timestamp with time zone,
    pickup_note text,
    runner_user_id uuid,
    runner_reason text,
    runner_rule text,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    closed_at timestamp with time zone,
    failure_reason text,
    first_in_channel boolean DEFAULT false NOT NULL,
    correlation_id text NOT NULL,
    message_ts text,
    summary_ts text,
    runner_dm_channel text,
    runner_dm_ts text,
    reminder_at timestamp with time zone,
    reminder_sent_at timestamp with time zone,
    reminder_ts text,
    last_call_ts text,
    cancel_reason text,
    declined_user_ids text[] DEFAULT '{}'::text[] NOT NULL,
    command_at timestamp with time zone,
    message_posted_at timestamp with time zone,
    summary_posted_at timestamp with time zone,
    runner_dm_posted_at timestamp with time zone,
    failure_category text,
    message_permalink text,
    summary_permalink text,
    CONSTRAINT closed_has_runner CHECK (((status <> 'closed'::text) OR ((runner_user_id IS NOT NULL) AND (closed_at IS NOT NULL)))),
    CONSTRAINT ended_has_time CHECK (((status = 'open'::text) OR (closed_at IS NOT NULL))),
    CONSTRAINT failed_has_category CHECK (((status <> 'failed'::text) OR (failure_category IS NOT NULL))),
    CONSTRAINT failed_has_reason CHECK (((status <> 'failed'::text) OR (failure_reason IS NOT NULL))),
    CONSTRAINT runs_cancel_reason_check CHECK ((length(cancel_reason) <= 300)),
    CONSTRAINT runs_failure_category_check CHECK ((failure_category = ANY (ARRAY['slack_error'::text, 'timeout'::text, 'internal'::text]))),
    CONSTRAINT runs_message_permalink_check CHECK ((length(message_permalink) <= 1000)),
    CONSTRAINT runs_pickup_note_check CHECK ((length(pickup_note) <= 120)),
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['open'::text, 'closed'::text, 'canceled'::text, 'failed'::text]))),
    CONSTRAINT runs_summary_permalink_check CHECK ((length(summary_permalink) <= 1000))
);

CREATE TABLE public.slack_budget (
    method text NOT NULL,
    scope text DEFAULT ''::text NOT NULL,
    granted timestamp with time zone[] DEFAULT '{}'::timestamp with time zone[] NOT NULL,
    paused_until timestamp with time zone,
    next_slot timestamp with time zone,
    next_low_slot timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT slack_budget_method_check CHECK ((length(method) <= 100)),
    CONSTRAINT slack_budget_scope_check CHECK ((length(scope) <= 100))
);

CREATE TABLE public.user_preferences (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    user_id uuid NOT NULL,
    channel_id uuid NOT NULL,
    last_order_text text NOT NULL,
    last_used_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT user_preferences_last_order_text_check CHECK (((length(btrim(last_order_text)) >= 1) AND (length(btrim(last_order_text)) <= 150)))
);

CREATE TABLE public.users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    slack_user_id text NOT NULL,
    display_name text DEFAULT ''::text NOT NULL,
    tz text,
    is_workspace_admin boolean DEFAULT false NOT NULL,
    profile_fetched_at timestamp with time zone,
    is_active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT users_display_name_check CHECK ((length(display_name) <= 200)),
    CONSTRAINT users_slack_user_id_check CHECK ((slack_user_id ~ '^[UW][A-Z0-9]{2,30}$'::text))
);

ALTER TABLE ONLY public.channel_admin_actions ALTER COLUMN seq SET DEFAULT nextval('public.channel_admin_actions_seq_seq'::regclass);

ALTER TABLE ONLY public.events ALTER COLUMN id SET DEFAULT nextval('public.events_id_seq'::regclass);

ALTER TABLE ONLY public.jobs ALTER COLUMN id SET DEFAULT nextval('public.jobs_id_seq'::regclass);

ALTER TABLE ONLY public.ops_actions ALTER COLUMN id SET DEFAULT nextval('public.ops_actions_id_seq'::regclass);

ALTER TABLE ONLY public.channel_admin_actions
    ADD CONSTRAINT channel_admin_actions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.channels
    ADD CONSTRAINT channels_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.channels
    ADD CONSTRAINT channels_slack_channel_id_key UNIQUE (slack_channel_id);

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id);

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ops_actions
    ADD CONSTRAINT ops_actions_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.run_ratings
    ADD CONSTRAINT run_ratings_pkey PRIMARY KEY (run_id, user_id);

ALTER TABLE ONLY public.runner_stats
    ADD CONSTRAINT runner_stats_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.runner_stats
    ADD CONSTRAINT runner_stats_user_id_channel_id_key UNIQUE (user_id, channel_id);

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.slack_budget
    ADD CONSTRAINT slack_budget_pkey PRIMARY KEY (method, scope);

ALTER TABLE ONLY public.user_preferences
    ADD CONSTRAINT user_preferences_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.user_preferences
    ADD CONSTRAINT user_preferences_user_id_channel_id_key UNIQUE (user_id, channel_id);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.users
    ADD CONSTRAINT users_slack_user_id_key UNIQUE (slack_user_id);

CREATE INDEX channel_admin_actions_channel ON public.channel_admin_actions USING btree (slack_channel_id, created_at DESC);

CREATE INDEX events_sent_at ON public.events USING btree (sent_at) WHERE (sent_at IS NOT NULL);

CREATE INDEX events_unsent ON public.events USING btree (id) WHERE (sent_at IS NULL);

CREATE INDEX jobs_due ON public.jobs USING btree (run_at, id) WHERE (status = 'queued'::text);

CREATE INDEX jobs_inbox_running ON public.jobs USING btree (run_id) WHERE ((kind = 'apply_action'::text) AND (status = 'running'::text));

CREATE INDEX jobs_inbox_unfinished ON public.jobs USING btree (run_id, id) WHERE ((kind = 'apply_action'::text) AND (status = ANY (ARRAY['queued'::text, 'running'::text])));

CREATE INDEX jobs_leased ON public.jobs USING btree (locked_until) WHERE (status = 'running'::text);

CREATE UNIQUE INDEX jobs_one_queued_per_key ON public.jobs USING btree (dedupe_key) WHERE ((status = 'queued'::text) AND (dedupe_key IS NOT NULL));

CREATE INDEX jobs_run ON public.jobs USING btree (run_id) WHERE (run_id IS NOT NULL);

CREATE INDEX jobs_running_key ON public.jobs USING btree (dedupe_key) WHERE ((status = 'running'::text) AND (dedupe_key IS NOT NULL));

CREATE INDEX jobs_unfinished_kind ON public.jobs USING btree (kind, created_at) WHERE (status = ANY (ARRAY['queued'::text, 'running'::text]));

CREATE INDEX ops_actions_created ON public.ops_actions USING btree (created_at DESC);

CREATE UNIQUE INDEX orders_one_active ON public.orders USING btree (run_id, user_id) WHERE (canceled_at IS NULL);

CREATE INDEX run_ratings_user ON public.run_ratings USING btree (user_id);

CREATE INDEX runs_channel_closed ON public.runs USING btree (channel_id, closed_at DESC) WHERE (status = 'closed'::text);

CREATE UNIQUE INDEX runs_one_open_per_channel ON public.runs USING btree (channel_id) WHERE (status = 'open'::text);

CREATE INDEX runs_started ON public.runs USING btree (channel_id, started_at);

CREATE INDEX runs_started_all ON public.runs USING btree (started_at);

CREATE INDEX user_preferences_last_used ON public.user_preferences USING btree (last_used_at);

ALTER TABLE ONLY public.channel_admin_actions
    ADD CONSTRAINT channel_admin_actions_channel_id_fkey FOREIGN KEY (channel_id) REFERENCES public.channels(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);

ALTER TABLE ONLY public.run_ratings
    ADD CONSTRAINT run_ratings_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.run_ratings
    ADD CONSTRAINT run_ratings_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.runner_stats
    ADD CONSTRAINT runner_stats_channel_id_fkey FOREIGN KEY (channel_id) REFERENCES public.channels(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.runner_stats
    ADD CONSTRAINT runner_stats_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_channel_id_fkey FOREIGN KEY (channel_id) REFERENCES public.channels(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_initiator_user_id_fkey FOREIGN KEY (initiator_user_id) REFERENCES public.users(id);

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_runner_user_id_fkey FOREIGN KEY (runner_user_id) REFERENCES public.users(id);

ALTER TABLE ONLY public.user_preferences
    ADD CONSTRAINT user_preferences_channel_id_fkey FOREIGN KEY (channel_id) REFERENCES public.channels(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.user_preferences
    ADD CONSTRAINT user_preferences_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE;
