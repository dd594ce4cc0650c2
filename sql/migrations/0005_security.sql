-- Security review (issue 11): fair job claiming and the ops audit trail.

-- Whose turn a job waits for (a person's answers, a run's message work): claim_jobs takes
-- each lane's oldest due job first, so one person's or one channel's burst can't starve
-- the others.
ALTER TABLE jobs ADD COLUMN lane text;

-- Every call of the operations API that changes something, with the bearer token's
-- subject (never the token).
CREATE TABLE ops_actions (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    action      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ops_actions_created ON ops_actions (created_at DESC);
