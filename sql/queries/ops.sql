-- The operations API.

-- name: ops_run_status
SELECT r.id, r.status, c.slack_channel_id, r.started_at, r.closed_at, r.failure_reason,
       r.cancel_reason, ru.slack_user_id AS runner,
       (SELECT count(*) FROM orders o WHERE o.run_id = r.id AND o.canceled_at IS NULL)::int
           AS participants
  FROM runs r
  JOIN channels c ON c.id = r.channel_id
  LEFT JOIN users ru ON ru.id = r.runner_user_id
 WHERE r.id = %(run_id)s;

-- name: insert_ops_action
-- The audit trail of the operations API: who (the token's subject) did what.
INSERT INTO ops_actions (subject, action, details)
VALUES (%(subject)s, %(action)s, %(details)s);
