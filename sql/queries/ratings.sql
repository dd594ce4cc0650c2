-- CSAT: one rating (1-5) per participant per run, changeable.

-- name: rating_run
-- The run being rated, and whether `slack_user_id` took part: started it, served it, or
-- has an order in it.
SELECT r.id, r.status, r.correlation_id, r.summary_ts, c.slack_channel_id, c.slack_team_id,
       u.id AS user_id,
       (u.id IS NOT NULL AND (
            r.initiator_user_id = u.id OR r.runner_user_id = u.id
            OR EXISTS (SELECT 1 FROM orders o
                        WHERE o.run_id = r.id AND o.user_id = u.id AND o.canceled_at IS NULL)
       )) AS took_part
  FROM runs r
  JOIN channels c ON c.id = r.channel_id
  LEFT JOIN users u ON u.slack_user_id = %(slack_user_id)s
 WHERE r.id = %(run_id)s
   FOR SHARE OF r;

-- name: upsert_rating
-- Returns the previous score (NULL for a first rating) so the caller knows what changed.
WITH previous AS (
    SELECT score FROM run_ratings WHERE run_id = %(run_id)s AND user_id = %(user_id)s
)
INSERT INTO run_ratings (run_id, user_id, score)
VALUES (%(run_id)s, %(user_id)s, %(score)s)
ON CONFLICT (run_id, user_id) DO UPDATE
   SET score = EXCLUDED.score, updated_at = now()
RETURNING (SELECT score FROM previous) AS previous_score;
