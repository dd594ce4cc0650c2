-- The job queue. Times come from the database clock so that several hosts agree.

-- name: enqueue_job
-- The NOTIFY is delivered at commit, so a worker never wakes for a row it can't see yet.
WITH ins AS (
    INSERT INTO jobs (kind, payload, run_at, max_attempts, dedupe_key, run_id, correlation_id)
    VALUES (%(kind)s, %(payload)s, now() + make_interval(secs => %(delay_seconds)s),
            %(max_attempts)s, %(dedupe_key)s, %(run_id)s, %(correlation_id)s)
    ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL DO NOTHING
    RETURNING id, kind
)
SELECT id, pg_notify('coffeebuddy_jobs', kind) FROM ins;

-- name: claim_jobs
-- Due jobs, plus running jobs whose lease ran out (their worker died). A job whose
-- dedupe key is being worked on elsewhere waits, so two refreshes of one message never
-- race and the older one never lands last.
WITH due AS (
    SELECT j.id FROM jobs j
     WHERE ((j.status = 'queued' AND j.run_at <= now())
            OR (j.status = 'running' AND j.locked_until < now()))
       AND (j.dedupe_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs r
               WHERE r.dedupe_key = j.dedupe_key AND r.id <> j.id
                 AND r.status = 'running' AND r.locked_until >= now()))
     ORDER BY j.run_at, j.id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
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
       run_at = now() + make_interval(secs => %(delay_seconds)s),
       attempts = jobs.attempts - CASE WHEN %(free_attempt)s THEN 1 ELSE 0 END,
       locked_until = NULL, locked_by = NULL, last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s AND status = 'running' AND locked_by = %(worker_id)s;

-- name: bury_job
UPDATE jobs SET status = 'dead', finished_at = now(), locked_until = NULL,
                last_error = %(error)s, updated_at = now()
 WHERE id = %(id)s AND status = 'running' AND locked_by = %(worker_id)s;

-- name: release_jobs
-- On graceful shutdown: hand unstarted claims straight back instead of waiting for the lease.
UPDATE jobs SET status = 'queued', locked_until = NULL, locked_by = NULL,
                attempts = greatest(attempts - 1, 0), updated_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'running' AND locked_by = %(worker_id)s;

-- name: next_due_in
-- Seconds until the next queued job is due (NULL when none), so an idle worker sleeps
-- exactly until then instead of polling.
SELECT EXTRACT(EPOCH FROM (min(run_at) - now()))::float8 AS seconds
  FROM jobs WHERE status = 'queued';

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: jobs_for_run
SELECT id, kind, status, attempts, last_error FROM jobs WHERE run_id = %(run_id)s ORDER BY id;
