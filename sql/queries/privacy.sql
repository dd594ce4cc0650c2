-- Privacy: a user's "forget me", and the daily retention purge. The purge takes its clock
-- as %(now)s (the job passes the database's now(); tests pass a clock of their own), and
-- never touches the audit trail (channel_admin_actions) or channel settings.

-- name: db_now
SELECT now() AS now;

-- name: forget_user_events
-- Outbox events that name the person anywhere in their data (as initiator, runner, user).
DELETE FROM events
 WHERE jsonb_path_exists(envelope->'data', '$.** ? (@ == $user)',
                         jsonb_build_object('user', %(slack_user_id)s::text));

-- name: purge_expired_events
-- Outbox events of the runs this purge deleted (%(run_ids)s) and events past their
-- channel's retention: the same rules as the rows they describe.
DELETE FROM events e
 WHERE e.run_id = ANY(%(run_ids)s::uuid[])
    OR EXISTS (
        SELECT 1 FROM channels c
         WHERE c.slack_channel_id = e.envelope->>'channel_id'
           AND e.created_at < %(now)s::timestamptz - make_interval(days => c.data_retention_days));

-- name: forget_user_preferences
-- Every stored usual of one Slack user, in every channel. Nothing else of theirs changes.
DELETE FROM user_preferences p
 USING users u
 WHERE u.id = p.user_id AND u.slack_user_id = %(slack_user_id)s
RETURNING p.channel_id;

-- name: purge_expired_runs
-- Finished runs (closed, canceled, failed: never open ones) that ended before their
-- channel's retention, with their orders (ON DELETE CASCADE, counted from the snapshot)
-- and their jobs still waiting. A run another transaction holds is left for the next day.
WITH expired AS (
    SELECT r.id, r.channel_id
      FROM runs r
      JOIN channels c ON c.id = r.channel_id
     WHERE r.status <> 'open'
       AND coalesce(r.closed_at, r.started_at)
           < %(now)s::timestamptz - make_interval(days => c.data_retention_days)
       FOR UPDATE OF r SKIP LOCKED
), dropped_jobs AS (
    DELETE FROM jobs WHERE run_id IN (SELECT id FROM expired) AND status = 'queued'
    RETURNING 1
), order_count AS (
    SELECT count(*)::int AS n FROM orders WHERE run_id IN (SELECT id FROM expired)
), dropped_runs AS (
    DELETE FROM runs WHERE id IN (SELECT id FROM expired) RETURNING id, channel_id
)
SELECT (SELECT count(*) FROM dropped_runs)::int AS runs,
       coalesce((SELECT array_agg(id) FROM dropped_runs), '{}') AS run_ids,
       (SELECT n FROM order_count) AS orders,
       (SELECT count(*) FROM dropped_jobs)::int AS jobs,
       coalesce((SELECT array_agg(DISTINCT channel_id) FROM dropped_runs), '{}') AS channel_ids;

-- name: purge_expired_preferences
-- Usuals not used (nor saved) within their channel's retention.
DELETE FROM user_preferences p
 USING channels c
 WHERE c.id = p.channel_id
   AND p.last_used_at < %(now)s::timestamptz - make_interval(days => c.data_retention_days);

-- name: recompute_runner_stats
-- Runner stats mirror the run history the fairness rule reads (see `runner_history`), so
-- they are recomputed from the runs that remain, for every row in a channel that lost runs
-- (%(channel_ids)s) and every row whose last run is past retention: the last closed run
-- each served, and how many of the channel's last `fairness_window_runs` closed runs they
-- served. A row whose person no longer served any remaining closed run is deleted.
WITH affected AS (
    SELECT s.id, s.user_id, s.channel_id, c.fairness_window_runs
      FROM runner_stats s
      JOIN channels c ON c.id = s.channel_id
     WHERE s.channel_id = ANY(%(channel_ids)s::uuid[])
        OR s.last_run_at < %(now)s::timestamptz - make_interval(days => c.data_retention_days)
       FOR UPDATE OF s
), fresh AS (
    SELECT a.id,
           (SELECT max(r.closed_at) FROM runs r
             WHERE r.channel_id = a.channel_id AND r.status = 'closed'
               AND r.runner_user_id = a.user_id) AS last_run_at,
           (SELECT count(*) FROM (
                SELECT r.runner_user_id FROM runs r
                 WHERE r.channel_id = a.channel_id AND r.status = 'closed'
                 ORDER BY r.closed_at DESC, r.id DESC
                 LIMIT a.fairness_window_runs) w
             WHERE w.runner_user_id = a.user_id)::int AS in_window
      FROM affected a
), dropped AS (
    DELETE FROM runner_stats s USING fresh f
     WHERE s.id = f.id AND f.last_run_at IS NULL
    RETURNING 1
), updated AS (
    UPDATE runner_stats s
       SET runs_served_count = f.in_window, last_run_at = f.last_run_at, updated_at = now()
      FROM fresh f
     WHERE s.id = f.id AND f.last_run_at IS NOT NULL
       AND (s.runs_served_count, s.last_run_at) IS DISTINCT FROM (f.in_window, f.last_run_at)
    RETURNING 1
)
SELECT (SELECT count(*) FROM dropped)::int AS deleted,
       (SELECT count(*) FROM updated)::int AS updated;

-- name: purge_traceless_users
-- People CoffeeBuddy holds nothing else about: no run started or served, no order, no
-- usual, no runner stats. Someone touched within the last day (a profile cached for a
-- command in progress) stays, and so does a row another transaction holds (an upsert in a
-- command right now). The audit trail names admins by Slack id, so it is unaffected.
WITH traceless AS (
    SELECT u.id FROM users u
     WHERE greatest(u.created_at, u.updated_at, coalesce(u.profile_fetched_at, u.updated_at))
           < %(now)s::timestamptz - interval '1 day'
       AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.initiator_user_id = u.id)
       AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.runner_user_id = u.id)
       AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)
       AND NOT EXISTS (SELECT 1 FROM user_preferences p WHERE p.user_id = u.id)
       AND NOT EXISTS (SELECT 1 FROM runner_stats s WHERE s.user_id = u.id)
       FOR UPDATE OF u SKIP LOCKED
)
DELETE FROM users WHERE id IN (SELECT id FROM traceless);
