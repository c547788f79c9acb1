#!/usr/bin/env bash
# Installs what the tests need (idempotent), then runs every test: unit, integration (a real
# Kafka broker and PostgreSQL, started and stopped by the fixtures) and deployment checks.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -q`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/setup-deploy-tools.sh

echo "== lint: ruff, mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check worker devstack tests bench
.venv/bin/mypy

echo "== tests"
set +e
.venv/bin/pytest "${@:--ra}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
