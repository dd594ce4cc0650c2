-- The inbox: a burst's clicks and order forms acknowledged with one statement each. The
-- action is queued as an `apply_action` job; the worker (at a lower CPU priority than the
-- web) applies it through the same service code and sends the same confirmation. No row
-- back means the action can't simply be queued, and the request takes the synchronous
-- path, which explains why or opens the order form.

-- name: inbox_usual
-- "Use my usual" on a run that is open in this channel and workspace, by someone who has a
-- usual in that channel.
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, run_id, correlation_id, lane)
    SELECT 'apply_action', %(payload)s, now(), %(max_attempts)s, r.id, %(correlation_id)s,
           'run:' || r.id::text
      FROM runs r
      JOIN channels c ON c.id = r.channel_id
      JOIN users u ON u.slack_user_id = %(slack_user_id)s
      JOIN user_preferences p ON p.user_id = u.id AND p.channel_id = r.channel_id
     WHERE r.id = %(run_id)s AND r.status = 'open'
       AND c.slack_channel_id = %(slack_channel_id)s
       AND (c.slack_team_id = '' OR c.slack_team_id = %(team_id)s)
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: inbox_order
-- An order form's text (already checked) for a run that is open in this workspace.
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, run_id, correlation_id, lane)
    SELECT 'apply_action', %(payload)s, now(), %(max_attempts)s, r.id, %(correlation_id)s,
           'run:' || r.id::text
      FROM runs r
      JOIN channels c ON c.id = r.channel_id
     WHERE r.id = %(run_id)s AND r.status = 'open'
       AND (c.slack_team_id = '' OR c.slack_team_id = %(team_id)s)
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: take_inboxed_for_run
-- A close applies the run's queued actions first (an order acknowledged before the close
-- counts), a cancel of one's order those of that person: they are taken off the queue
-- like a worker's claim. %(user_id)s NULL: everyone's.
UPDATE jobs
   SET status = 'running', attempts = jobs.attempts + 1,
       locked_until = now() + make_interval(secs => %(lease_seconds)s),
       locked_by = %(worker_id)s, updated_at = now()
 WHERE id IN (SELECT id FROM jobs
               WHERE kind = 'apply_action' AND run_id = %(run_id)s AND status = 'queued'
                 AND (%(user_id)s::text IS NULL OR payload->>'user_id' = %(user_id)s::text)
               ORDER BY id
                 FOR UPDATE SKIP LOCKED)
RETURNING id, payload, correlation_id;

-- name: inboxed_running_for_run
-- Actions of this run a worker is applying right now.
SELECT count(*)::int AS n FROM jobs
 WHERE kind = 'apply_action' AND run_id = %(run_id)s AND status = 'running'
   AND locked_until >= now() AND locked_by <> %(worker_id)s
   AND (%(user_id)s::text IS NULL OR payload->>'user_id' = %(user_id)s::text);

-- name: finish_inboxed
UPDATE jobs SET status = 'done', finished_at = now(), locked_until = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker_id)s;
