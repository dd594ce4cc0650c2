-- The event outbox.

-- name: insert_event
-- The NOTIFY (delivered at commit) wakes the relay.
WITH ins AS (
    INSERT INTO events (event_id, topic, event_type, run_id, envelope)
    VALUES (%(event_id)s, %(topic)s, %(event_type)s, %(run_id)s, %(envelope)s)
    RETURNING id
)
SELECT id, pg_notify('coffeebuddy_events', '') FROM ins;
