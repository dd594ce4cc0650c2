"""A worker, once built, exports every job kind and outcome at zero (issue 13, item 11),
so the job alerts see zero rather than nothing before the first job runs."""

from __future__ import annotations

from coffeebuddy import metrics
from coffeebuddy.jobs.kinds import KINDS
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.store.queue import PRUNE_JOBS, RETENTION_PURGE
from tests.unit.test_metrics_zero import _samples


def test_a_worker_exports_every_job_kind_and_outcome(worker: Worker) -> None:
    exported = _samples()
    for kind in [*KINDS, PRUNE_JOBS, RETENTION_PURGE]:
        for outcome in metrics.JOB_OUTCOMES:
            assert ("coffeebuddy_jobs_total", (kind, outcome)) in exported
