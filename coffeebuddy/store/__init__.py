"""The one place that reads and writes the database for the services and the worker,
split by what it stores. Each module owns its named queries and returns typed rows
(frozen dataclasses built by `from_row`), never the raw dict rows:

- `queue`: the job queue: services enqueue through it in their own transaction, and the
  worker claims from it, so `service/` never imports `jobs/`;
- `outbox`: domain events recorded for the relay (`coffeebuddy.events`);
- `runs`: a run with its orders, as the messages show it;
- `channels`: a channel's settings, admins, data reset and audit trail;
- `people`: people and their cached Slack profile, names, App Home figures;
- `runners`: who served (the fairness history, runner stats, "I can't go");
- `reminders`: a run's reminder time and jobs;
- `ratings`, `stats`, `pilot`: CSAT, `/coffee stats` and the pilot's figures;
- `privacy`: "forget me" and the retention purge.
"""
