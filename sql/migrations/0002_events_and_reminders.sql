-- The event outbox for Kafka, and what reminders need to be sent exactly once.

CREATE TABLE events (
    -- Per-run order on Kafka is id order: every change to a run locks its row first, so a
    -- later change of the same run always gets a larger id and commits after.
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    topic       text NOT NULL CHECK (topic IN ('coffeebuddy.run.events', 'coffeebuddy.reminder.events')),
    event_type  text NOT NULL,
    run_id      uuid,
    -- The whole JSON envelope as published; never order text or message bodies.
    envelope    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX events_unsent ON events (id) WHERE sent_at IS NULL;
CREATE INDEX events_sent_at ON events (sent_at) WHERE sent_at IS NOT NULL;

ALTER TABLE runs
    ADD COLUMN reminder_at      timestamptz,
    ADD COLUMN reminder_sent_at timestamptz,
    ADD COLUMN reminder_ts      text,
    ADD COLUMN last_call_ts     text;
