"""gunicorn settings shared by the container and the dev runner."""

import os

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Sync workers: each request is one short transaction; Slack waits at most 3 s.
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app writes one JSON line per request itself
# /dev/shm keeps the worker heartbeat off a read-only root filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (tmpfs, not a temp file)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # Multiprocess metrics: forget the files of a worker that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


# gunicorn's own lines as JSON too, so every line the web process writes is one object.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "coffeebuddy.logs.JsonFormatter"}},
    # gunicorn merges this over its defaults, whose root logger names "console".
    "handlers": {
        name: {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
        for name in ("console", "error_console")
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}

# gunicorn >= 25 otherwise creates a control socket under $HOME, which fails on a read-only
# root filesystem; nothing here uses it.
control_socket_disable = True
