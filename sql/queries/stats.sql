-- `/coffee stats`: the fairness table. Read-only; the same history the close reads
-- (`runner_history`, `previous_runner` in runs.sql), so the table agrees with the rule.

-- name: stats_read_only
-- First statement of the stats transaction: one snapshot for every query, and a write
-- here would be a bug the database refuses.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: stats_channel
SELECT id, enabled, fairness_window_runs, admin_user_ids
  FROM channels
 WHERE slack_channel_id = %(slack_channel_id)s;

-- name: stats_history
-- How many closed runs the channel has, and who ran the latest one.
SELECT count(*)::int AS closed_runs,
       (SELECT u.slack_user_id FROM runs r JOIN users u ON u.id = r.runner_user_id
         WHERE r.channel_id = %(channel_id)s AND r.status = 'closed'
         ORDER BY r.closed_at DESC, r.id DESC
         LIMIT 1) AS previous_runner
  FROM runs
 WHERE channel_id = %(channel_id)s AND status = 'closed';

-- name: stats_window
-- Everyone who served or ordered in the channel's last `window` closed runs: runs served
-- and runs joined among those, and when each last served at all (outside the window too,
-- as the fairness rule counts it).
WITH recent AS (
    SELECT id, runner_user_id FROM runs
     WHERE channel_id = %(channel_id)s AND status = 'closed'
     ORDER BY closed_at DESC, id DESC
     LIMIT %(window)s
),
joined AS (
    SELECT o.user_id, count(DISTINCT o.run_id)::int AS runs_joined
      FROM orders o JOIN recent ON recent.id = o.run_id
     WHERE o.canceled_at IS NULL
     GROUP BY o.user_id
),
served AS (
    SELECT runner_user_id AS user_id, count(*)::int AS runs_in_window
      FROM recent
     GROUP BY runner_user_id
),
people AS (
    SELECT user_id FROM joined
    UNION
    SELECT user_id FROM served
)
SELECT u.slack_user_id, u.display_name,
       COALESCE(served.runs_in_window, 0) AS runs_in_window,
       COALESCE(joined.runs_joined, 0) AS runs_joined,
       (SELECT max(r.closed_at) FROM runs r
         WHERE r.channel_id = %(channel_id)s AND r.status = 'closed'
           AND r.runner_user_id = u.id) AS last_run_at
  FROM people
  JOIN users u ON u.id = people.user_id
  LEFT JOIN served ON served.user_id = people.user_id
  LEFT JOIN joined ON joined.user_id = people.user_id
 ORDER BY u.slack_user_id;
