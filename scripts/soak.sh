#!/usr/bin/env bash
# The long version of the fault tests (tests/reliability/test_faults.py, test_partitioning.py,
# and the concurrent-writer test of the store): every fault at soak
# sizes, repeated SOAK_ROUNDS times with different stream seeds and kill instants. Real Kafka
# and PostgreSQL are started and stopped by the test fixtures, as in CI.
#
#   bash scripts/soak.sh                    # defaults below (about 5 minutes a round here)
#   SOAK_ROUNDS=1 RELIABILITY_KILL_CYCLES=100 bash scripts/soak.sh -k kill9
#
# Every size is an environment variable; extra arguments go to pytest. See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/pytest ] || bash scripts/setup.sh

# The issue's sizes are the floor: at least 20 kill -9 cycles over at least 50,000 events.
export RELIABILITY_KILL_CYCLES="${RELIABILITY_KILL_CYCLES:-40}"
export RELIABILITY_KILL_EVENTS="${RELIABILITY_KILL_EVENTS:-100000}"
export RELIABILITY_CRASH_EVENTS="${RELIABILITY_CRASH_EVENTS:-20000}"
export RELIABILITY_CHURN_CYCLES="${RELIABILITY_CHURN_CYCLES:-20}"
export RELIABILITY_CHURN_EVENTS="${RELIABILITY_CHURN_EVENTS:-50000}"
export RELIABILITY_ZOMBIE_ATTEMPTS="${RELIABILITY_ZOMBIE_ATTEMPTS:-8}"
export RELIABILITY_OUTAGE_EVENTS="${RELIABILITY_OUTAGE_EVENTS:-50000}"
export RELIABILITY_OUTAGE_SECONDS="${RELIABILITY_OUTAGE_SECONDS:-20}"
export RELIABILITY_OUTBOX_EVENTS="${RELIABILITY_OUTBOX_EVENTS:-50000}"
export RELIABILITY_SIGTERM_EVENTS="${RELIABILITY_SIGTERM_EVENTS:-50000}"
export RELIABILITY_SIGTERM_ROUNDS="${RELIABILITY_SIGTERM_ROUNDS:-5}"
export CONCURRENT_STORE_SEEDS="${CONCURRENT_STORE_SEEDS:-40}"
export RELIABILITY_KEYING_EVENTS="${RELIABILITY_KEYING_EVENTS:-40000}"
export RELIABILITY_PARTITION_CYCLES="${RELIABILITY_PARTITION_CYCLES:-40}"
export RELIABILITY_PARTITION_EVENTS="${RELIABILITY_PARTITION_EVENTS:-120000}"
rounds="${SOAK_ROUNDS:-3}"

for round in $(seq 1 "$rounds"); do
    # A different seed per round: other streams, other kill instants, other victims.
    export RELIABILITY_SEED="$((round * 1000))"
    # The broker is stopped gracefully in even rounds and SIGKILLed in odd ones.
    export RELIABILITY_BROKER_KILL="${SOAK_BROKER_KILL:-$((round % 2))}"
    echo "== soak round $round/$rounds (RELIABILITY_SEED=$RELIABILITY_SEED," \
        "RELIABILITY_BROKER_KILL=$RELIABILITY_BROKER_KILL)"
    started=$(date +%s)
    .venv/bin/pytest tests/reliability/test_faults.py tests/reliability/test_partitioning.py \
        tests/integration/test_concurrent_store.py -p no:cacheprovider \
        -q -rA "$@"
    echo "== round $round passed in $(($(date +%s) - started))s"
done
