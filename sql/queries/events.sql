-- The event outbox.

-- name: insert_event
-- The NOTIFY (delivered at commit) wakes the relay.
WITH ins AS (
    INSERT INTO events (event_id, topic, event_type, run_id, envelope)
    VALUES (%(event_id)s, %(topic)s, %(event_type)s, %(run_id)s, %(envelope)s)
    RETURNING id
)
SELECT id, pg_notify('coffeebuddy_events', '') FROM ins;

-- name: relay_try_lock
-- Session-level: held for as long as the relay's own connection lives, so only one relay
-- in the deployment publishes, and a dead one's lock goes away with its connection.
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: unsent_events
-- Oldest first: per-run order on Kafka is id order.
SELECT id, topic, event_type, run_id, event_id,
       envelope::text AS envelope_json,
       envelope->>'schema_version' AS schema_version
FROM events
WHERE sent_at IS NULL
ORDER BY id
LIMIT %(limit)s;

-- name: mark_events_sent
UPDATE events
SET sent_at = now()
WHERE id = ANY(%(ids)s) AND sent_at IS NULL;

-- name: event_backlog
SELECT count(*) AS backlog,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age_seconds
FROM events
WHERE sent_at IS NULL;

-- name: prune_sent_events
-- In slices, so one prune never holds many row locks or runs long.
DELETE FROM events
WHERE id IN (
    SELECT id FROM events
    WHERE sent_at < now() - make_interval(secs => %(retention_seconds)s)
    LIMIT %(limit)s
);

-- name: prune_events_without_relay
-- With no relay configured nothing is ever marked sent, so events are pruned by age
-- instead: they carry user and channel ids and must not be kept forever.
DELETE FROM events
WHERE id IN (
    SELECT id FROM events
    WHERE created_at < now() - make_interval(secs => %(retention_seconds)s)
    LIMIT %(limit)s
);
