"""JSON logs, one object per line, with the correlation id of the request or job.

Log calls pass the event name as the message and facts as `extra=`; only the keys in
`_ALLOWED` are written, so an order text or request body handed to a logger by mistake
never reaches the output.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
channel_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("channel_id", default=None)

# Facts a log line may carry. Everything else passed in `extra` is dropped.
_ALLOWED = frozenset(
    {
        "method",
        "path",
        "status",
        "latency_ms",
        "action",
        "kind",
        "job_id",
        "attempt",
        "error",
        "slack_error",
        "slack_method",
        "user_id",
        "migration",
        "worker_id",
        "count",
        "delay_s",
        "reference",
        "participants",
        "run_id",
        "rule",
        "process",
        "pid",
        "port",
        "reason",
        "team_id",
        "bytes",
        "step",
        "score",
        "changed",
        "event_type",
    }
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, var in (
            ("correlation_id", correlation_id),
            ("run_id", run_id),
            ("channel_id", channel_id),
        ):
            value = var.get()
            if value:
                entry[key] = value
        for key in _ALLOWED:
            if key in record.__dict__ and key not in entry:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and where it happened; messages of foreign exceptions
            # can quote the data they choked on, so they are left out.
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc_where"] = _where(record.exc_info[2])
        return json.dumps(entry, default=str, ensure_ascii=False)


def _where(tb: Any) -> str:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    code = last.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{last.tb_lineno}:{code.co_name}"


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library loggers can print request details (URLs with tokens, bodies); keep them quiet.
    for noisy in ("slack_sdk", "urllib3", "psycopg", "psycopg.pool", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def context(
    *, correlation: str | None = None, run: str | None = None, channel: str | None = None
) -> Iterator[None]:
    tokens = []
    if correlation is not None:
        tokens.append((correlation_id, correlation_id.set(correlation)))
    if run is not None:
        tokens.append((run_id, run_id.set(run)))
    if channel is not None:
        tokens.append((channel_id, channel_id.set(channel)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
