-- Runs, orders, preferences and runner history.

-- name: upsert_channel
INSERT INTO channels (slack_channel_id, slack_team_id, name)
VALUES (%(slack_channel_id)s, %(team_id)s, %(name)s)
ON CONFLICT (slack_channel_id) DO UPDATE
   SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE channels.name END,
       -- The first workspace seen keeps the channel; a request from another is refused.
       slack_team_id = CASE WHEN channels.slack_team_id = '' THEN EXCLUDED.slack_team_id
                            ELSE channels.slack_team_id END,
       updated_at = CASE WHEN EXCLUDED.name <> '' AND EXCLUDED.name <> channels.name THEN now()
                         ELSE channels.updated_at END
RETURNING *;

-- name: get_channel_by_slack_id
SELECT * FROM channels WHERE slack_channel_id = %(slack_channel_id)s;

-- name: upsert_user
INSERT INTO users (slack_user_id, display_name)
VALUES (%(slack_user_id)s, %(display_name)s)
ON CONFLICT (slack_user_id) DO UPDATE
   SET display_name = CASE WHEN EXCLUDED.display_name <> '' THEN EXCLUDED.display_name
                           ELSE users.display_name END,
       is_active = true,
       updated_at = CASE WHEN EXCLUDED.display_name <> '' AND EXCLUDED.display_name <> users.display_name
                         THEN now() ELSE users.updated_at END
RETURNING *;

-- name: get_user_by_slack_id
SELECT * FROM users WHERE slack_user_id = %(slack_user_id)s;

-- name: save_user_profile
INSERT INTO users (slack_user_id, display_name, tz, is_workspace_admin, profile_fetched_at)
VALUES (%(slack_user_id)s, %(display_name)s, %(tz)s, %(is_workspace_admin)s, now())
ON CONFLICT (slack_user_id) DO UPDATE
   SET display_name = EXCLUDED.display_name,
       tz = EXCLUDED.tz,
       is_workspace_admin = EXCLUDED.is_workspace_admin,
       profile_fetched_at = now(),
       updated_at = now()
RETURNING *;

-- name: refresh_user_profile
-- The worker's warmed profile: only for someone still on record.
UPDATE users
   SET display_name = %(display_name)s, tz = %(tz)s,
       is_workspace_admin = %(is_workspace_admin)s, profile_fetched_at = now(), updated_at = now()
 WHERE slack_user_id = %(slack_user_id)s
RETURNING id;

-- name: get_open_run_for_channel
SELECT r.*, u.slack_user_id AS initiator_slack_id
  FROM runs r JOIN users u ON u.id = r.initiator_user_id
 WHERE r.channel_id = %(channel_id)s AND r.status = 'open';

-- name: insert_run
-- ON CONFLICT on the one-open-run index: a racing second /coffee gets no row back.
INSERT INTO runs (channel_id, initiator_user_id, pickup_time, pickup_note, correlation_id,
                  first_in_channel, command_at)
VALUES (%(channel_id)s, %(initiator_user_id)s, %(pickup_time)s, %(pickup_note)s,
        %(correlation_id)s, %(first_in_channel)s, %(command_at)s)
ON CONFLICT (channel_id) WHERE status = 'open' DO NOTHING
RETURNING *;

-- name: mark_channel_onboarded
UPDATE channels SET onboarded_at = now() WHERE id = %(channel_id)s AND onboarded_at IS NULL;

-- name: lock_run
-- Every change to a run or its orders locks the run row first, so a close can never
-- interleave with an order: whichever commits first wins and the other sees its result.
SELECT r.*, c.slack_channel_id, c.slack_team_id, c.fairness_window_runs,
       c.enabled AS channel_enabled,
       c.reminders_enabled, c.reminder_offset_minutes, c.last_call_enabled, c.last_call_minutes,
       u.slack_user_id AS initiator_slack_id
  FROM runs r
  JOIN channels c ON c.id = r.channel_id
  JOIN users u ON u.id = r.initiator_user_id
 WHERE r.id = %(run_id)s
   FOR UPDATE OF r;

