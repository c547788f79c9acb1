"""Command line for the local stack: ``python -m devstack fetch|up``.

``fetch`` only resolves Kafka's jars into the cache (setup and CI warm-up); ``up`` runs a
Kafka broker and a PostgreSQL server in the foreground until interrupted, and publishes
their addresses as shell ``export`` lines for the worker and for other terminals.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from devstack.kafka import KafkaBroker
from devstack.kafka_jars import KAFKA_VERSION, LOG4J_VERSION, ensure_kafka_jars
from devstack.postgres import PostgresServer

DEFAULT_STATE_DIR = Path(".local/devstack")


def _cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    jars = ensure_kafka_jars(args.cache_dir)
    print(
        f"Kafka {KAFKA_VERSION} (log4j {LOG4J_VERSION}) jars ready in {jars} "
        f"({time.monotonic() - started:.1f}s)"
    )
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    # Installed before anything starts so a Ctrl-C during startup still tears down
    # whatever is already running instead of leaving it orphaned.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    env_file = state_dir / "env"

    broker = KafkaBroker(port=args.kafka_port, jars_dir=ensure_kafka_jars(args.cache_dir))
    postgres = PostgresServer(
        port=args.postgres_port,
        fsync=not args.no_fsync,
        synchronous_commit=True,
    )
    try:
        print(f"starting PostgreSQL on 127.0.0.1:{postgres.port} ...", file=sys.stderr)
        postgres.start()
        if stop_requested.is_set():
            return 130
        print(f"starting Kafka {KAFKA_VERSION} on {broker.bootstrap_servers} ...", file=sys.stderr)
        broker.start()
        if stop_requested.is_set():
            return 130

        _publish(broker, postgres, env_file)
        return _watch(broker, postgres, stop_requested)
    finally:
        # A stale env file would point a later `source` at ports nobody listens on.
        env_file.unlink(missing_ok=True)
        broker.close()
        postgres.close()


def _publish(broker: KafkaBroker, postgres: PostgresServer, env_file: Path) -> None:
    """Print the servers' addresses as `export` lines, and write them to ``env_file``."""
    exports = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DATABASE_URL": postgres.dsn,
    }
    lines = [f"export {key}={shlex.quote(value)}" for key, value in exports.items()]
    env_file.write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    print(
        f"# also written to {env_file} (source it from another shell)\n"
        f"# kafka log: {broker.log_path}\n"
        f"# postgres log: {postgres.log_path}\n"
        "# Ctrl-C to stop both",
        file=sys.stderr,
        flush=True,
    )


def _watch(broker: KafkaBroker, postgres: PostgresServer, stop_requested: threading.Event) -> int:
    """Until a stop is requested (0), or one server dies (1)."""
    while not stop_requested.wait(1.0):
        if not broker.is_running:
            print(f"Kafka exited unexpectedly; see {broker.log_path}", file=sys.stderr)
            return 1
        if not postgres.is_running:
            print(f"PostgreSQL exited unexpectedly; see {postgres.log_path}", file=sys.stderr)
            return 1
    print("stopping ...", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Local Kafka (KRaft, single node) and PostgreSQL for development and tests.",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="jar cache root (default: ~/.cache/delivery-receipts-worker)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch", help=f"download the Kafka {KAFKA_VERSION} jars into the cache")
    fetch.set_defaults(func=_cmd_fetch)

    up = sub.add_parser(
        "up",
        help="run Kafka and PostgreSQL in the foreground until Ctrl-C / SIGTERM",
        description=(
            "Start Kafka and PostgreSQL, print `export KAFKA_BOOTSTRAP_SERVERS=...` and "
            "`export DATABASE_URL=...`, write the same lines to <state-dir>/env, and keep "
            "running until SIGINT or SIGTERM. All data is deleted on exit."
        ),
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where the env file is written (default: {DEFAULT_STATE_DIR})",
    )
    up.add_argument("--kafka-port", type=int, default=None, help="client port (default: free)")
    up.add_argument("--postgres-port", type=int, default=None, help="port (default: free)")
    up.add_argument(
        "--no-fsync",
        action="store_true",
        help="run PostgreSQL with fsync=off (faster, not crash-safe against power loss)",
    )
    up.set_defaults(func=_cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
