-- The job queue. Times come from the database clock so that several hosts agree.

-- name: enqueue_job
-- The NOTIFY is delivered at commit, so a worker never wakes for a row it can't see yet.
-- A job whose key is already queued joins it; if it is wanted sooner (a close right after
-- a click's coalesced refresh), the queued one is brought forward.
-- With %(replace_payload)s the queued one also takes the new payload (latest wins).
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, dedupe_key, run_id, correlation_id,
                      lane)
    VALUES (%(kind)s, %(payload)s, now() + make_interval(secs => %(delay_seconds)s),
            %(max_attempts)s, %(dedupe_key)s, %(run_id)s, %(correlation_id)s, %(lane)s)
    ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL
    DO UPDATE SET run_at = least(jobs.run_at, EXCLUDED.run_at),
                  payload = CASE WHEN %(replace_payload)s THEN EXCLUDED.payload
                                 ELSE jobs.payload END,
                  correlation_id = CASE WHEN %(replace_payload)s THEN EXCLUDED.correlation_id
                                        ELSE jobs.correlation_id END,
                  updated_at = now()
         WHERE EXCLUDED.run_at < jobs.run_at OR %(replace_payload)s
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: enqueue_coalesced_job
-- enqueue_job for a job that may simply join a queued one with its key (a click's refresh
-- of the run message): DO NOTHING takes no lock on the queued row, so a burst of clicks
-- does not queue behind that row until each commit. The queued one is due no later than
-- this one would be (same delay) unless a 429 pushed it back, which it must respect.
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, dedupe_key, run_id, correlation_id,
                      lane)
    VALUES (%(kind)s, %(payload)s, now() + make_interval(secs => %(delay_seconds)s),
            %(max_attempts)s, %(dedupe_key)s, %(run_id)s, %(correlation_id)s, %(lane)s)
    ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL
    DO NOTHING
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: claim_jobs
-- Due jobs, plus running jobs whose lease ran out (their worker died). A job whose
-- dedupe key is being worked on elsewhere waits, so two refreshes of one message never
-- race and the older one never lands last. Fair across lanes (a person, a run): each
-- lane's oldest due job comes first, then each lane's second, and so on, so one burst
-- never holds back everyone else's work. A run's inboxed actions are applied by one worker
-- at a time, as a batch (sql/queries/inbox.sql): one of them is claimed only while none
-- of them is running, and only one per claim.
WITH ready AS (
    SELECT j.id, j.run_at,
           row_number() OVER (PARTITION BY coalesce(j.lane, j.id::text)
                              ORDER BY j.run_at, j.id) AS turn
      FROM jobs j
     WHERE ((j.status = 'queued' AND j.run_at <= now())
            OR (j.status = 'running' AND j.locked_until < now()))
       AND (j.dedupe_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs r
               WHERE r.dedupe_key = j.dedupe_key AND r.id <> j.id
                 AND r.status = 'running' AND r.locked_until >= now()))
       AND (j.kind <> 'apply_action' OR NOT EXISTS (
              SELECT 1 FROM jobs r
               WHERE r.kind = 'apply_action' AND r.run_id = j.run_id AND r.id <> j.id
                 AND r.status = 'running' AND r.locked_until >= now()))
), due AS (
    -- The state test again, on the row being locked: when another worker claimed it and
    -- committed after `ready` was read, Postgres re-checks these conditions on the new row
    -- version (not the CTE's copy) and the job is skipped instead of claimed twice.
    SELECT j.id FROM jobs j JOIN ready USING (id)
     WHERE ((j.status = 'queued' AND j.run_at <= now())
            OR (j.status = 'running' AND j.locked_until < now()))
       AND (j.kind <> 'apply_action' OR ready.turn = 1)
     ORDER BY ready.turn, ready.run_at, j.id
     LIMIT %(limit)s
       FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobs
   SET status = 'running', attempts = jobs.attempts + 1,
       locked_until = now() + make_interval(secs => %(lease_seconds)s),
       locked_by = %(worker_id)s, updated_at = now()
  FROM due
 WHERE jobs.id = due.id
RETURNING jobs.id, jobs.kind, jobs.payload, jobs.attempts, jobs.max_attempts, jobs.run_id,
          jobs.correlation_id, jobs.dedupe_key;

-- name: complete_job
UPDATE jobs SET status = 'done', finished_at = now(), locked_until = NULL, updated_at = now(),
                last_error = NULL
 WHERE id = %(id)s AND status = 'running' AND locked_by = %(worker_id)s;

-- name: retry_job
-- Back to the queue after `delay_seconds`. A coalesced job whose key already has a queued
-- successor is simply done: the successor will do the same work with fresher data.
UPDATE jobs
   SET status = CASE WHEN dedupe_key IS NOT NULL AND EXISTS (
                          SELECT 1 FROM jobs q WHERE q.dedupe_key = jobs.dedupe_key
                             AND q.status = 'queued')
                     THEN 'done' ELSE 'queued' END,
       finished_at = CASE WHEN dedupe_key IS NOT NULL AND EXISTS (
                               SELECT 1 FROM jobs q WHERE q.dedupe_key = jobs.dedupe_key
                                  AND q.status = 'queued')
                          THEN now() END,
       run_at = now() + make_interval(secs => %(delay_seconds)s),
       attempts = jobs.attempts - CASE WHEN %(free_attempt)s THEN 1 ELSE 0 END,
       locked_until = NULL, locked_by = NULL, last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s AND status = 'running' AND locked_by = %(worker_id)s;

-- name: bury_job
UPDATE jobs SET status = 'dead', finished_at = now(), locked_until = NULL,
                last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s AND status = 'running' AND locked_by = %(worker_id)s;

-- name: next_due_in
-- Seconds until the next job can be claimed (NULL when none), so an idle worker sleeps
-- exactly until then instead of polling: the next queued job that is not waiting for a
-- running job with its key (claim_jobs skips those, and counting them would make an idle
-- worker spin until that job ends), or the next lease to run out.
SELECT EXTRACT(EPOCH FROM least(
           (SELECT j.run_at FROM jobs j
             WHERE j.status = 'queued'
               AND (j.dedupe_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM jobs r
                       WHERE r.dedupe_key = j.dedupe_key AND r.status = 'running'
                         AND r.locked_until >= now()))
               AND (j.kind <> 'apply_action' OR NOT EXISTS (
                      SELECT 1 FROM jobs r
                       WHERE r.kind = 'apply_action' AND r.run_id = j.run_id
                         AND r.status = 'running' AND r.locked_until >= now()))
             ORDER BY j.run_at, j.id
             LIMIT 1),
           (SELECT min(locked_until) FROM jobs WHERE status = 'running')
       ) - now())::float8 AS seconds;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: ensure_job
-- A recurring job (one dedupe key) is added only when none is queued or running, so
-- replicas starting together add it once.
INSERT INTO jobs (kind, payload, run_at, dedupe_key)
SELECT %(kind)s, '{}'::jsonb, now() + make_interval(secs => %(delay_seconds)s), %(dedupe_key)s
 WHERE NOT EXISTS (SELECT 1 FROM jobs
                    WHERE dedupe_key = %(dedupe_key)s AND status IN ('queued', 'running'))
ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: prune_finished_jobs
-- One bounded batch. `done` jobs go after `done_seconds`, `dead` ones after
-- `dead_seconds`; rows another transaction holds are left for the next round.
DELETE FROM jobs
 WHERE id IN (
    SELECT id FROM jobs
     WHERE (status = 'done'
            AND coalesce(finished_at, updated_at) < now() - make_interval(secs => %(done_seconds)s))
        OR (status = 'dead'
            AND coalesce(finished_at, updated_at) < now() - make_interval(secs => %(dead_seconds)s))
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
RETURNING status;

-- name: job_stats
-- Per kind: jobs that could start now but have not (queued and due, or running with a
-- lease that ran out), how long the oldest of them has waited, and dead jobs.
SELECT kind,
       count(*) FILTER (WHERE status <> 'dead') AS due,
       coalesce(EXTRACT(EPOCH FROM now() - min(CASE WHEN status = 'queued' THEN run_at
                                                     WHEN status = 'running' THEN locked_until
                                                END)), 0)::float8 AS oldest_due_age,
       count(*) FILTER (WHERE status = 'dead') AS dead
  FROM jobs
 WHERE (status = 'queued' AND run_at <= now())
    OR (status = 'running' AND locked_until < now())
    OR status = 'dead'
 GROUP BY kind
 ORDER BY kind;

-- name: list_jobs
-- For operators: never the payload, which can hold response URLs.
SELECT id, kind, status, attempts, max_attempts, run_at, last_error
  FROM jobs
 WHERE %(status)s::text IS NULL OR status = %(status)s::text
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: job_statuses
SELECT id, status FROM jobs WHERE id = ANY(%(ids)s);

-- name: retry_dead_jobs
-- Dead jobs back to the queue, due now with a fresh set of attempts (all of them with
-- `all_dead`, else those in `ids`). Where a job with the same dedupe key is already queued,
-- that one will do the work and the dead job stays as it is; of several dead jobs with
-- one key, the newest goes back.
WITH picked AS (
    SELECT DISTINCT ON (coalesce(j.dedupe_key, j.id::text)) j.id
      FROM jobs j
     WHERE j.status = 'dead'
       AND (%(all_dead)s OR j.id = ANY(%(ids)s))
       AND (j.dedupe_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs q WHERE q.dedupe_key = j.dedupe_key AND q.status = 'queued'))
     ORDER BY coalesce(j.dedupe_key, j.id::text), j.id DESC
), revived AS (
    UPDATE jobs
       SET status = 'queued', attempts = 0, run_at = now(), locked_until = NULL,
           locked_by = NULL, finished_at = NULL, updated_at = now()
      FROM picked
     WHERE jobs.id = picked.id AND jobs.status = 'dead'
    RETURNING jobs.id, jobs.kind
)
SELECT id, kind, pg_notify('coffeebuddy_jobs', kind) FROM revived ORDER BY id;

-- name: renew_leases
-- The jobs this worker is still running keep their lease, however slow Slack is; a worker
-- that died stops renewing and its jobs are claimed again when the lease runs out.
UPDATE jobs SET locked_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker_id)s;

-- name: arrivals_of_kind
-- How long ago the newest and the oldest unfinished job of a kind arrived: while jobs of a
-- paced kind still arrive (a burst the web is answering), the worker leaves it to end.
SELECT EXTRACT(EPOCH FROM clock_timestamp() - max(created_at))::float8 AS since_newest,
       EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS since_oldest
  FROM jobs
 WHERE kind = %(kind)s AND status IN ('queued', 'running');

-- name: hold_kind
-- The burst goes on: every queued job of the kind waits `seconds` more (one due later
-- already, say a retry, keeps its time), so that no worker claims them one by one.
UPDATE jobs SET run_at = clock_timestamp() + make_interval(secs => %(seconds)s),
                updated_at = now()
 WHERE kind = %(kind)s AND status = 'queued'
   AND run_at < clock_timestamp() + make_interval(secs => %(seconds)s);

