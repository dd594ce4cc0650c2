"""The one place that reads and writes the database for the services and the worker,
split by what it stores. Each module owns its named queries and returns typed rows
(frozen dataclasses built by `from_row`), never the raw dict rows:

- `queue`: the job queue: services enqueue through it in their own transaction, and the
  worker claims from it, so `service/` never imports `jobs/`;
- `outbox`: domain events recorded for the relay (`coffeebuddy.events`);
- `runs`: a run with its orders, as the messages show it;
- `orders`: a person's order in a run and their usual in a channel;
- `channels`: a channel's settings, admins, data reset and audit trail;
- `people`: people and their cached Slack profile, names, App Home figures;
- `runners`: who served (the fairness history, runner stats, "I can't go");
- `reminders`: a run's reminder time and jobs;
- `ratings`, `stats`, `pilot`: CSAT, `/coffee stats` and the pilot's figures;
- `privacy`: "forget me" and the retention purge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def columns(row_type: type, row: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of `row` named like the fields of the dataclass `row_type`: what its
    `from_row` passes on when no column needs converting (a missing one is a KeyError)."""
    return {field.name: row[field.name] for field in fields(row_type)}
