-- The Slack rate budget shared by every worker replica: per (method, scope), the calls
-- granted within the last `window_seconds` (a sliding window, as Slack counts a minute).
-- Times come from the database clock so that every replica agrees.

-- name: ensure_budget
INSERT INTO slack_budget (method, scope)
VALUES (%(method)s, %(scope)s)
ON CONFLICT (method, scope) DO NOTHING;

-- name: take_budget
-- Grant one call if the method is not paused and fewer than `allowed` calls were granted
-- within the window (`allowed` is the whole allowance for a call a person waits for, less
-- a reserve for a refresh, so that refreshes go last). Otherwise grant nothing and say how
-- long to wait: until the pause ends and enough calls have left the window, and then one
-- waiting call per place that frees: each deferral is promised the next place to free
-- after the previous promise (or, past the last, one share of the window later), so the
-- calls come back one at a time as the window empties instead of all at once.
-- The row is locked first, so replicas take turns; the clock is read after the lock.
WITH cur AS (
    SELECT method, scope, granted, paused_until, next_slot, next_low_slot,
           clock_timestamp() AS at, make_interval(secs => %(window_seconds)s) AS span
      FROM slack_budget
     WHERE method = %(method)s AND scope = %(scope)s
       FOR UPDATE
), kept AS (
    SELECT cur.*,
           ARRAY(SELECT g FROM unnest(cur.granted) AS g
                  WHERE g > cur.at - cur.span ORDER BY g) AS recent,
           CASE WHEN %(low)s THEN next_low_slot ELSE next_slot END AS slot
      FROM cur
), decided AS (
    SELECT kept.*,
           (paused_until IS NULL OR paused_until <= at)
             AND cardinality(recent) < %(allowed)s
             -- a refresh never goes while a call a person waits for is waiting
             AND (NOT %(low)s OR next_slot IS NULL OR next_slot <= at) AS ok,
           greatest(
               EXTRACT(EPOCH FROM coalesce(paused_until, at) - at)::float8,
               -- until the call that must leave the window for this one to fit has left
               CASE WHEN cardinality(recent) >= %(allowed)s
                    THEN EXTRACT(EPOCH FROM recent[cardinality(recent) - %(allowed)s + 1]
                                            + span - at)::float8
                    ELSE 0 END,
               -- a refresh: behind every call a person waits for
               CASE WHEN %(low)s AND next_slot > at
                    THEN EXTRACT(EPOCH FROM next_slot - at)::float8 ELSE 0 END,
               -- behind the calls already waiting
               CASE WHEN slot > at
                    THEN EXTRACT(EPOCH FROM coalesce(
                             (SELECT min(g + kept.span) FROM unnest(recent) AS g
                               WHERE g + kept.span > kept.slot),
                             slot + make_interval(secs => %(spacing)s)) - at)::float8
                    ELSE 0 END,
               %(min_wait)s::float8
           ) AS wait
      FROM kept
)
UPDATE slack_budget b
   SET granted = CASE WHEN d.ok THEN d.recent || d.at ELSE d.recent END,
       next_slot = CASE WHEN d.ok OR %(low)s THEN b.next_slot
                        ELSE d.at + make_interval(secs => d.wait) END,
       next_low_slot = CASE WHEN d.ok OR NOT %(low)s THEN b.next_low_slot
                            ELSE d.at + make_interval(secs => d.wait) END,
       updated_at = d.at
  FROM decided d
 WHERE b.method = d.method AND b.scope = d.scope
RETURNING d.ok AS granted, CASE WHEN d.ok THEN 0 ELSE d.wait END AS wait_seconds,
          %(calls)s - cardinality(b.granted) AS calls_left;

-- name: pause_budget
-- Slack answered 429: nobody calls this method (in this scope) until Retry-After has
-- passed.
INSERT INTO slack_budget AS b (method, scope, paused_until)
VALUES (%(method)s, %(scope)s, now() + make_interval(secs => %(seconds)s))
ON CONFLICT (method, scope) DO UPDATE
   SET paused_until = greatest(coalesce(b.paused_until, now()), EXCLUDED.paused_until),
       updated_at = now();

-- name: prune_budget
-- Per-channel windows long past are empty again: forget them.
DELETE FROM slack_budget
 WHERE scope <> '' AND updated_at < now() - interval '1 hour'
   AND (paused_until IS NULL OR paused_until < now());
