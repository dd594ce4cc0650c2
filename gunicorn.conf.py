"""gunicorn settings shared by the container and the dev runner."""

import os
import shutil
import tempfile

# prometheus_client is imported lazily (in child_exit): it picks its single- or
# multi-process mode when first imported, which must come after on_starting below.

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


_private_metrics_dir = None


def on_starting(server):  # type: ignore[no-untyped-def]
    # With several workers and no PROMETHEUS_MULTIPROC_DIR, each scrape would see only the
    # counters of whichever worker answered. A private directory, made before the workers
    # fork and removed on exit, keeps /metrics right however gunicorn is started.
    global _private_metrics_dir
    if server.cfg.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _private_metrics_dir = tempfile.mkdtemp(prefix="coffeebuddy-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _private_metrics_dir


def on_exit(server):  # type: ignore[no-untyped-def]
    if _private_metrics_dir is not None:
        shutil.rmtree(_private_metrics_dir, ignore_errors=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # Multiprocess metrics: forget the files of a worker that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

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
