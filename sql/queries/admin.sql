-- Channel administration and its audit trail.

-- name: lock_channel
SELECT * FROM channels WHERE slack_channel_id = %(slack_channel_id)s FOR UPDATE;

-- name: update_channel_settings
UPDATE channels
   SET enabled = %(enabled)s, reminders_enabled = %(reminders_enabled)s,
       reminder_offset_minutes = %(reminder_offset_minutes)s,
       last_call_enabled = %(last_call_enabled)s, last_call_minutes = %(last_call_minutes)s,
       fairness_window_runs = %(fairness_window_runs)s,
       data_retention_days = %(data_retention_days)s, admin_user_ids = %(admin_user_ids)s,
       updated_at = now()
 WHERE id = %(id)s;

-- name: insert_audit
INSERT INTO channel_admin_actions (channel_id, slack_channel_id, admin_slack_user_id,
                                   action_type, action_details)
VALUES (%(channel_id)s, %(slack_channel_id)s, %(admin)s, %(action_type)s, %(details)s);

-- name: recent_audit
SELECT admin_slack_user_id, action_type, action_details, created_at
  FROM channel_admin_actions
 WHERE slack_channel_id = %(slack_channel_id)s
 ORDER BY created_at DESC, seq DESC
 LIMIT %(limit)s;

-- name: open_run_message
SELECT id, message_ts FROM runs WHERE channel_id = %(channel_id)s AND status = 'open';

-- name: reset_channel
-- Everything the channel stored except its settings and the audit trail, in one statement
-- so the counts describe exactly what went.
WITH channel_runs AS (
    SELECT id FROM runs WHERE channel_id = %(channel_id)s
), dropped_jobs AS (
    DELETE FROM jobs WHERE run_id IN (SELECT id FROM channel_runs) AND status = 'queued'
    RETURNING 1
), order_count AS (
    -- Orders go with their runs (ON DELETE CASCADE); counted from the snapshot.
    SELECT count(*)::int AS n FROM orders WHERE run_id IN (SELECT id FROM channel_runs)
), dropped_runs AS (
    DELETE FROM runs WHERE id IN (SELECT id FROM channel_runs) RETURNING 1
), dropped_prefs AS (
    DELETE FROM user_preferences WHERE channel_id = %(channel_id)s RETURNING 1
), dropped_stats AS (
    DELETE FROM runner_stats WHERE channel_id = %(channel_id)s RETURNING 1
), dropped_events AS (
    -- The outbox holds user and channel ids too.
    DELETE FROM events
     WHERE run_id IN (SELECT id FROM channel_runs)
        OR envelope->>'channel_id' = (SELECT slack_channel_id FROM channels
                                        WHERE id = %(channel_id)s)
    RETURNING 1
)
SELECT (SELECT count(*) FROM dropped_runs)::int AS runs,
       (SELECT n FROM order_count) AS orders,
       (SELECT count(*) FROM dropped_prefs)::int AS preferences,
       (SELECT count(*) FROM dropped_stats)::int AS runner_stats,
       (SELECT count(*) FROM dropped_jobs)::int AS jobs,
       (SELECT count(*) FROM dropped_events)::int AS events;
