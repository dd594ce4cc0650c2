-- Reminders: when they are due, and what was sent.

-- name: set_reminder_at
UPDATE runs SET reminder_at = %(reminder_at)s WHERE id = %(run_id)s;

-- name: schedule_job_at
-- One queued job per key: scheduling again moves it instead of adding another.
WITH up AS (
    INSERT INTO jobs (kind, payload, run_at, dedupe_key, run_id, correlation_id)
    VALUES (%(kind)s, %(payload)s, greatest(%(run_at)s, now()), %(dedupe_key)s, %(run_id)s,
            %(correlation_id)s)
    ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL DO UPDATE
       SET run_at = EXCLUDED.run_at, payload = EXCLUDED.payload, updated_at = now()
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM up;

-- name: unschedule_job
DELETE FROM jobs WHERE dedupe_key = %(dedupe_key)s AND status = 'queued';

-- name: mark_reminder_sent
UPDATE runs SET reminder_sent_at = now(), reminder_ts = %(ts)s
 WHERE id = %(run_id)s AND reminder_ts IS NULL
RETURNING reminder_sent_at, reminder_at;

-- name: mark_last_call_sent
UPDATE runs SET last_call_ts = %(ts)s WHERE id = %(run_id)s AND last_call_ts IS NULL;

-- name: pending_close_jobs
-- The summary and "you're the runner" DM of a run, while they are still to be sent.
SELECT count(*)::int AS n FROM jobs
 WHERE run_id = %(run_id)s AND kind IN ('post_summary', 'dm_runner')
   AND status IN ('queued', 'running');

-- name: reminder_due_recorded
SELECT 1 AS found FROM events
 WHERE run_id = %(run_id)s AND event_type = 'reminder_due'
   AND envelope -> 'data' ->> 'due_at' = %(due_at)s
 LIMIT 1;
