#!/bin/sh
# Container entry point for both commands (gunicorn and `python worker.py`).
# prometheus-client's multiprocess mode needs an empty directory before any process starts:
# files left by an earlier run of the container would be counted again.
set -eu

dir="${PROMETHEUS_MULTIPROC_DIR:-}"
if [ -n "$dir" ]; then
    case "$dir" in
        /?*) ;;
        *)
            echo "docker-entrypoint: PROMETHEUS_MULTIPROC_DIR must be an absolute path other than /, got '$dir'" >&2
            exit 64
            ;;
    esac
    mkdir -p -- "$dir"
    find "$dir" -mindepth 1 -delete
fi

exec "$@"
