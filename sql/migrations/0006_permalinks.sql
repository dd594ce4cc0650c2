-- Links to the run message and the summary (chat.getPermalink, fetched by the worker once
-- the message is posted), so answers can point at the message they talk about: "there's
-- already an open run", "already closed", the last call, and the closed run message's
-- link to its summary. NULL until fetched, or when Slack wouldn't give one.
ALTER TABLE runs
    ADD COLUMN message_permalink  text CHECK (length(message_permalink) <= 1000),
    ADD COLUMN summary_permalink  text CHECK (length(summary_permalink) <= 1000);
