"""What the security tests must never see leak, and what they make to test with: the Kafka and
database passwords, a throwaway PKI made with `openssl` (a CA, a certificate for 127.0.0.1
only, an unrelated second CA), and the worker's Kafka settings for a protocol and mechanism."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from worker.config import Settings

ROOT = Path(__file__).resolve().parents[2]
KAFKA_USER = "worker"
KAFKA_PASSWORD = "kafka-pw-" + uuid.uuid4().hex
DB_USER = "worker"
DB_PASSWORD = "db-pw-" + uuid.uuid4().hex
SECRETS = (KAFKA_PASSWORD, DB_PASSWORD)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not found")


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


def assert_no_secret(*texts: str | bytes | None) -> None:
    for text in texts:
        if text is None:
            continue
        blob = text if isinstance(text, bytes) else text.encode()
        for secret in SECRETS:
            assert secret.encode() not in blob, "a password leaked"


def kafka_settings(
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
