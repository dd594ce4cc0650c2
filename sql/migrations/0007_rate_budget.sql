-- The Slack rate budget every worker replica shares (see coffeebuddy/slack/budget.py and
-- sql/queries/budget.sql): per Slack method, and per channel for chat.postMessage ('' when
-- the method's limit is workspace-wide), the calls granted within the method's window.
CREATE TABLE slack_budget (
    method        text NOT NULL CHECK (length(method) <= 100),
    scope         text NOT NULL DEFAULT '' CHECK (length(scope) <= 100),
    -- When each call still inside the window was granted, oldest first (at most the
    -- window's allowance: 100 for Tier 4).
    granted       timestamptz[] NOT NULL DEFAULT '{}',
    -- A 429 pauses the method for every replica until Slack's Retry-After has passed.
    paused_until  timestamptz,
    -- Deferred calls come back spread out instead of all at the same instant: the next
    -- free slot for a call a person waits for, and for a refresh.
    next_slot     timestamptz,
    next_low_slot timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, scope)
);
