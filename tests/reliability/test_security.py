"""Security basics, for real where it can be: TLS and SCRAM to Kafka, TLS to PostgreSQL.

A throwaway CA made with `openssl` signs a certificate for 127.0.0.1. A PostgreSQL with
ssl=on that only accepts TLS (pg_hba: hostssl, SCRAM passwords) serves the worker's
`migrate` and `run` with sslmode=verify-full; a Kafka broker with SASL_PLAINTEXT and
SASL_SSL listeners (SCRAM credentials added when its storage is formatted) serves the
worker end to end. The worker's JSON logs and its dead letters must never contain the
Kafka or database password. And no SQL in worker/ is built from values.
"""

from __future__ import annotations

import ast
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
from worker.config import ConfigError, Settings
from worker.kafka import client_options
from worker.loadgen import Record, encode_mixed, generate_events
from worker.reduction import coalesce

ROOT = Path(__file__).resolve().parents[2]
KAFKA_USER = "worker"
KAFKA_PASSWORD = "kafka-pw-" + uuid.uuid4().hex
DB_USER = "worker"
DB_PASSWORD = "db-pw-" + uuid.uuid4().hex
SECRETS = (KAFKA_PASSWORD, DB_PASSWORD)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not found")


# -- a throwaway PKI -------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for IP 127.0.0.1 only, and an unrelated second CA."""
    directory.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=test {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    # Kafka reads a PEM key store: the PKCS#8 key and the certificate chain in one file.
    bundle = directory / "server-bundle.pem"
    bundle.write_text(
        (directory / "server.key").read_text() + (directory / "server.crt").read_text()
    )
    return {
        "ca": directory / "ca.pem",
        "other_ca": directory / "other-ca.pem",
        "cert": directory / "server.crt",
        "key": directory / "server.key",
        "bundle": bundle,
    }


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


def assert_no_secret(*texts: str | bytes | None) -> None:
    for text in texts:
        if text is None:
            continue
        blob = text if isinstance(text, bytes) else text.encode()
        for secret in SECRETS:
            assert secret.encode() not in blob, "a password leaked"


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


def _kafka_settings(
    bootstrap: str, protocol: str, mechanism: str, password: str, ca: Path | None
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=KAFKA_USER,
        kafka_sasl_password=password,
        kafka_ssl_cafile=str(ca) if ca else None,
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
            _kafka_settings(bootstrap, protocol, mechanism, KAFKA_PASSWORD, ca), topic
        )
    assert len(await read_topic(secure_kafka.plaintext, topic)) == len(ok)

    refused = [
        (secure_kafka.sasl_plaintext, "SASL_PLAINTEXT", "SCRAM-SHA-256", "wrong-password", None),
        (secure_kafka.sasl_ssl, "SASL_SSL", "SCRAM-SHA-256", KAFKA_PASSWORD, pki["other_ca"]),
    ]
    for bootstrap, protocol, mechanism, password, ca in refused:
        with pytest.raises((KafkaError, ssl.SSLError, OSError, TimeoutError)):
            await _try_produce(_kafka_settings(bootstrap, protocol, mechanism, password, ca), topic)


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


# -- without servers -------------------------------------------------------------------------


def test_client_options_mapping(tmp_path: Path) -> None:
    plain = client_options(Settings(kafka_bootstrap_servers="b:9092"))
    assert plain == {"bootstrap_servers": "b:9092", "security_protocol": "PLAINTEXT"}

    sasl = client_options(_kafka_settings("b:9093", "SASL_PLAINTEXT", "SCRAM-SHA-512", "pw", None))
    assert sasl["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in sasl
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        KAFKA_USER,
        "pw",
    )
    if shutil.which("openssl") is not None:
        paths = make_pki(tmp_path / "pki")
        tls = client_options(
            _kafka_settings("b:9094", "SASL_SSL", "SCRAM-SHA-256", "pw", paths["ca"])
        )
        context = tls["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.get_ca_certs()

    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        Settings(kafka_security_protocol="SASL_SSL").validate()
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME"):
        Settings(
            kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256"
        ).validate()
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_cafile="/nonexistent/ca.pem").validate()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://worker:{pw}@db:5432/receipts?sslmode=verify-full&sslrootcert=/ca.pem",
        "postgresql://worker@db/receipts?password={pw}&sslmode=require",
        "postgresql://worker@db/receipts?sslmode=verify-full&sslpassword={pw}",
        "postgresql://worker:{pw}@db/receipts?PASSWORD={pw}",
    ],
)
def test_safe_settings_mask_every_secret(url: str) -> None:
    settings = Settings(
        kafka_bootstrap_servers="b:9093",
        database_url=url.format(pw=DB_PASSWORD),
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username=KAFKA_USER,
        kafka_sasl_password=KAFKA_PASSWORD,
        api_auth_account_sid="AC" + "0" * 32,
        api_auth_token="api-token-" + DB_PASSWORD,
    )
    assert_no_secret(orjson.dumps(settings.safe(), default=str))
    assert "db" in str(settings.safe()["database_url"])


def test_sql_is_never_built_from_values() -> None:
    """f-strings, .format() and % in SQL may only splice module constants (column lists)."""
    sql_words = (
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE ",
        " WHERE ",
        "VALUES",
        "CREATE ",
        "ALTER ",
    )
    offenders: list[str] = []
    checked = 0
    for path in sorted((ROOT / "worker").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = _module_string_constants(tree)

        def is_sql(node: ast.AST) -> bool:
            text = " ".join(
                part.value
                for part in ast.walk(node)
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            ).upper()
            return any(word in text for word in sql_words)

        def where(node: ast.AST, path: Path = path) -> str:
            return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"

        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and is_sql(node):
                checked += 1
                for value in node.values:
                    if isinstance(value, ast.FormattedValue) and not (
                        isinstance(value.value, ast.Name) and value.value.id in constants
                    ):
                        offenders.append(
                            f"{where(node)}: f-string splices {ast.unparse(value.value)}"
                        )
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and is_sql(node.func.value)
            ):
                offenders.append(f"{where(node)}: str.format() on SQL")
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and is_sql(node.left):
                offenders.append(f"{where(node)}: % formatting of SQL")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Add)
                and is_sql(node)
                and not all(_is_constant(side, constants) for side in (node.left, node.right))
            ):
                offenders.append(f"{where(node)}: SQL concatenated with a value")
    assert checked >= 3, "expected the constant column-list f-strings of store.py"
    assert not offenders, "\n".join(offenders)


def _is_constant(node: ast.AST, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp):
        return _is_constant(node.left, constants) and _is_constant(node.right, constants)
    return False


def _module_string_constants(tree: ast.Module) -> set[str]:
    """Module-level names bound once to a string built only from literals and such names."""
    names: set[str] = set()
    assigned: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned[node.id] = assigned.get(node.id, 0) + 1
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or value is None or assigned.get(target.id) != 1:
            continue
        if _literal_string(value, names):
            names.add(target.id)
    return names


def _literal_string(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.JoinedStr):
        return all(
            isinstance(v, ast.Constant)
            or (isinstance(v, ast.FormattedValue) and _literal_string(v.value, names))
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal_string(node.left, names) and _literal_string(node.right, names)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and isinstance(node.func.value, ast.Constant)
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Tuple | ast.List)
    ):
        return all(_literal_string(e, names) for e in node.args[0].elts)
    return False
