# One image, two commands: the web app (default CMD) and the worker (`python worker.py`).
# Build: docker build -t coffeebuddy:<version> .   (or: buildah bud -t coffeebuddy:<version> .)
# No `# syntax=` line: it makes BuildKit pull a frontend image, which an offline builder can't.
# scripts/build-image builds this file and smoke-runs the image on every test run.

# The base, pinned by release. For production, pin it by digest too, so a re-pushed tag
# can't change the image under the same version:
#   docker build --build-arg PYTHON_IMAGE=python:3.12.8-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.12.8-slim-bookworm` prints the digest.)
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# ---- builder: a self-contained virtualenv with the pinned runtime dependencies ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv gets no pip of its own: the base image's pip installs into it, so the runtime
# ships no installer.
RUN python -m venv --without-pip /opt/venv

COPY requirements.txt /tmp/requirements.txt
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir -r /tmp/requirements.txt

# ---- runtime: the venv and the application code, run as an unprivileged user ----
FROM ${PYTHON_IMAGE} AS runtime

# A numeric uid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
# --key SYS_UID_MAX: 10001 is above the system-uid range, which useradd warns about.
RUN groupadd --system --key SYS_GID_MAX=10001 --gid 10001 coffeebuddy \
    && useradd --system --key SYS_UID_MAX=10001 --uid 10001 --gid coffeebuddy --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin coffeebuddy

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root: the app user can read it but never change it.
COPY app.py worker.py gunicorn.conf.py ./
COPY coffeebuddy/ ./coffeebuddy/
COPY sql/ ./sql/
COPY --chmod=0755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# Bytecode compiled once at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q /app/app.py /app/worker.py /app/gunicorn.conf.py /app/coffeebuddy

USER 10001:10001
# 8080: the web app. 9102: the worker's /metrics and health probes.
EXPOSE 8080 9102

ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
# gunicorn.conf.py holds the settings (including no control socket: read-only root fs).
CMD ["gunicorn", "app:app", "--config", "gunicorn.conf.py"]
