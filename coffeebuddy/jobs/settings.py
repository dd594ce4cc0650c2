"""Settings only the worker process needs: its metrics port, how long finished jobs are
kept, how often the queue gauges are refreshed. Read from the environment like `Config`
and failing the same way (`ConfigError`, one line naming the variable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coffeebuddy.config import ConfigError


@dataclass(frozen=True)
class WorkerSettings:
    # Port of the worker's own /metrics endpoint; 0 serves none.
    metrics_port: int = 9102
    # `done` jobs are deleted this long after they finished; `dead` ones are kept longer
    # so that operators can look at them and retry them.
    job_retention_hours: int = 24
    dead_job_retention_days: int = 14
    # How often the queue gauges (depth, oldest due job, dead jobs) are read from the table.
    stats_interval_seconds: float = 15.0
    # How often the prune job runs, and how many rows one DELETE removes.
    prune_interval_seconds: float = 3600.0
    prune_batch_size: int = 1000
    # A prune run stops after this many batches and comes back soon for the rest, so a
    # huge backlog never holds one job (and its lease) for long.
    prune_max_batches: int = 50

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> WorkerSettings:
        return cls(
            metrics_port=_int(env, "COFFEEBUDDY_WORKER_METRICS_PORT", 9102, 0, 65535),
            job_retention_hours=_int(env, "COFFEEBUDDY_JOB_RETENTION_HOURS", 24, 1, 24 * 365),
            dead_job_retention_days=_int(env, "COFFEEBUDDY_DEAD_JOB_RETENTION_DAYS", 14, 1, 365),
            stats_interval_seconds=_float(env, "COFFEEBUDDY_WORKER_STATS_SECONDS", 15.0, 0.1, 600),
        )


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= number <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {number}")
    return number


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= number <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {number}")
    return number
