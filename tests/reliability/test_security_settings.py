"""Security settings without servers: the Kafka client options of every protocol and mechanism
(worker/kafka.py), invalid combinations refused (worker/config.py), and every secret masked in
`Settings.safe()`."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import orjson
import pytest

from tests.reliability.credentials import (
    DB_PASSWORD,
    KAFKA_PASSWORD,
    KAFKA_USER,
    assert_no_secret,
    kafka_settings,
    make_pki,
)
from worker.config import ConfigError, Settings
from worker.kafka import client_options


def test_client_options_mapping(tmp_path: Path) -> None:
    plain = client_options(Settings(kafka_bootstrap_servers="b:9092"))
    assert plain == {"bootstrap_servers": "b:9092", "security_protocol": "PLAINTEXT"}

    sasl = client_options(kafka_settings("b:9093", "SASL_PLAINTEXT", "SCRAM-SHA-512", "pw", None))
    assert sasl["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in sasl
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        KAFKA_USER,
        "pw",
    )
    if shutil.which("openssl") is not None:
        paths = make_pki(tmp_path / "pki")
        tls = client_options(
            kafka_settings("b:9094", "SASL_SSL", "SCRAM-SHA-256", "pw", paths["ca"])
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
