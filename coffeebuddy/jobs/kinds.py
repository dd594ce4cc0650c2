"""Every kind of job, declared once: its handler, how many attempts it gets, and what
happens when it dies (`on_dead`). The worker runs whatever is declared here and knows
nothing about any one kind. The names live in `coffeebuddy.store.queue`, so that services
can enqueue without importing the handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coffeebuddy.jobs import handlers, maintenance, reminder_handlers, undelivered
from coffeebuddy.jobs.context import Context, Handler
from coffeebuddy.slack.api import SlackFailure
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job

# What runs once a job of the kind is dead: (context, job, error code, Slack's failure).
DeadHook = Callable[[Context, Job, str, SlackFailure | None], None]


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    # The most attempts a job of this kind gets (a job's own `max_attempts` may say fewer).
    attempts: int = queue.DEFAULT_MAX_ATTEMPTS
    on_dead: DeadHook | None = None
    # Work a burst of requests leaves behind: it waits until the burst pauses
    # (`coffeebuddy.store.queue.Pacing`; the web enqueues it due that pause later).
    paced: bool = False


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        # A run's messages in its channel, and the runner's DM.
        JobKind(
            queue.POST_RUN_MESSAGE,
            handlers.post_run_message,
            on_dead=undelivered.RUN_MESSAGE,
            paced=True,
        ),
        JobKind(queue.REFRESH_RUN_MESSAGE, handlers.refresh_run_message),
        JobKind(queue.POST_SUMMARY, handlers.post_summary, on_dead=undelivered.SUMMARY),
        JobKind(queue.DM_RUNNER, handlers.dm_runner, on_dead=undelivered.RUNNER_DM),
        JobKind(queue.REPLACE_MESSAGE, handlers.replace_message),
        # After "I can't go".
        JobKind(queue.UPDATE_SUMMARY, handlers.update_summary),
        JobKind(queue.POST_RUNNER_CHANGE, handlers.post_runner_change),
        JobKind(queue.REMIND_NEW_RUNNER, reminder_handlers.remind_new_runner),
        # Reminders.
        JobKind(queue.RUNNER_REMINDER, reminder_handlers.runner_reminder),
        JobKind(queue.LAST_CALL, reminder_handlers.last_call),
        # One person's: an answer, their Home tab, their profile, their inboxed action.
        JobKind(queue.NOTIFY_USER, handlers.notify_user, attempts=4),
        JobKind(queue.PUBLISH_HOME, handlers.publish_home, attempts=4),
        JobKind(queue.WARM_PROFILE, handlers.warm_profile, attempts=3),
        JobKind(queue.APPLY_ACTION, handlers.apply_action, attempts=4, paced=True),
        # The worker's own housekeeping runs as jobs too, so it is leased, retried and
        # visible like any other job.
        JobKind(queue.PRUNE_JOBS, maintenance.prune_job),
        JobKind(queue.RETENTION_PURGE, maintenance.retention_job),
    )
}


def allowed_attempts(kind: JobKind | None, job_max_attempts: int) -> int:
    """The most attempts a job gets: its own `max_attempts`, or fewer if its kind says so."""
    return min(job_max_attempts, kind.attempts) if kind else job_max_attempts
