-- Channel administration: the channel's own admins, why a run was canceled, and the
-- runner's "I can't go".

ALTER TABLE channels
    ADD COLUMN admin_user_ids text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(admin_user_ids) <= 50);

ALTER TABLE runs
    ADD COLUMN cancel_reason text CHECK (length(cancel_reason) <= 300),
    -- Who pressed "I can't go" on this run (at most once each); they are not picked again.
    ADD COLUMN declined_user_ids text[] NOT NULL DEFAULT '{}';

-- Actions saved in one transaction share created_at; seq keeps them in the order made.
ALTER TABLE channel_admin_actions ADD COLUMN seq bigserial;

CREATE INDEX runs_started ON runs (channel_id, started_at);
CREATE INDEX user_preferences_last_used ON user_preferences (last_used_at);
