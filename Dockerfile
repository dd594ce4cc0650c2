# syntax=docker/dockerfile:1
# One image, two commands: the web app (default CMD) and the worker (`python worker.py`).
# Build: docker build -t coffeebuddy:<version> .

# ---- builder: a self-contained virtualenv with the pinned runtime dependencies ----
FROM python:3.12.8-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# ---- runtime: the venv and the application code, run as an unprivileged user ----
FROM python:3.12.8-slim-bookworm AS runtime

# A numeric uid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 coffeebuddy \
    && useradd --system --uid 10001 --gid coffeebuddy --no-create-home \
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
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
# gunicorn.conf.py holds the settings (including no control socket: read-only root fs).
CMD ["gunicorn", "app:app", "--config", "gunicorn.conf.py"]
