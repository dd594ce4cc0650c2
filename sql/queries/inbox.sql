-- The inbox: a burst's clicks and order forms acknowledged with one statement each. The
-- action is queued as an `apply_action` job; the worker (at a lower CPU priority than the
-- web) applies it through the same service code and sends the same confirmation. No row
-- back means the action can't simply be queued, and the request takes the synchronous
-- path, which explains why or opens the order form.
--
-- An action is due `quiet_seconds` after it arrived (COFFEEBUDDY_BURST_QUIET_MS): a burst
-- still arriving is applied once it pauses (apply_action is a paced kind, see
-- coffeebuddy/jobs/kinds.py).
--
-- A run's actions are applied in arrival order (job id), one run at a time, in batches:
-- whichever `apply_action` job a worker claims is only a ticket to apply its run's batch
-- (coffeebuddy/service/inbox.py). The lane `inbox:<run>` and claim_jobs let one worker at
-- a time hold a run's ticket; the advisory lock below makes that exclusive even when a
-- lease ran out or a close drains the inbox from a request.

-- name: inbox_usual
-- "Use my usual" on a run that is open in this channel and workspace, by someone who has a
-- usual in that channel. Not when it is already their order and nothing of theirs is
-- queued: the request sees that the click changes nothing and writes nothing at all.
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, run_id, correlation_id, lane)
    SELECT 'apply_action', %(payload)s, now() + make_interval(secs => %(quiet_seconds)s),
           %(max_attempts)s, r.id, %(correlation_id)s,
           'inbox:' || r.id::text
      FROM runs r
      JOIN channels c ON c.id = r.channel_id
      JOIN users u ON u.slack_user_id = %(slack_user_id)s
      JOIN user_preferences p ON p.user_id = u.id AND p.channel_id = r.channel_id
     WHERE r.id = %(run_id)s AND r.status = 'open'
       AND c.slack_channel_id = %(slack_channel_id)s
       AND (c.slack_team_id = '' OR c.slack_team_id = %(team_id)s)
       AND NOT EXISTS (
             SELECT 1 FROM orders o
              WHERE o.run_id = r.id AND o.user_id = u.id AND o.canceled_at IS NULL
                AND o.order_text = p.last_order_text
                AND NOT EXISTS (
                      SELECT 1 FROM jobs q
                       WHERE q.kind = 'apply_action' AND q.run_id = r.id
                         AND q.status IN ('queued', 'running')
                         AND q.payload->>'user_id' = %(slack_user_id)s::text))
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: inbox_order
-- An order form's text (already checked) for a run that is open in this workspace. Not
-- when it is already their order and nothing of theirs is queued (see inbox_usual).
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, run_id, correlation_id, lane)
    SELECT 'apply_action', %(payload)s, now() + make_interval(secs => %(quiet_seconds)s),
           %(max_attempts)s, r.id, %(correlation_id)s,
           'inbox:' || r.id::text
      FROM runs r
      JOIN channels c ON c.id = r.channel_id
     WHERE r.id = %(run_id)s AND r.status = 'open'
       AND (c.slack_team_id = '' OR c.slack_team_id = %(team_id)s)
       AND NOT EXISTS (
             SELECT 1 FROM orders o JOIN users u ON u.id = o.user_id
              WHERE o.run_id = r.id AND u.slack_user_id = %(slack_user_id)s
                AND o.canceled_at IS NULL
                AND o.order_text = %(order_text)s AND o.volunteer = %(volunteer)s
                AND NOT EXISTS (
                      SELECT 1 FROM jobs q
                       WHERE q.kind = 'apply_action' AND q.run_id = r.id
                         AND q.status IN ('queued', 'running')
                         AND q.payload->>'user_id' = %(slack_user_id)s::text))
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: lock_run_inbox
-- Whoever applies a run's inbox (a worker's batch, a close or cancel draining it) holds
-- this lock until commit: a run's actions are never applied by two at once, so arrival
-- order holds whatever the claims, leases and retries did.
SELECT pg_advisory_xact_lock(hashtextextended('coffeebuddy:inbox:' || %(run_id)s::text, 0));

-- name: inbox_batch
-- A worker's next batch of a run: its due actions in arrival order, except those of a
-- person whose earlier action is waiting to be tried again (theirs stay in order behind
-- it; everyone else's go ahead). Jobs a worker claimed but has not applied are included:
-- under the lock above, a claim is only a ticket.
SELECT j.id, j.status, j.payload, j.correlation_id, j.attempts, j.max_attempts
  FROM jobs j
 WHERE j.kind = 'apply_action' AND j.run_id = %(run_id)s
   AND j.status IN ('queued', 'running')
   AND NOT (j.status = 'queued' AND j.run_at > now())
   AND NOT EXISTS (
         SELECT 1 FROM jobs e
          WHERE e.kind = 'apply_action' AND e.run_id = j.run_id
            AND e.status = 'queued' AND e.run_at > now() AND e.id < j.id
            AND e.payload->>'user_id' = j.payload->>'user_id')
 ORDER BY j.id
 LIMIT %(limit)s
   FOR UPDATE OF j;

-- name: inbox_waiting
-- Why a claimed action was not in its run's batch: the earliest retry of that person's
-- earlier actions it must wait for (NULL: it was not held back, only beyond the batch).
SELECT min(e.run_at) AS until, count(*)::int AS n
  FROM jobs e
 WHERE e.kind = 'apply_action' AND e.run_id = %(run_id)s
   AND e.status = 'queued' AND e.run_at > now() AND e.id < %(id)s
   AND e.payload->>'user_id' = %(user_id)s::text;

-- name: inbox_all
-- A close, a cancel of one's order or "I'll go" applies what is still in the inbox
-- first, waiting retries included, in arrival order: the run sees every action in the
-- order it came.
SELECT j.id, j.status, j.payload, j.correlation_id, j.attempts, j.max_attempts
  FROM jobs j
 WHERE j.kind = 'apply_action' AND j.run_id = %(run_id)s
   AND j.status IN ('queued', 'running')
 ORDER BY j.id
   FOR UPDATE OF j;

-- name: inbox_runs_of_person
-- The runs where this person has an action waiting in the inbox.
SELECT DISTINCT run_id FROM jobs
 WHERE kind = 'apply_action' AND status IN ('queued', 'running')
   AND payload->>'user_id' = %(user_id)s::text;

-- name: inbox_done
-- Applied in the same transaction as their effects: a crash before the commit leaves
-- them all to be applied again, none twice.
UPDATE jobs SET status = 'done', finished_at = now(), locked_until = NULL, last_error = NULL,
                updated_at = now()
 WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running');

-- name: inbox_failed
-- One action failed (its changes rolled back to its savepoint): tried again after
-- `delay_seconds`, or given up after its last attempt. A claim already counted the
-- attempt of a job that was running.
UPDATE jobs
   SET status = CASE WHEN %(dead)s THEN 'dead' ELSE 'queued' END,
       attempts = %(attempts)s,
       run_at = now() + make_interval(secs => %(delay_seconds)s),
       finished_at = CASE WHEN %(dead)s THEN now() END,
       locked_until = NULL, locked_by = NULL, last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s
RETURNING run_at;

-- name: inbox_postpone
-- A person's later actions wait behind their failed one, so they still land in order.
-- A claimed one goes back to the queue without its claim counting as an attempt.
UPDATE jobs
   SET status = 'queued',
       attempts = jobs.attempts - CASE WHEN jobs.status = 'running' THEN 1 ELSE 0 END,
       run_at = greatest(jobs.run_at, %(until)s::timestamptz),
       locked_until = NULL, locked_by = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND status IN ('queued', 'running');
