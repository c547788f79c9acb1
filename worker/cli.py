"""Command line: `delivery-receipts-worker COMMAND` (also `python -m worker COMMAND`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import prometheus_client

from worker import __version__
from worker.config import ConfigError, Settings
from worker.logs import configure_logging

if TYPE_CHECKING:
    # worker.api imports aiohttp and asyncpg; only the api command needs them at run time.
    from worker.api.credentials import Credentials

log = logging.getLogger("worker")

T = TypeVar("T")

_BOTH = ("kafka_bootstrap_servers", "database_url")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "migrate": ("database_url",),
    "run": _BOTH,
    "api": ("database_url",),
    "create-topics": ("kafka_bootstrap_servers",),
    "produce": ("kafka_bootstrap_servers",),
    "tail": ("kafka_bootstrap_servers",),
}
# Flags that are settings (the rest are arguments of one command).
_SETTINGS_FLAGS = frozenset(
    {
        "kafka_bootstrap_servers",
        "database_url",
        "log_level",
        "http_port",
        "input_topic",
        "consumer_group",
        "api_port",
    }
)

_ENV_HELP = """\
configuration (environment variables; flags override them):
  KAFKA_BOOTSTRAP_SERVERS  Kafka brokers, host:port[,host:port]      (required)
  DATABASE_URL             postgresql://user:pass@host:port/db        (required)
  INPUT_TOPIC              delivery events to consume       [delivery-events]
  SUMMARY_TOPIC            summary-changed events           [delivery-summaries]
  DLQ_TOPIC                dead letters                     [delivery-events.dlq]
  CONSUMER_GROUP           Kafka consumer group             [delivery-receipts-worker]
  HTTP_PORT                /metrics, /healthz, /readyz      [8080]
  BATCH_MAX_RECORDS, BATCH_TIMEOUT_MS, MAX_RECORD_BYTES, SHUTDOWN_GRACE_S,
  LIVENESS_TIMEOUT_S, LOG_LEVEL, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
  KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE,
  KAFKA_SSL_KEYFILE: see README.md
  api: API_HOST, API_PORT, API_AUTH_ACCOUNT_SID + API_AUTH_TOKEN and/or
  API_CREDENTIALS_FILE (required unless API_AUTH_DISABLED=true / --insecure-no-auth),
  API_PUBLIC_BASE_URL: see docs/api.md
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delivery-receipts-worker",
        description="Reduces Twilio Conversations delivery-receipt events from Kafka into "
        "PostgreSQL, Prometheus metrics and summary-changed events.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--bootstrap-servers", dest="kafka_bootstrap_servers", metavar="HOSTS")
    parser.add_argument("--database-url", dest="database_url", metavar="URL")
    parser.add_argument("--log-level", dest="log_level", metavar="LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="create or upgrade the PostgreSQL schema (idempotent)")

    run = sub.add_parser("run", help="consume the input topic until SIGTERM")
    run.add_argument("--http-port", dest="http_port", type=int, metavar="PORT")
    run.add_argument("--input-topic", dest="input_topic", metavar="TOPIC")
    run.add_argument("--consumer-group", dest="consumer_group", metavar="GROUP")

    api = sub.add_parser("api", help="serve the Twilio-shaped REST read API")
    api.add_argument("--port", dest="api_port", type=int, metavar="PORT")
    api.add_argument(
        "--insecure-no-auth",
        dest="api_auth_disabled",
        action="store_true",
        default=None,
        help="serve without credentials: anyone reaching the port reads every account's data "
        "(same as API_AUTH_DISABLED=true)",
    )

    topics = sub.add_parser("create-topics", help="create the input, summary and DLQ topics")
    topics.add_argument("--partitions", type=int, default=6)
    topics.add_argument("--replication-factor", type=int, default=1)

    produce = sub.add_parser(
        "produce", help="produce a synthetic stream (every input form, duplicates, disorder)"
    )
    produce.add_argument("--messages", type=int, default=100, help="messages to simulate")
    produce.add_argument("--seed", type=int, default=1)
    produce.add_argument("--duplicate-rate", type=float, default=0.1)
    produce.add_argument("--rate", type=float, default=0, help="events/s (0: as fast as possible)")
    produce.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="PATH",
        help="produce this file's bytes as one record instead (repeatable; e.g. a webhook body)",
    )

    tail = sub.add_parser("tail", help="print summary-changed events from the summary topic")
    tail.add_argument("--limit", type=int, default=10, help="stop after this many events")
    tail.add_argument("--timeout-s", type=float, default=10.0, help="stop after this long idle")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k
        not in (
            "command",
            "partitions",
            "replication_factor",
            "messages",
            "seed",
            "duplicate_rate",
            "rate",
        )
    }
    try:
        settings = Settings.from_env(require=_REQUIRED[args.command], **overrides)
        # Checked before anything starts, so a misconfigured API never listens at all.
        credentials = _api_credentials(settings) if args.command == "api" else None
    except ConfigError as exc:
        print(f"delivery-receipts-worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    # The *_created series double the series count and no dashboard or rule reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        _dispatch(args, settings, credentials)
    except Exception:
        # One JSON line with the traceback, then a non-zero exit for the orchestrator to see.
        log.exception("command failed", extra={"command": args.command})
        return 1
    return 0


def _api_credentials(settings: Settings) -> Credentials | None:
    from worker.api.credentials import load_credentials

    return load_credentials(settings)


def _dispatch(
    args: argparse.Namespace, settings: Settings, credentials: Credentials | None
) -> None:
    runner = _runner()
    if args.command == "migrate":
        from worker.migrate import apply_migrations

        applied = runner(apply_migrations(settings.database_url))
        log.info("migrations done", extra={"applied": applied})
    elif args.command == "run":
        from worker.service import run_worker

        runner(run_worker(settings))
    elif args.command == "api":
        runner(_serve_api(settings, credentials))
    elif args.command == "create-topics":
        runner(_create_topics(settings, args.partitions, args.replication_factor))
    elif args.command == "produce" and args.files:
        runner(_produce_files(settings, args.files))
    elif args.command == "produce":
        runner(_produce(settings, args.messages, args.seed, args.duplicate_rate, args.rate))
    elif args.command == "tail":
        runner(_tail(settings, args.limit, args.timeout_s))


def _runner() -> Callable[[Coroutine[Any, Any, T]], T]:
    """uvloop when installed (the `fast` extra): the event loop is a large share of the hot path."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


async def _serve_api(settings: Settings, credentials: Credentials | None) -> None:
    from worker.api import serve_api

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve_api(
        settings.database_url,
        settings.api_host,
        settings.api_port,
        credentials,
        stop,
        base_url=settings.api_public_base_url,
    )


async def _create_topics(settings: Settings, partitions: int, replication: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from worker.kafka import PRODUCER_MAX_REQUEST_BYTES, client_options

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        for name in (settings.input_topic, settings.summary_topic, settings.dlq_topic):
            configs = {"max.message.bytes": str(PRODUCER_MAX_REQUEST_BYTES)}
            try:
                await admin.create_topics(
                    [NewTopic(name, partitions, replication, topic_configs=configs)]
                )
                log.info("topic created", extra={"topic": name, "partitions": partitions})
            except TopicAlreadyExistsError:
                log.info("topic exists", extra={"topic": name})
    finally:
        await admin.close()


async def _produce(
    settings: Settings, messages: int, seed: int, duplicate_rate: float, rate: float
) -> None:
    from worker.kafka import create_producer
    from worker.loadgen import disorder, encode_mixed, generate_events

    records = encode_mixed(
        disorder(
            list(generate_events(messages, seed=seed)), seed=seed, duplicate_rate=duplicate_rate
        ),
        seed=seed,
    )
    producer = create_producer(settings)
    await producer.start()
    started = time.monotonic()
    try:
        for n, record in enumerate(records, 1):
            await producer.send(
                settings.input_topic, record.value, key=record.key, headers=record.headers
            )
            if rate > 0:
                ahead_s = n / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
            if n % 10000 == 0:
                log.info("producing", extra={"records": n, "of": len(records)})
        await producer.flush()
    finally:
        await producer.stop()
    log.info(
        "produced",
        extra={"records": len(records), "messages": messages, "topic": settings.input_topic},
    )


async def _produce_files(settings: Settings, paths: Sequence[str]) -> None:
    from pathlib import Path

    from worker.kafka import create_producer

    payloads = [(path, Path(path).read_bytes()) for path in paths]  # noqa: ASYNC240 (tiny, once)
    producer = create_producer(settings)
    await producer.start()
    try:
        for path, payload in payloads:
            await producer.send_and_wait(settings.input_topic, payload)
            log.info("produced file", extra={"path": path, "topic": settings.input_topic})
    finally:
        await producer.stop()


async def _tail(settings: Settings, limit: int, timeout_s: float) -> None:
    from aiokafka import AIOKafkaConsumer

    from worker.kafka import client_options

    consumer = AIOKafkaConsumer(
        settings.summary_topic, auto_offset_reset="earliest", **client_options(settings)
    )
    await consumer.start()
    printed = 0
    try:
        while printed < limit:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=limit)
            if not batch:
                break
            for record in (r for records in batch.values() for r in records):
                if printed < limit:
                    print((record.value or b"").decode(), flush=True)
                    printed += 1
    finally:
        await consumer.stop()


if __name__ == "__main__":
    sys.exit(main())
