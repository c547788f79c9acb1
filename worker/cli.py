"""Command line: `delivery-receipts-worker COMMAND` (also `python -m worker COMMAND`).

This module is the parser and the dispatch; each command's work is in worker/commands/.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

import prometheus_client

from worker import __version__
from worker.commands import ops, serve, topics
from worker.config import SETTINGS, ConfigError, Settings
from worker.logs import configure_logging

if TYPE_CHECKING:
    # worker.api imports aiohttp and asyncpg; only the api command needs them at run time.
    from worker.api.credentials import Credentials

log = logging.getLogger("worker")

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
_HELP_WIDTH = 79


def _settings_help() -> str:
    """The --help list of settings, rendered from their declarations in worker/config.py."""
    column = 2 + max(len(s.env) for s in SETTINGS) + 2
    lines = ["configuration (environment variables; flags override them) [default; allowed]:"]
    for setting in SETTINGS:
        spec, notes = setting.spec, []
        if setting.shown_default():
            notes.append(setting.shown_default())
        if spec.low is not None and spec.high is not None:
            notes.append(f"{spec.low}..{spec.high}")
        if spec.choices:
            notes.append("|".join(spec.choices))
        text = spec.help + (f" [{'; '.join(notes)}]" if notes else "")
        text += " (required)" if setting.required else ""
        text += " (secret)" if setting.secret else ""
        lines += textwrap.wrap(
            text,
            _HELP_WIDTH,
            initial_indent=f"  {setting.env}".ljust(column),
            subsequent_indent=" " * column,
            break_on_hyphens=False,
        )
    lines.append("details: README.md (Running it); the api command: docs/api.md")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delivery-receipts-worker",
        description="Reduces Twilio Conversations delivery-receipt events from Kafka into "
        "PostgreSQL, Prometheus metrics and summary-changed events.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--bootstrap-servers", dest="kafka_bootstrap_servers", metavar="HOSTS")
    parser.add_argument("--database-url", dest="database_url", metavar="URL")
    parser.add_argument("--log-level", dest="log_level", metavar="LEVEL")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(sub)
    _add_topic_commands(sub)
    _add_offsets_commands(sub)
    _add_dlq_commands(sub)
    return parser


def _add_service_commands(sub: _Commands) -> None:
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


def _add_topic_commands(sub: _Commands) -> None:
    create = sub.add_parser("create-topics", help="create the input, summary and DLQ topics")
    create.add_argument("--partitions", type=int, default=6)
    create.add_argument("--replication-factor", type=int, default=1)

    produce = sub.add_parser(
        "produce", help="produce a synthetic stream (every input form, duplicates, disorder)"
    )
    produce.add_argument("--messages", type=int, default=100, help="messages to simulate")
    produce.add_argument("--seed", type=int, default=1)
    produce.add_argument("--duplicate-rate", type=float, default=0.1)
    produce.add_argument("--rate", type=float, default=0, help="events/s (0: as fast as possible)")
    produce.add_argument(
        "--messaging-share",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="send this share of the receipts' outcomes as Messaging status events instead "
        "(status callbacks and Event Streams messaging CloudEvents: docs/design.md, Input forms)",
    )
    produce.add_argument(
        "--plain-sms",
        type=int,
        default=0,
        metavar="N",
        help="add N status events of SMS sent outside Conversations (they join no receipt)",
    )
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


def _add_offsets_commands(sub: _Commands) -> None:
    actions = _operator_command(
        sub,
        "offsets",
        "show or reset the input offsets stored in PostgreSQL (Kafka's tools cannot)",
    )
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
    _add_json_flag(show)
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
    actions = _operator_command(sub, "dlq", "count dead letters by reason, or replay them")
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
    _add_json_flag(listing)
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


def _operator_command(sub: _Commands, name: str, summary: str) -> _Commands:
    """An operator command; worker/commands/ops.py dispatches on its ACTION (`args.action`)."""
    command = sub.add_parser(name, help=summary)
    return command.add_subparsers(dest="action", required=True, metavar="ACTION")


def _add_json_flag(report: argparse.ArgumentParser) -> None:
    """The flag of an operator report (`args.json`): JSON on stdout instead of a table."""
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")


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
    # The flags that are settings (the rest are arguments of one command).
    overrides = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
    try:
        settings = Settings.from_env(require=_REQUIRED[args.command], **overrides)
        # Checked before anything starts, so a misconfigured API never listens at all.
        credentials = _api_credentials(settings) if args.command == "api" else None
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"delivery-receipts-worker: configuration error: {problem}", file=sys.stderr)
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
    command = args.command
    if command == "offsets":
        return ops.offsets(args, settings)
    if command == "dlq":
        return ops.dlq(args, settings)
    if command == "migrate":
        serve.migrate(settings)
    elif command == "run":
        serve.run(settings)
    elif command == "api":
        serve.api(settings, credentials)
    elif command == "create-topics":
        topics.create_topics(settings, args.partitions, args.replication_factor)
    elif command == "produce":
        topics.produce(settings, args)
    elif command == "tail":
        topics.tail(settings, args.limit, args.timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
