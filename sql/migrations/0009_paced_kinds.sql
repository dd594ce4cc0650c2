-- Work the worker does for a burst waits for the burst to pause (see sql/queries/jobs.sql
-- `arrivals_of_kind` and coffeebuddy/store/queue.py `Pacing`): the newest and the oldest
-- unfinished job of a kind are read on every claim of a paced kind, so they are two index
-- look-ups, not a scan of the queue.
CREATE INDEX jobs_unfinished_kind ON jobs (kind, created_at)
    WHERE status IN ('queued', 'running');
