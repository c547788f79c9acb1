"""Security basics, for real: TLS and SCRAM to Kafka, TLS to PostgreSQL.

A throwaway CA (tests/reliability/credentials.py) signs a certificate for 127.0.0.1. A
PostgreSQL with ssl=on that only accepts TLS (pg_hba: hostssl, SCRAM passwords) serves the
worker's `migrate` and `run` with sslmode=verify-full; a Kafka broker with SASL_PLAINTEXT and
SASL_SSL listeners (SCRAM credentials added when its storage is formatted) serves the worker end
to end. The worker's JSON logs and its dead letters must never contain the Kafka or database
password."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from devstack._util import free_port
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.progress import stored_offsets, wait_for
from devstack.streams import produce
from devstack.topics import create_topics, read_topic
from devstack.workers import WorkerProcess
from tests.reliability.credentials import (
    DB_PASSWORD,
    DB_USER,
    KAFKA_PASSWORD,
    KAFKA_USER,
    ROOT,
    assert_no_secret,
    kafka_settings,
    make_pki,
)
from worker.config import Settings
from worker.kafka import client_options
from worker.loadgen import Record, encode_mixed, generate_events
from worker.reduction import coalesce


@pytest.fixture(scope="module")
def pki() -> Iterator[dict[str, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")
    # Not under pytest's tmp dirs: those are 0700 root, and PostgreSQL runs as its own user.
    directory = Path(tempfile.mkdtemp(prefix="worker-pki-"))
    try:
        yield _readable_by_postgres(make_pki(directory), directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _readable_by_postgres(paths: dict[str, Path], directory: Path) -> dict[str, Path]:
    if os.geteuid() == 0:
        # PostgreSQL runs as its own OS user and wants to own a 0600 key.
        import pwd

        pg = pwd.getpwnam("postgres")
        for path in (directory, *directory.iterdir()):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    paths["key"].chmod(0o600)
    directory.chmod(0o755)
    for name in ("ca", "other_ca", "cert", "bundle"):
        paths[name].chmod(0o644)
    return paths


# -- PostgreSQL with TLS only ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_postgres(pki: dict[str, Path]) -> Iterator[PostgresServer]:
    server = PostgresServer(
        fsync=False,
        extra_settings={
            "ssl": "on",
            "ssl_cert_file": f"'{pki['cert']}'",
            "ssl_key_file": f"'{pki['key']}'",
            "password_encryption": "'scram-sha-256'",
        },
    )
    with server:
        # Only TLS over TCP: the admin (postgres) by trust, the worker by SCRAM password.
        (server.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all postgres 127.0.0.1/32 trust\n"
            f"hostssl all {DB_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 0.0.0.0/0 reject\n"
        )
        server.psql("SELECT pg_reload_conf()")
        server.psql(
            "CREATE ROLE :\"user\" LOGIN PASSWORD :'password'",
            variables={"user": DB_USER, "password": DB_PASSWORD},
        )
        server.create_database("secure")
        server.psql('ALTER DATABASE secure OWNER TO :"user"', variables={"user": DB_USER})
        yield server


def worker_dsn(
    server: PostgresServer, ca: Path, *, host: str = "127.0.0.1", mode: str = "verify-full"
) -> str:
    return (
        f"postgresql://{DB_USER}:{DB_PASSWORD}@{host}:{server.port}/secure"
        f"?sslmode={mode}&sslrootcert={ca}"
    )


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=ROOT,
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _spawn_worker(env: dict[str, str], log_path: Path) -> WorkerProcess:
    return WorkerProcess(
        "worker",
        {**_base_env(), **env},
        log_path,
        int(env["HTTP_PORT"]),
        command=[sys.executable, "-m", "worker", "run"],
        cwd=ROOT,
    )


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep} | {"PYTHONPATH": str(ROOT)}


async def test_postgres_tls_verify_full(tls_postgres: PostgresServer, pki: dict[str, Path]) -> None:
    good = run_cli(
        "migrate", env={"DATABASE_URL": worker_dsn(tls_postgres, pki["ca"]), "LOG_LEVEL": "DEBUG"}
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert_no_secret(good.stdout, good.stderr)

    conn = await asyncpg.connect(worker_dsn(tls_postgres, pki["ca"]))
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") >= 1
    finally:
        await conn.close()

    failures = {
        "untrusted CA": worker_dsn(tls_postgres, pki["other_ca"]),
        "host name not in the certificate": worker_dsn(tls_postgres, pki["ca"], host="localhost"),
        "plaintext refused by the server": worker_dsn(tls_postgres, pki["ca"], mode="disable"),
    }
    for what, dsn in failures.items():
        bad = run_cli("migrate", env={"DATABASE_URL": dsn})
        assert bad.returncode != 0, what
        assert_no_secret(bad.stdout, bad.stderr)
    with pytest.raises((ssl.SSLCertVerificationError, OSError)):
        await asyncpg.connect(failures["host name not in the certificate"])


# -- Kafka with SCRAM, over plaintext and over TLS -------------------------------------------


@dataclasses.dataclass(frozen=True)
class SecureKafka:
    broker: KafkaBroker
    plaintext: str  # for the tests' own admin work
    sasl_plaintext: str
    sasl_ssl: str


@pytest.fixture(scope="module")
def secure_kafka(pki: dict[str, Path]) -> Iterator[SecureKafka]:
    port, sasl_port, ssl_port, controller = free_port(), free_port(), free_port(), free_port()
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    listeners = {
        "PLAINTEXT": port,
        "SASL_PLAINTEXT": sasl_port,
        "SASL_SSL": ssl_port,
    }
    props = {
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items())
        + f",CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in listeners.items()),
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
        ),
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(pki["bundle"]),
    }
    for listener in ("sasl_plaintext", "sasl_ssl"):
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            props[f"listener.name.{listener}.{mechanism}.sasl.jaas.config"] = jaas
    scram = [
        arg
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        for arg in ("--add-scram", f"{mechanism}=[name={KAFKA_USER},password={KAFKA_PASSWORD}]")
    ]
    broker = KafkaBroker(
        port=port,
        controller_port=controller,
        heap_max="384m",
        extra_properties=props,
        format_args=scram,
    )
    with broker:
        yield SecureKafka(
            broker,
            f"127.0.0.1:{port}",
            f"127.0.0.1:{sasl_port}",
            f"127.0.0.1:{ssl_port}",
        )


async def _try_produce(settings: Settings, topic: str) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **client_options(settings))
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait(topic, b"ping"), 30)
    finally:
        await producer.stop()


async def test_kafka_scram_and_tls_client_options(
    secure_kafka: SecureKafka, pki: dict[str, Path]
) -> None:
    topic = f"secure-ping-{uuid.uuid4().hex[:8]}"
    await create_topics(secure_kafka.plaintext, [topic], partitions=1)
    ok = [
        (secure_kafka.sasl_plaintext, "SASL_PLAINTEXT", "SCRAM-SHA-256", None),
        (secure_kafka.sasl_plaintext, "SASL_PLAINTEXT", "SCRAM-SHA-512", None),
        (secure_kafka.sasl_ssl, "SASL_SSL", "SCRAM-SHA-256", pki["ca"]),
    ]
    for bootstrap, protocol, mechanism, ca in ok:
        await _try_produce(
            kafka_settings(bootstrap, protocol, mechanism, KAFKA_PASSWORD, ca), topic
        )
    assert len(await read_topic(secure_kafka.plaintext, topic)) == len(ok)

    refused = [
        (secure_kafka.sasl_plaintext, "SASL_PLAINTEXT", "SCRAM-SHA-256", "wrong-password", None),
        (secure_kafka.sasl_ssl, "SASL_SSL", "SCRAM-SHA-256", KAFKA_PASSWORD, pki["other_ca"]),
    ]
    for bootstrap, protocol, mechanism, password, ca in refused:
        with pytest.raises((KafkaError, ssl.SSLError, OSError, TimeoutError)):
            await _try_produce(kafka_settings(bootstrap, protocol, mechanism, password, ca), topic)


async def test_worker_end_to_end_over_sasl_ssl_and_postgres_tls(
    secure_kafka: SecureKafka, tls_postgres: PostgresServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    n = uuid.uuid4().hex[:8]
    topics = {
        "INPUT_TOPIC": f"sec-in-{n}",
        "SUMMARY_TOPIC": f"sec-sum-{n}",
        "DLQ_TOPIC": f"sec-dlq-{n}",
    }
    await create_topics(secure_kafka.plaintext, [topics["INPUT_TOPIC"]], partitions=2)
    await create_topics(
        secure_kafka.plaintext, [topics["SUMMARY_TOPIC"], topics["DLQ_TOPIC"]], partitions=1
    )
    env = {
        **topics,
        "CONSUMER_GROUP": f"sec-group-{n}",
        "KAFKA_BOOTSTRAP_SERVERS": secure_kafka.sasl_ssl,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": KAFKA_USER,
        "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "KAFKA_SSL_CAFILE": str(pki["ca"]),
        "DATABASE_URL": worker_dsn(tls_postgres, pki["ca"]),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "LOG_LEVEL": "DEBUG",
        "SHUTDOWN_GRACE_S": "10",
    }
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr

    events = list(generate_events(30, seed=21))
    bad = Record(b"bad", b'{"EventType": "onDeliveryUpdated", "Status": "exploded"}', [])
    await produce(
        secure_kafka.plaintext, topics["INPUT_TOPIC"], [*encode_mixed(events, seed=21), bad]
    )

    log_path = tmp_path / "worker.log"
    proc = _spawn_worker(env, log_path)
    try:
        admin = tls_postgres.dsn_for("secure")
        ends = {0, 1}

        async def caught_up() -> bool:
            assert proc.alive, log_path.read_text()[-3000:]
            try:
                stored = await stored_offsets(admin, env["CONSUMER_GROUP"], topics["INPUT_TOPIC"])
            except asyncpg.PostgresError:
                return False
            return set(stored) == ends and sum(stored.values()) == len(events) + 1

        await wait_for(caught_up, timeout_s=90, what="the worker to consume over SASL_SSL")
        conn = await asyncpg.connect(admin)
        try:
            tls_sessions = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                " WHERE a.usename = $1 AND s.ssl",
                DB_USER,
            )
            receipts = await conn.fetchval("SELECT count(*) FROM delivery_receipts")
        finally:
            await conn.close()
        assert tls_sessions >= 1
        assert receipts == len(coalesce(events))
    finally:
        proc.stop(timeout_s=30)
    assert proc.returncode == 0, log_path.read_text()[-3000:]

    output = log_path.read_bytes()
    lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    assert any(line["message"] == "worker starting" for line in lines)
    assert_no_secret(output)
    # The start-up line shows the settings, masked.
    started = next(line for line in lines if line["message"] == "worker starting")
    assert started["settings"]["kafka_sasl_password"] == "***"
    assert ":***@" in started["settings"]["database_url"]

    dead = await read_topic(secure_kafka.plaintext, topics["DLQ_TOPIC"])
    assert [d.key for d in dead] == [b"bad"]
    assert_no_secret(*(v for d in dead for _, v in d.raw_headers), dead[0].value)
    summaries = await read_topic(secure_kafka.plaintext, topics["SUMMARY_TOPIC"])
    assert summaries and all(orjson.loads(s.value or b"")["message_sid"] for s in summaries)
