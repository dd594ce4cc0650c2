-- The App Home tab: what CoffeeBuddy knows about one person, per channel.

-- name: home_channels
-- Per enabled channel where the person has a usual, served or ordered: their usual, the
-- runs they served and joined (within retention: that is all the history there is), and
-- when they last served.
WITH me AS (SELECT id FROM users WHERE slack_user_id = %(slack_user_id)s),
served AS (
    SELECT r.channel_id, count(*)::int AS served, max(r.closed_at) AS last_served_at
      FROM runs r JOIN me ON r.runner_user_id = me.id
     WHERE r.status = 'closed'
     GROUP BY r.channel_id
),
joined AS (
    SELECT r.channel_id, count(DISTINCT r.id)::int AS joined
      FROM orders o JOIN me ON o.user_id = me.id
      JOIN runs r ON r.id = o.run_id
     WHERE o.canceled_at IS NULL AND r.status = 'closed'
     GROUP BY r.channel_id
),
usual AS (
    SELECT p.channel_id, p.last_order_text
      FROM user_preferences p JOIN me ON p.user_id = me.id
),
mine AS (
    SELECT channel_id FROM served UNION SELECT channel_id FROM joined
    UNION SELECT channel_id FROM usual
)
SELECT c.slack_channel_id, usual.last_order_text AS usual,
       COALESCE(served.served, 0) AS served, served.last_served_at,
       COALESCE(joined.joined, 0) AS joined
  FROM mine
  JOIN channels c ON c.id = mine.channel_id AND c.enabled
  LEFT JOIN served ON served.channel_id = mine.channel_id
  LEFT JOIN joined ON joined.channel_id = mine.channel_id
  LEFT JOIN usual ON usual.channel_id = mine.channel_id
 ORDER BY COALESCE(served.last_served_at, '-infinity') DESC, c.slack_channel_id
 LIMIT %(limit)s;
