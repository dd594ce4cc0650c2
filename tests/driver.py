"""Plays people in a channel against the app: typed commands, button clicks, modal
submissions, each signed as Slack signs them. Jobs run when the test says so."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import falcon.testing
import psycopg

from coffeebuddy.jobs.worker import Worker
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack
from testkit.polling import eventually
from testkit.slack_payloads import block_action_body, command_body, view_submission_body

__all__ = [
    "HOUSEKEEPING",
    "Channel",
    "SqlFn",
    "connect_sql",
    "eventually",
    "runner_of",
    "unfinished_jobs",
]

SqlFn = Callable[..., list[tuple[Any, ...]]]

# Jobs the worker schedules for itself: not part of any run's work.
# Jobs no run waits for: the worker's own upkeep, and profiles fetched ahead of need.
HOUSEKEEPING = (queue.PRUNE_JOBS, queue.RETENTION_PURGE, queue.WARM_PROFILE)


def connect_sql(url: str) -> tuple[SqlFn, psycopg.Connection[Any]]:
    """An SqlFn on a connection of its own (the `sql` fixture's is not for many threads)."""
    conn = psycopg.connect(url, autocommit=True)

    def query(text: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = conn.execute(text, params or None)
        return cur.fetchall() if cur.description else []

    return query, conn


def unfinished_jobs(sql: SqlFn) -> list[tuple[Any, ...]]:
    """Jobs that are due (or running) and not finished, housekeeping aside."""
    return sql(
        "SELECT id, kind, status FROM jobs"
        " WHERE kind <> ALL(%s) AND status IN ('queued', 'running') AND run_at <= now()",
        list(HOUSEKEEPING),
    )


def bring_reminder_forward(sql: SqlFn, run_id: str) -> list[tuple[Any, ...]]:
    """The runner reminder's time has come: its queued job and runs.reminder_at move to
    now(). Returns the run's row when they did (empty: no reminder was queued)."""
    return sql(
        "WITH j AS (UPDATE jobs SET run_at = now() WHERE kind = %s AND run_id = %s"
        "           AND status = 'queued' RETURNING id)"
        " UPDATE runs SET reminder_at = now() WHERE id = %s AND EXISTS (SELECT 1 FROM j)"
        " RETURNING id",
        queue.RUNNER_REMINDER,
        run_id,
        run_id,
    )


def runner_of(sql: SqlFn, run_id: str) -> str:
    """The Slack id of the run's runner (fails when it has none)."""
    rows = sql(
        "SELECT u.slack_user_id FROM runs r JOIN users u ON u.id = r.runner_user_id"
        " WHERE r.id = %s",
        run_id,
    )
    return str(rows[0][0])


@dataclass(eq=False)  # compared by identity, as before
class Channel:
    web: Any
    worker: Worker | None
    sql: SqlFn
    channel_id: str
    slack: FakeSlack
    # Each command and click carries its own response_url, as in Slack.
    _urls: dict[str, list[str]] = field(default_factory=dict, init=False)

    def _response_url(self, user: str) -> str:
        names = self._urls.setdefault(user, [])
        names.append(f"{user}-{len(names)}")
        return self.slack.response_url(names[-1])

    def told(self, user: str) -> list[str]:
        """Every ephemeral answer `user` saw: via response_urls and chat.postEphemeral."""
        via_url = [
            str(r.get("text", ""))
            for name in self._urls.get(user, [])
            for r in self.slack.responses(name)
        ]
        return via_url + [str(e.get("text", "")) for e in self.slack.ephemerals(user)]

    def command(self, user: str, text: str = "", **kwargs: Any) -> dict[str, Any]:
        result: falcon.testing.Result = self.web.post(
            "/slack/commands",
            command_body(
                user_id=user,
                channel_id=self.channel_id,
                text=text,
                response_url=self._response_url(user),
                trigger_id=self.slack.trigger_id(),
                **kwargs,
            ),
        )
        assert result.status_code == 200, result.text
        body: dict[str, Any] = result.json
        return body

    def run_id(self) -> str:
        rows = self.sql(
            "SELECT r.id::text FROM runs r JOIN channels c ON c.id = r.channel_id"
            " WHERE c.slack_channel_id = %s ORDER BY r.started_at DESC LIMIT 1",
            self.channel_id,
        )
        assert rows, "no run in this channel"
        return str(rows[0][0])

    def start(self, user: str, text: str = "") -> str:
        self.command(user, text)
        return self.run_id()

    def open_run(self, user: str, text: str = "") -> str:
        """Start a run and let the worker post it: where most tests begin."""
        run_id = self.start(user, text)
        self.work()
        return run_id

    def click(self, user: str, action_id: str, run_id: str | None = None, **kwargs: Any) -> Any:
        body = block_action_body(
            user_id=user,
            channel_id=self.channel_id,
            action_id=action_id,
            value=run_id or self.run_id(),
            response_url=self._response_url(user),
            trigger_id=self.slack.trigger_id(),
            **kwargs,
        )
        result = self.web.post("/slack/interactions", body)
        assert result.status_code == 200, result.text
        return result

    def click_and_work(
        self, user: str, action_id: str, run_id: str | None = None, **kwargs: Any
    ) -> None:
        """A click, then the jobs it queued (posts, updates, DMs) run."""
        self.click(user, action_id, run_id, **kwargs)
        self.work()

    def submit(
        self, user: str, text: str, *, volunteer: bool = False, run_id: str | None = None
    ) -> dict[str, Any] | None:
        body = view_submission_body(
            user_id=user, run_id=run_id or self.run_id(), order_text=text, volunteer=volunteer
        )
        result = self.web.post("/slack/interactions", body)
        assert result.status_code == 200, result.text
        return json.loads(result.text) if result.text else None

    def submit_and_work(
        self, user: str, text: str, *, volunteer: bool = False, run_id: str | None = None
    ) -> None:
        """An order from the form, then the jobs it queued (the message refresh) run."""
        self.submit(user, text, volunteer=volunteer, run_id=run_id)
        self.work()

    def work(self) -> int:
        """Run due jobs now (in end-to-end tests the worker process does this itself)."""
        return self.worker.run_until_idle() if self.worker is not None else 0

    def status(self, run_id: str | None = None) -> str:
        rows = self.sql("SELECT status FROM runs WHERE id = %s", run_id or self.run_id())
        return str(rows[0][0])


def ensured_once(ensure: Callable[[Any], bool], first: Worker, second: Worker) -> None:
    """Two replicas starting at once each ensure a recurring job (`ensure` takes a
    connection): the first adds it, the second finds it queued and adds none."""
    with first.database.transaction() as conn:
        assert ensure(conn)
    with second.database.transaction() as conn:
        assert not ensure(conn), "one is queued already"
