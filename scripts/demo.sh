#!/usr/bin/env bash
# Try the worker on this machine: installs what is missing, starts a local Kafka broker and
# PostgreSQL (no Docker needed), applies the schema, produces a synthetic stream in every input
# form (with duplicates, disorder and the spec's sample payloads), runs the worker until it has
# caught up, shows the summaries it wrote and published, then stops everything it started.
#
#   bash scripts/demo.sh                 # 200 messages
#   MESSAGES=5000 bash scripts/demo.sh   # more
#   KEEP_RUNNING=1 bash scripts/demo.sh  # leave the worker running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MESSAGES="${MESSAGES:-200}"
STATE="${ROOT}/.local/demo"
export HTTP_PORT="${HTTP_PORT:-8080}"

bash scripts/setup.sh
BIN="${ROOT}/.venv/bin"
log() { printf '\n[demo] %s\n' "$*"; }

rm -rf "${STATE}" && mkdir -p "${STATE}"
log "starting Kafka and PostgreSQL (state in ${STATE})"
"${BIN}/python" -m devstack up --state-dir "${STATE}" >"${STATE}/devstack.log" 2>&1 &
stack_pid=$!
worker_pid=""
cleanup() {
    [ -n "${worker_pid}" ] && kill -TERM "${worker_pid}" 2>/dev/null && wait "${worker_pid}" || true
    kill -TERM "${stack_pid}" 2>/dev/null && wait "${stack_pid}" || true
}
trap cleanup EXIT
for _ in $(seq 1 120); do
    [ -f "${STATE}/env" ] && break
    kill -0 "${stack_pid}" 2>/dev/null || { cat "${STATE}/devstack.log"; exit 1; }
    sleep 1
done
# shellcheck disable=SC1091
source "${STATE}/env"
echo "KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS}  DATABASE_URL=${DATABASE_URL}"

log "migrate, create topics"
"${BIN}/delivery-receipts-worker" migrate
"${BIN}/delivery-receipts-worker" create-topics --partitions 3

log "producing ${MESSAGES} messages' receipts in all input forms (a third of their outcomes as"
log "Messaging status events, docs/design.md \"Input forms\"), 20 plain-SMS status events, plus"
log "the sample payloads"
"${BIN}/delivery-receipts-worker" produce --messages "${MESSAGES}" --messaging-share 0.33 --plain-sms 20
samples=()
for f in tests/samples/*; do samples+=(--file "$f"); done
"${BIN}/delivery-receipts-worker" produce "${samples[@]}"
"${BIN}/delivery-receipts-worker" produce --file <(printf '{"not": "a receipt"}')

log "running the worker (metrics on http://127.0.0.1:${HTTP_PORT}/metrics)"
"${BIN}/delivery-receipts-worker" run >"${STATE}/worker.log" 2>&1 &
worker_pid=$!
metric() {  # one sample's value, or nothing while the endpoint is not up yet
    { curl -fsS "http://127.0.0.1:${HTTP_PORT}/metrics" 2>/dev/null || true; } | awk -v m="$1" '$1 == m {print $2}'
}
for _ in $(seq 1 120); do
    lag=$(metric delivery_worker_consumer_lag_records); consumed=$(metric delivery_worker_records_consumed_total)
    backlog=$(metric delivery_worker_outbox_backlog_rows)
    if [ "${lag:-x}" = "0.0" ] && [ "${consumed:-0.0}" != "0.0" ] && [ "${backlog:-x}" = "0.0" ]; then break; fi
    kill -0 "${worker_pid}" 2>/dev/null || { cat "${STATE}/worker.log"; exit 1; }
    sleep 1
done
grep '"progress"\|"partitions adopted"' "${STATE}/worker.log" | tail -3 || true

log "message summaries in PostgreSQL (view message_delivery), busiest first"
psql "${DATABASE_URL}" -c "SELECT message_sid, total, sent, delivered, read, failed, undelivered, version
                            FROM message_delivery ORDER BY total DESC, message_sid LIMIT 8"
psql "${DATABASE_URL}" -c "SELECT channel, count(*) AS receipts,
                                  round(avg((status IN ('delivered','read'))::int), 3) AS delivered_ratio
                            FROM delivery_receipts GROUP BY channel ORDER BY channel"

log "the first summary-changed events on the summary topic"
"${BIN}/delivery-receipts-worker" tail --limit 3

log "worker metrics (excerpt)"
curl -fsS "http://127.0.0.1:${HTTP_PORT}/metrics" | grep -E '^delivery_(worker_(records_consumed|events_applied|dead_letters|events_skipped|status_events|pending_status)|receipt_stage_reached)' | head -24

if [ "${KEEP_RUNNING:-0}" = "1" ]; then
    log "worker still running; Ctrl-C stops it and the services"
    wait "${worker_pid}"
fi
log "stopping (SIGTERM)"
