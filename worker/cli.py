"""Command line: `delivery-receipts-worker COMMAND` (also `python -m worker COMMAND`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import prometheus_client

from worker import __version__
from worker.config import ConfigError, Settings
from worker.logs import configure_logging

if TYPE_CHECKING:
    # worker.api imports aiohttp and asyncpg; only the api command needs them at run time.
    from worker.api.credentials import Credentials

log = logging.getLogger("worker")

T = TypeVar("T")
# What add_subparsers returns.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_BOTH = ("kafka_bootstrap_servers", "database_url")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "migrate": ("database_url",),
    "run": _BOTH,
    "api": ("database_url",),
    "create-topics": ("kafka_bootstrap_servers",),
    "produce": ("kafka_bootstrap_servers",),
    "tail": ("kafka_bootstrap_servers",),
    "offsets": _BOTH,
    "dlq": ("kafka_bootstrap_servers",),
}
# Commands whose stdout is their result (tables, JSON): their log lines go to stderr.
_REPORTING = frozenset({"offsets", "dlq"})
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

    _add_offsets_commands(sub)
    _add_dlq_commands(sub)
    return parser


def _add_offsets_commands(sub: _Commands) -> None:
    offsets = sub.add_parser(
        "offsets",
        help="show or reset the input offsets stored in PostgreSQL (Kafka's tools cannot)",
    )
    actions = offsets.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show", help="stored offset, log start, log end and lag of every input partition"
    )
    reset = actions.add_parser(
        "reset",
        help="move the stored offsets; refused while the consumer group has live members",
        description="Write new stored offsets for the input topic (partitions without a row "
        "get one). Refused while the Kafka consumer group has live members, unless --force. "
        "Exit codes: 0 done, 2 bad arguments, 3 refused, 1 any other failure.",
    )
    for parser in (show, reset):
        parser.add_argument(
            "--group", dest="consumer_group", metavar="GROUP", help="default: CONSUMER_GROUP"
        )
        parser.add_argument(
            "--topic", dest="input_topic", metavar="TOPIC", help="default: INPUT_TOPIC"
        )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="each partition's log start")
    to.add_argument("--to-latest", action="store_true", help="each partition's end")
    to.add_argument(
        "--to-datetime",
        type=_iso_datetime,
        metavar="ISO",
        help="first record at or after this time (record timestamps; without one: the end)",
    )
    to.add_argument(
        "--to-offset",
        dest="to_offsets",
        type=_partition_offset,
        action="append",
        metavar="P:O",
        help="partition P to offset O (repeatable; other partitions keep theirs)",
    )
    reset.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    reset.add_argument(
        "--force", action="store_true", help="reset even while workers of the group run"
    )


def _add_dlq_commands(sub: _Commands) -> None:
    dlq = sub.add_parser("dlq", help="count dead letters by reason, or replay them")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="dead letters by reason, with first and last failure time"
    )
    replay = actions.add_parser(
        "replay",
        help="put dead letters back on the input topic: original key, value and headers",
    )
    for parser in (listing, replay):
        parser.add_argument(
            "--since", type=_iso_datetime, metavar="ISO", help="only those failed at or after"
        )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    replay.add_argument(
        "--reason",
        dest="reasons",
        action="append",
        default=[],
        metavar="R",
        help="only this dlq.reason (repeatable)",
    )
    replay.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N (partition, offset order)"
    )
    replay.add_argument("--dry-run", action="store_true", help="count what would go, send nothing")


def _iso_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time; one without an offset is UTC, like the event dates."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date-time: {text!r} (e.g. 2026-03-01T12:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _partition_offset(text: str) -> tuple[int, int]:
    from worker.offsets_admin import parse_partition_offset

    try:
        return parse_partition_offset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


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
    configure_logging(
        settings.log_level, stream=sys.stderr if args.command in _REPORTING else sys.stdout
    )
    # The *_created series double the series count and no dashboard or rule reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        return _dispatch(args, settings, credentials)
    except Exception:
        # One JSON line with the traceback, then a non-zero exit for the orchestrator to see.
        log.exception("command failed", extra={"command": args.command})
        return 1


def _api_credentials(settings: Settings) -> Credentials | None:
    from worker.api.credentials import load_credentials

    return load_credentials(settings)


def _dispatch(args: argparse.Namespace, settings: Settings, credentials: Credentials | None) -> int:
    runner = _runner()
    if args.command == "offsets":
        return _offsets(args, settings)
    if args.command == "dlq":
        return _dlq(args, settings)
    if args.command == "migrate":
        from worker.migrate import apply_migrations

        applied = runner(apply_migrations(settings.database_url))
        log.info("migrations done", extra={"applied": applied})
    elif args.command == "run":
        from worker.service import run_worker, tune_gc

        tune_gc()
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
    return 0


def _fail(message: str, code: int) -> int:
    print(f"delivery-receipts-worker: {message}", file=sys.stderr)
    return code


def _offsets(args: argparse.Namespace, settings: Settings) -> int:
    from worker import offsets_admin as oa
    from worker.kafka import TopicNotFound

    runner = _runner()
    try:
        if args.action == "show":
            report = runner(oa.show_offsets(settings))
            print(_json(report.to_json()) if args.json else oa.render_report(report))
            return 0
        target: oa.ResetTarget
        if args.to_earliest:
            target = oa.ToEarliest()
        elif args.to_latest:
            target = oa.ToLatest()
        elif args.to_datetime is not None:
            target = oa.ToDatetime(args.to_datetime)
        else:
            target = oa.to_offsets(args.to_offsets)
        outcome = runner(oa.reset_offsets(settings, target, force=args.force, dry_run=args.dry_run))
    except oa.InvalidTarget as exc:
        return _fail(str(exc), 2)
    except oa.ResetRefused as exc:
        return _fail(f"offsets reset refused: {exc}", 3)
    except TopicNotFound as exc:
        return _fail(str(exc), 1)
    print(oa.render_outcome(outcome))
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from worker import dlq_admin as da
    from worker.kafka import TopicNotFound

    runner = _runner()
    try:
        if args.action == "list":
            listing = runner(da.list_dead_letters(settings, da.Selection(since=args.since)))
            print(_json(listing.to_json()) if args.json else da.render_listing(listing))
            return 0
        selection = da.Selection(frozenset(args.reasons), args.since)
        outcome = runner(
            da.replay_dead_letters(settings, selection, limit=args.limit, dry_run=args.dry_run)
        )
    except (TopicNotFound, da.DlqReadError) as exc:
        return _fail(str(exc), 1)
    print(da.render_replay(outcome))
    return 0


def _json(value: object) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


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
