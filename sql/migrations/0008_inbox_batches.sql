-- The inbox is applied one run at a time, in arrival order, in batches (see
-- sql/queries/inbox.sql and coffeebuddy/service/inbox.py). A worker may claim a run's next
-- inboxed action only while no other action of that run is running; these two small
-- indexes keep that check, and the selection of a run's batch, cheap during a burst.
CREATE INDEX jobs_inbox_unfinished ON jobs (run_id, id)
    WHERE kind = 'apply_action' AND status IN ('queued', 'running');
CREATE INDEX jobs_inbox_running ON jobs (run_id)
    WHERE kind = 'apply_action' AND status = 'running';
