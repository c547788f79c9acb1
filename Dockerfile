# syntax=docker/dockerfile:1
#
# delivery-receipts-worker image.
#
#   docker build -t delivery-receipts-worker \
#     --build-arg VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(git log -1 --format=%cI)" \
#     --build-arg SOURCE="https://github.example.com/messaging/delivery-receipts-worker" .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=... -e DATABASE_URL=... delivery-receipts-worker        # run
#   docker run --rm -e ... delivery-receipts-worker migrate
#   docker run --rm -e ... -p 8000:8000 delivery-receipts-worker api
#
# Two stages. "builder" installs the hash-checked build backends (requirements-build.lock,
# native/requirements-build.lock) into a build venv, the hash-checked runtime dependencies
# (requirements.lock), the compiled fast paths (native/, built here with the Rust toolchain of
# the rust image and Debian's C linker) and the project's wheel into /opt/venv, a venv created
# without pip. The final stage copies only /opt/venv onto the same base image, from which pip,
# setuptools and wheel are removed: no installer, no build backend, no compiler, no sources and
# no pip cache ship. Every dependency is installed from a binary wheel (--only-binary).

# The base image, pinned by the digest of its multi-arch index (python 3.11.16 on Debian 12
# "bookworm", slim), so that a rebuild gets the same bytes as today's until the pin is moved on
# purpose. The tag is informative only: with a digest, the tag is not looked up.
# Where it came from: no registry is reachable from the machines this project is developed on,
# so the digest was taken from public build records that resolved python:3.11-slim-bookworm
# (the rootless-build evidence of the public repository AetherAI3/agent-browser, and several
# public Dockerfiles pinning the same digest for 3.11.16-slim-bookworm).
# To refresh it, on a machine that reaches the registry:
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
#   (or: crane digest python:3.11-slim-bookworm; skopeo inspect docker://python:3.11-slim-bookworm)
# then replace the digest below, rebuild, and run the tests (docs/deploy.md, "The image").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:528257d48c1da0dcecc2e725d1ae34498d60c965f1241e39cd6a85a8859bdf84
# The Rust toolchain for native/ (Cargo.lock needs cargo >= 1.78), builder stage only. Where it
# came from: as above, a digest that public Dockerfiles pin for rust:1-slim-bookworm (two of them
# independently; it was not pulled from here). Refresh it the same way:
#   docker buildx imagetools inspect rust:1-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG RUST_IMAGE=rust:1-slim-bookworm@sha256:94e9efa4033213dbb70d4f665527e7ece3944ddb7ba1dd2e43f6fd6e2490af58

FROM ${RUST_IMAGE} AS rust

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
WORKDIR /src
# native/ is compiled by rustc, which links with the C compiler. Debian's security updates move
# these packages' versions, so they are not pinned; nothing of this stage but /opt/venv ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
# The build backend (setuptools, pinned in pyproject.toml's [build-system]) in a venv of its own,
# hash-checked like the runtime dependencies; the wheel is built with it, without build
# isolation, so nothing unpinned is fetched at build time. This venv stays in the builder.
COPY requirements-build.lock ./
COPY native/requirements-build.lock ./native/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: --no-deps \
       -r requirements-build.lock -r native/requirements-build.lock
# The runtime venv has no pip: the build venv's pip installs into it from outside (--python).
RUN python -m venv --without-pip /opt/venv
COPY requirements.lock ./
RUN /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes \
    --only-binary=:all: --no-deps -r requirements.lock
# The compiled fast paths: crates as Cargo.lock pins them (--locked). maturin's build backend
# runs the `maturin` executable of the build venv, so that venv goes first on PATH.
COPY native ./native
RUN PATH="/opt/build/bin:${PATH}" MATURIN_PEP517_ARGS="--locked" \
    /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels ./native
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index \
       /tmp/wheels/*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
# OCI annotations. Pass the real values at build time (see the top of this file); CREATED from
# the commit time keeps rebuilds of one commit identical.
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
ARG SOURCE=""
LABEL org.opencontainers.image.title="delivery-receipts-worker" \
      org.opencontainers.image.description="Twilio Conversations delivery receipts: Kafka to PostgreSQL, summaries and metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="python:3.11-slim-bookworm"
# A fixed non-root UID/GID, the one the Helm chart's securityContext runs as. The base image's
# pip, setuptools and wheel (and ensurepip's bundled copies of them) are removed: nothing in the
# image installs packages at run time, and what is absent cannot be used or flagged by scanners.
ARG APP_UID=10001
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && rm -rf /usr/local/lib/python3.11/ensurepip/_bundled \
    && groupadd --system --gid "${APP_UID}" worker \
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
