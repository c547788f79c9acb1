# syntax=docker/dockerfile:1
#
# delivery-receipts-worker image.
#
#   docker build -t delivery-receipts-worker .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=... -e DATABASE_URL=... delivery-receipts-worker        # run
#   docker run --rm -e ... delivery-receipts-worker migrate
#   docker run --rm -e ... -p 8000:8000 delivery-receipts-worker api
#
# Two stages: "builder" installs the pinned, hash-checked dependencies of requirements.lock
# and the project's wheel into a virtualenv; the final stage copies only that virtualenv onto
# a fresh slim Python image, so neither pip caches nor build tools nor the sources ship.
# Every dependency is installed from a binary wheel (--only-binary): no compiler is needed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-deps --no-index /tmp/wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="delivery-receipts-worker" \
      org.opencontainers.image.description="Twilio Conversations delivery receipts: Kafka to PostgreSQL, summaries and metrics"
# A fixed non-root UID/GID, the one the Helm chart's securityContext runs as.
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" worker \
    && useradd --system --uid "${APP_UID}" --gid worker --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin worker
COPY --from=builder /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HTTP_PORT=8080 \
    API_PORT=8000
# The process needs no writable path but /tmp (an emptyDir under a read-only root in the chart).
USER 10001:10001
WORKDIR /tmp
# 8080: /metrics, /healthz, /readyz of `run`; 8000: the REST API of `api`.
EXPOSE 8080 8000
# Probes. Kubernetes ignores HEALTHCHECK: the chart probes /healthz (liveness: the consumer
# loop's progress watchdog, LIVENESS_TIMEOUT_S) and /readyz (readiness: Kafka and PostgreSQL
# reachable) on HTTP_PORT. For plain Docker/Compose this HEALTHCHECK polls the same /healthz of
# `run`; for `api` set HEALTHCHECK_PORT=8000 (its /healthz), for `migrate` it does not matter.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('HEALTHCHECK_PORT') or os.environ.get('HTTP_PORT', '8080'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# The worker is PID 1 and handles SIGTERM itself: it drains within SHUTDOWN_GRACE_S (default
# 20 s; the chart's terminationGracePeriodSeconds is above it). It starts no child processes,
# so no init (tini) is needed to reap zombies.
ENTRYPOINT ["delivery-receipts-worker"]
CMD ["run"]
