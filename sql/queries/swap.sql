-- "I can't go": the runner hands a closed run to the next person by the fairness rule.

-- name: swap_user_slack_id
SELECT slack_user_id FROM users WHERE id = %(user_id)s;

-- name: swap_newer_closed_run
-- A closed run of the channel after this one (in the order `previous_runner` uses). Once
-- there is one, this run's history is settled and its runner can no longer be swapped.
SELECT 1 AS found FROM runs
 WHERE channel_id = %(channel_id)s AND status = 'closed' AND id <> %(run_id)s
   AND (closed_at, id) > (%(closed_at)s::timestamptz, %(run_id)s::uuid)
 LIMIT 1;

-- name: swap_runner
-- The new runner, why, and who declined. The DM bookkeeping is cleared so `dm_runner`
-- writes to the new runner, and so is the reminder's, so the new runner is reminded too.
UPDATE runs
   SET runner_user_id = %(runner_user_id)s, runner_reason = %(runner_reason)s,
       runner_rule = %(runner_rule)s,
       declined_user_ids = array_append(declined_user_ids, %(declined)s::text),
       runner_dm_channel = NULL, runner_dm_ts = NULL, reminder_ts = NULL
 WHERE id = %(run_id)s AND status = 'closed' AND runner_user_id = %(old_runner_user_id)s
   AND NOT (%(declined)s::text = ANY(declined_user_ids))
RETURNING closed_at;

-- name: swap_delete_runner_stats
-- Someone who served no closed run in the channel has no stats row (as after a purge).
DELETE FROM runner_stats WHERE user_id = %(user_id)s AND channel_id = %(channel_id)s;

-- name: swap_summary_pending
-- The closing summary of a run, while it is still to be posted.
SELECT count(*)::int AS n FROM jobs
 WHERE run_id = %(run_id)s AND kind = 'post_summary' AND status IN ('queued', 'running');

-- name: swap_mark_reminder_sent
-- Only while the person reminded is still the runner: if they handed the run on while
-- their reminder was on its way, the new runner's reminder is still to be sent.
UPDATE runs SET reminder_sent_at = now(), reminder_ts = %(ts)s
 WHERE id = %(run_id)s AND reminder_ts IS NULL
   AND runner_user_id = (SELECT id FROM users WHERE slack_user_id = %(runner)s)
RETURNING id;