-- name: share_run
-- lock_run for order writes: a FOR SHARE lock lets one run's orders go in side by side (the
-- partial unique index on orders keeps one active order per person) while a close or
-- cancel, which takes FOR UPDATE, still waits for them and they for it.
SELECT r.*, c.slack_channel_id, c.slack_team_id, c.fairness_window_runs,
       c.enabled AS channel_enabled,
       c.reminders_enabled, c.reminder_offset_minutes, c.last_call_enabled, c.last_call_minutes,
       u.slack_user_id AS initiator_slack_id
  FROM runs r
  JOIN channels c ON c.id = r.channel_id
  JOIN users u ON u.id = r.initiator_user_id
 WHERE r.id = %(run_id)s
   FOR SHARE OF r;

-- name: get_run_view
SELECT r.id, r.status, r.pickup_time, r.pickup_note, r.started_at, r.closed_at,
       r.reminder_at, r.reminder_ts, r.last_call_ts,
       r.runner_reason, r.failure_reason, r.cancel_reason, r.first_in_channel, r.message_ts,
       r.summary_ts,
       r.runner_dm_channel, r.runner_dm_ts, r.correlation_id,
       r.message_permalink, r.summary_permalink, c.reminders_enabled,
       r.runner_user_id, r.declined_user_ids, r.reminder_sent_at,
       c.enabled AS channel_enabled, c.fairness_window_runs, c.reminder_offset_minutes,
       c.last_call_enabled, c.last_call_minutes,
       (SELECT count(*) FROM run_ratings rr WHERE rr.run_id = r.id)::int AS rating_count,
       (SELECT avg(rr.score) FROM run_ratings rr WHERE rr.run_id = r.id)::float
           AS rating_average,
       c.slack_channel_id, c.slack_team_id, c.id AS channel_id,
       c.admin_user_ids AS channel_admin_ids,
       iu.slack_user_id AS initiator_slack_id,
       ru.slack_user_id AS runner_slack_id
  FROM runs r
  JOIN channels c ON c.id = r.channel_id
  JOIN users iu ON iu.id = r.initiator_user_id
  LEFT JOIN users ru ON ru.id = r.runner_user_id
 WHERE r.id = %(run_id)s;

-- name: active_orders
SELECT o.id, o.order_text, o.volunteer, o.created_at, u.slack_user_id, u.id AS user_id,
       u.display_name
  FROM orders o JOIN users u ON u.id = o.user_id
 WHERE o.run_id = %(run_id)s AND o.canceled_at IS NULL
 ORDER BY o.created_at, o.id;

-- name: get_active_order
SELECT o.* FROM orders o
 WHERE o.run_id = %(run_id)s AND o.user_id = %(user_id)s AND o.canceled_at IS NULL;

-- name: upsert_order
-- Editing replaces the active order in place; xmax = 0 tells a fresh insert from an update.
-- The same order again changes nothing and returns no row (no refresh, event or answer).
-- created_at is the statement's clock, not the transaction's: the worker applies a run's
-- inboxed orders in one transaction, and lists keep them in arrival order.
INSERT INTO orders (run_id, user_id, order_text, volunteer, created_at)
VALUES (%(run_id)s, %(user_id)s, %(order_text)s, %(volunteer)s, clock_timestamp())
ON CONFLICT (run_id, user_id) WHERE canceled_at IS NULL DO UPDATE
   SET order_text = EXCLUDED.order_text,
       volunteer = EXCLUDED.volunteer,
       updated_at = now()
 WHERE (orders.order_text, orders.volunteer)
       IS DISTINCT FROM (EXCLUDED.order_text, EXCLUDED.volunteer)
RETURNING id, (xmax = 0) AS inserted;

-- name: cancel_order
UPDATE orders SET canceled_at = now(), updated_at = now()
 WHERE run_id = %(run_id)s AND user_id = %(user_id)s AND canceled_at IS NULL
RETURNING id;

-- name: finalize_orders
UPDATE orders SET is_final = true, updated_at = now()
 WHERE run_id = %(run_id)s AND canceled_at IS NULL;

-- name: get_preference
SELECT p.* FROM user_preferences p
 WHERE p.user_id = %(user_id)s AND p.channel_id = %(channel_id)s;

-- name: save_preference
INSERT INTO user_preferences (user_id, channel_id, last_order_text)
VALUES (%(user_id)s, %(channel_id)s, %(order_text)s)
ON CONFLICT (user_id, channel_id) DO UPDATE
   SET last_order_text = EXCLUDED.last_order_text, last_used_at = now(), updated_at = now();

-- name: touch_preference
UPDATE user_preferences SET last_used_at = now()
 WHERE user_id = %(user_id)s AND channel_id = %(channel_id)s;

