"""What happens when a run's message will never reach Slack (its job is dead): keep the
run's status honest and tell the person who acted what to do. These are the `on_dead`
hooks of the kinds that post a run's messages (see `coffeebuddy.jobs.kinds`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from coffeebuddy.jobs.context import Context
from coffeebuddy.jobs.delivery import send_ephemeral
from coffeebuddy.metrics import RUNS
from coffeebuddy.service.closing import fail_run
from coffeebuddy.slack.api import SlackFailure, failure_category
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import load_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Undelivered:
    """One kind of lost message, in the words of the warning its person reads."""

    # "run message", "summary", "runner's DM"
    what: str
    # The warning's first sentence.
    prefix: str
    # What the person should do, in "Please {again} in a minute".
    again: str
    # The run fails when it is still in one of these; empty: the run stays as it is.
    fail_from: tuple[str, ...] = ()

    def __call__(self, ctx: Context, job: Job, code: str, failure: SlackFailure | None) -> None:
        reference = job.correlation_id or str(job.id)
        hint = failure.hint if failure else None
        run_id = job.payload["run_id"]
        failed = False
        with ctx.database.transaction() as conn:
            record = load_run(conn, run_id)
            if record is None:
                return
            channel = record.view.slack_channel_id
            if self.fail_from:
                failed = fail_run(
                    conn,
                    run_id,
                    reason=f"Slack did not accept the {self.what} ({code})",
                    category=failure_category(failure),
                    from_statuses=list(self.fail_from),
                    channel_id=channel,
                    # The run's own, which its events carry, even if this job had none.
                    correlation_id=record.correlation_id,
                )
        if failed:
            RUNS.labels("failed").inc()
        text = hint or (
            f"I couldn't send the coffee {self.what}: Slack kept failing or timing out. Please "
            f"{self.again} in a minute (reference `{reference}`)."
        )
        who = {
            "response_url": job.payload.get("response_url"),
            "channel": channel,
            # Whoever acted: the person who typed /coffee, or who closed the run.
            "user": job.payload.get("actor") or record.view.initiator_slack_id,
        }
        _tell_quietly(ctx, who, f"⚠️ {self.prefix} {text}")


def _tell_quietly(ctx: Context, who: dict[str, Any], text: str) -> None:
    try:
        send_ephemeral(ctx, who, text)
    except Exception as exc:
        log.warning("tell_failed", extra={"error": type(exc).__name__})


RUN_MESSAGE = Undelivered(
    what="run message",
    prefix="The coffee run couldn't start.",
    again="try `/coffee` again",
    fail_from=("open",),
)
SUMMARY = Undelivered(
    what="summary",
    prefix="The coffee summary couldn't be sent.",
    again="try again",
    fail_from=("closed",),
)
RUNNER_DM = Undelivered(
    what="runner's DM", prefix="The coffee runner's DM couldn't be sent.", again="try again"
)
