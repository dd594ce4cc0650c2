-- The Slack rate budget shared by every worker replica: a token bucket per (method,
-- scope). Times come from the database clock so that every replica agrees.

-- name: ensure_budget
-- A bucket starts full.
INSERT INTO slack_budget (method, scope, tokens)
VALUES (%(method)s, %(scope)s, %(burst)s)
ON CONFLICT (method, scope) DO NOTHING;

-- name: take_budget
-- Take one token if the method is not paused and, after taking it, at least `floor`
-- tokens are left (0 for a call a person waits for; a reserve for refreshes, so that they
-- go last). Otherwise take nothing and say how long to wait: until the pause ends or
-- enough tokens have refilled, and no sooner than the next free slot, which then moves
-- one refill further so that deferred calls come back one at a time.
-- The row is locked first, so replicas take turns; the clock is read after the lock, and
-- refilled_at never moves backwards (a clock read early only under-counts the refill).
WITH cur AS (
    SELECT method, scope, tokens, refilled_at, paused_until, next_slot, next_low_slot,
           clock_timestamp() AS at
      FROM slack_budget
     WHERE method = %(method)s AND scope = %(scope)s
       FOR UPDATE
), filled AS (
    SELECT cur.*,
           least(%(burst)s::float8,
                 tokens + %(per_second)s::float8
                          * greatest(0, EXTRACT(EPOCH FROM at - refilled_at))::float8)
             AS refilled
      FROM cur
), decided AS (
    SELECT filled.*,
           (paused_until IS NULL OR paused_until <= at)
             AND refilled - 1 >= %(floor)s::float8 AS granted,
           greatest(
               EXTRACT(EPOCH FROM coalesce(paused_until, at) - at)::float8,
               (%(floor)s::float8 + 1 - refilled) / %(per_second)s::float8,
               EXTRACT(EPOCH FROM coalesce(CASE WHEN %(low)s THEN next_low_slot
                                                ELSE next_slot END, at) - at)::float8,
               %(min_wait)s::float8
           ) AS wait
      FROM filled
)
UPDATE slack_budget b
   SET tokens = d.refilled - CASE WHEN d.granted THEN 1 ELSE 0 END,
       refilled_at = greatest(b.refilled_at, d.at),
       next_slot = CASE WHEN d.granted OR %(low)s THEN b.next_slot
                        ELSE d.at + make_interval(secs => d.wait + 1 / %(per_second)s::float8)
                   END,
       next_low_slot = CASE WHEN d.granted OR NOT %(low)s THEN b.next_low_slot
                            ELSE d.at + make_interval(secs => d.wait
                                                               + 1 / %(per_second)s::float8)
                       END
  FROM decided d
 WHERE b.method = d.method AND b.scope = d.scope
RETURNING d.granted, CASE WHEN d.granted THEN 0 ELSE d.wait END AS wait_seconds,
          b.tokens AS tokens_left;

-- name: pause_budget
-- Slack answered 429: nobody calls this method (in this scope) until Retry-After has
-- passed, and its bucket is empty from then on, so the calls resume at the refill rate
-- instead of all at once.
INSERT INTO slack_budget AS b (method, scope, tokens, paused_until)
VALUES (%(method)s, %(scope)s, 0, now() + make_interval(secs => %(seconds)s))
ON CONFLICT (method, scope) DO UPDATE
   SET paused_until = greatest(coalesce(b.paused_until, now()), EXCLUDED.paused_until),
       tokens = 0,
       refilled_at = greatest(b.refilled_at, EXCLUDED.paused_until);

-- name: budget_state
-- For the metrics and tests: every workspace-wide bucket, refilled to now.
SELECT method, scope, tokens, refilled_at, paused_until,
       EXTRACT(EPOCH FROM greatest(paused_until, now()) - now())::float8 AS paused_for
  FROM slack_budget
 WHERE scope = ''
 ORDER BY method;

-- name: prune_budget
-- Per-channel buckets idle for a while are refilled again: forget them.
DELETE FROM slack_budget
 WHERE scope <> '' AND refilled_at < now() - interval '1 hour'
   AND (paused_until IS NULL OR paused_until < now());