-- name: runner_history
-- Runs served by each participant among the channel's last `window` closed runs, and
-- when each last served at all (outside the window too).
WITH recent AS (
    SELECT runner_user_id FROM runs
     WHERE channel_id = %(channel_id)s AND status = 'closed' AND id <> %(run_id)s
     ORDER BY closed_at DESC, id DESC
     LIMIT %(window)s
)
SELECT u.id AS user_id, u.slack_user_id,
       (SELECT count(*) FROM recent WHERE recent.runner_user_id = u.id)::int AS runs_in_window,
       (SELECT max(r.closed_at) FROM runs r
         WHERE r.channel_id = %(channel_id)s AND r.status = 'closed'
           AND r.runner_user_id = u.id) AS last_run_at
  FROM users u
 WHERE u.id = ANY(%(user_ids)s);

-- name: previous_runner
SELECT u.slack_user_id, u.display_name FROM runs r JOIN users u ON u.id = r.runner_user_id
 WHERE r.channel_id = %(channel_id)s AND r.status = 'closed' AND r.id <> %(run_id)s
 ORDER BY r.closed_at DESC, r.id DESC
 LIMIT 1;

-- name: close_run
UPDATE runs
   SET status = 'closed', closed_at = now(), runner_user_id = %(runner_user_id)s,
       runner_reason = %(runner_reason)s, runner_rule = %(runner_rule)s
 WHERE id = %(run_id)s AND status = 'open'
RETURNING closed_at, started_at;

-- name: end_run
-- Cancel or fail an open run; a closed run can still fail if its summary never posts.
UPDATE runs
   SET status = %(status)s, closed_at = COALESCE(closed_at, now()),
       failure_reason = %(failure_reason)s, failure_category = %(failure_category)s,
       cancel_reason = %(cancel_reason)s
 WHERE id = %(run_id)s AND status = ANY(%(from_statuses)s)
RETURNING id, started_at, closed_at;

-- name: upsert_runner_stats
INSERT INTO runner_stats (user_id, channel_id, runs_served_count, last_run_at)
VALUES (%(user_id)s, %(channel_id)s, %(runs_served_count)s, %(last_run_at)s)
ON CONFLICT (user_id, channel_id) DO UPDATE
   SET runs_served_count = EXCLUDED.runs_served_count,
       last_run_at = EXCLUDED.last_run_at,
       updated_at = now();

-- name: set_run_message_ts
-- Also when the run message became visible: the end of the bot's start step.
UPDATE runs SET message_ts = %(ts)s, message_posted_at = now()
 WHERE id = %(run_id)s AND message_ts IS NULL
RETURNING command_at, message_posted_at;

-- name: set_permalinks
-- Either link may be NULL in a call: a link already stored is kept.
UPDATE runs SET message_permalink = COALESCE(%(message)s, message_permalink),
                summary_permalink = COALESCE(%(summary)s, summary_permalink)
 WHERE id = %(run_id)s;

-- name: set_summary_ts
-- The summary half of the bot's close step; both halves done completes the run's timing.
UPDATE runs SET summary_ts = %(ts)s, summary_posted_at = now()
 WHERE id = %(run_id)s AND summary_ts IS NULL
RETURNING command_at, message_posted_at, closed_at, summary_posted_at, runner_dm_posted_at,
          true AS first;

-- name: set_runner_dm
-- A runner swap DMs the new runner too; the close step's timing keeps the first DM (`first`
-- says whether this was it: now() is the same all through the transaction).
UPDATE runs SET runner_dm_channel = %(dm_channel)s, runner_dm_ts = %(ts)s,
       runner_dm_posted_at = COALESCE(runner_dm_posted_at, now())
 WHERE id = %(run_id)s AND runner_dm_ts IS NULL
RETURNING command_at, message_posted_at, closed_at, summary_posted_at, runner_dm_posted_at,
          runner_dm_posted_at = now() AS first;

-- name: update_run_details
UPDATE runs SET pickup_time = %(pickup_time)s, pickup_note = %(pickup_note)s
 WHERE id = %(run_id)s AND status = 'open';

-- name: count_active_orders
SELECT count(*)::int AS n FROM orders WHERE run_id = %(run_id)s AND canceled_at IS NULL;

-- name: user_names
-- Plain names for messages that must not notify the people they name.
SELECT slack_user_id, display_name FROM users WHERE slack_user_id = ANY(%(slack_user_ids)s);
