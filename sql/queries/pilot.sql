-- The pilot's success metrics, from run history. A NULL channel_id means every channel
-- (the worker's gauges); `since`/`until` come from the caller's clock so the windows can
-- be tested.

-- name: pilot_runs
-- Runs started in the period by status and failure category, and the bot's own time for
-- runs that went all the way: command -> run message visible, plus close -> the later of
-- summary and runner DM.
WITH period AS (
    SELECT status, failure_category,
           CASE WHEN status = 'closed' AND command_at IS NOT NULL
                     AND message_posted_at IS NOT NULL AND summary_posted_at IS NOT NULL
                     AND runner_dm_posted_at IS NOT NULL
                THEN extract(epoch FROM message_posted_at - command_at)
                   + extract(epoch FROM greatest(summary_posted_at, runner_dm_posted_at)
                                        - closed_at)
           END AS bot_seconds
      FROM runs
     WHERE (%(channel_id)s::uuid IS NULL OR channel_id = %(channel_id)s::uuid)
       AND started_at >= %(since)s AND started_at < %(until)s
)
SELECT count(*)::int AS started,
       count(*) FILTER (WHERE status = 'closed')::int AS closed,
       count(*) FILTER (WHERE status = 'canceled')::int AS canceled,
       count(*) FILTER (WHERE status = 'failed')::int AS failed,
       count(*) FILTER (WHERE failure_category = 'slack_error')::int AS failed_slack,
       count(*) FILTER (WHERE failure_category = 'timeout')::int AS failed_timeout,
       count(*) FILTER (WHERE failure_category = 'internal')::int AS failed_internal,
       count(bot_seconds)::int AS measured,
       count(*) FILTER (WHERE bot_seconds < %(target_seconds)s)::int AS within_target,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY bot_seconds))::float AS median_seconds
  FROM period;

-- name: pilot_csat
-- Ratings of runs started in the period.
SELECT count(*)::int AS ratings, avg(rr.score)::float AS average
  FROM run_ratings rr
  JOIN runs r ON r.id = rr.run_id
 WHERE (%(channel_id)s::uuid IS NULL OR r.channel_id = %(channel_id)s::uuid)
   AND r.started_at >= %(since)s AND r.started_at < %(until)s;

-- name: pilot_fairness
-- Per channel (all of them, or one): closed runs in the period, people who ordered in
-- them, and the person who served the most (ties: the earliest Slack id, so the figure is
-- stable) with how many of those runs they volunteered for.
WITH closed AS (
    SELECT r.id, r.channel_id, r.runner_user_id, r.runner_rule
      FROM runs r
     WHERE (%(channel_id)s::uuid IS NULL OR r.channel_id = %(channel_id)s::uuid)
       AND r.status = 'closed' AND r.closed_at >= %(since)s AND r.closed_at < %(until)s
),
per_runner AS (
    SELECT c.channel_id, u.slack_user_id, count(*)::int AS runs,
           count(*) FILTER (WHERE c.runner_rule = 'volunteer')::int AS volunteered,
           row_number() OVER (PARTITION BY c.channel_id
                              ORDER BY count(*) DESC, u.slack_user_id) AS place
      FROM closed c JOIN users u ON u.id = c.runner_user_id
     GROUP BY c.channel_id, u.slack_user_id
),
participation AS (
    SELECT c.channel_id, count(DISTINCT o.user_id)::int AS eligible, count(*)::int AS orders
      FROM closed c JOIN orders o ON o.run_id = c.id AND o.canceled_at IS NULL
     GROUP BY c.channel_id
)
SELECT ch.slack_channel_id,
       (SELECT count(*)::int FROM closed c WHERE c.channel_id = ch.id) AS runs,
       COALESCE(p.eligible, 0) AS eligible,
       COALESCE(p.orders, 0) AS orders,
       top.slack_user_id AS top_runner,
       COALESCE(top.runs, 0) AS top_runs,
       COALESCE(top.volunteered, 0) AS top_volunteered
  FROM channels ch
  LEFT JOIN participation p ON p.channel_id = ch.id
  LEFT JOIN per_runner top ON top.channel_id = ch.id AND top.place = 1
 WHERE (%(channel_id)s::uuid IS NULL AND ch.id IN (SELECT channel_id FROM closed))
    OR ch.id = %(channel_id)s::uuid
 ORDER BY ch.slack_channel_id;
