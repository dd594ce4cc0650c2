-- The Slack rate budget every worker replica shares (see coffeebuddy/slack/budget.py and
-- sql/queries/budget.sql): one token bucket per Slack method, and per channel for
-- chat.postMessage ('' when the method's limit is workspace-wide).
CREATE TABLE slack_budget (
    method        text NOT NULL CHECK (length(method) <= 100),
    scope         text NOT NULL DEFAULT '' CHECK (length(scope) <= 100),
    -- Tokens left when last looked at; they refill at the method's rate up to its burst.
    tokens        double precision NOT NULL,
    refilled_at   timestamptz NOT NULL DEFAULT now(),
    -- A 429 pauses the method for every replica until Slack's Retry-After has passed.
    paused_until  timestamptz,
    -- Deferred calls are spread one refill apart instead of all waking at the same
    -- instant: the next free slot for a call a person waits for, and for a refresh.
    next_slot     timestamptz,
    next_low_slot timestamptz,
    PRIMARY KEY (method, scope)
);
