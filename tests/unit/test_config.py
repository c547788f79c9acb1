from __future__ import annotations

import pytest

from worker.cli import main
from worker.config import ConfigError, Settings

BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DATABASE_URL": "postgresql://u:pw@db/x"}


def test_defaults_follow_the_spec() -> None:
    s = Settings.from_env(BASE)
    assert (s.input_topic, s.summary_topic, s.dlq_topic, s.consumer_group) == (
        "delivery-events",
        "delivery-summaries",
        "delivery-events.dlq",
        "delivery-receipts-worker",
    )
    assert s.http_port == 8080 and s.max_record_bytes == 65536


def test_environment_and_overrides() -> None:
    s = Settings.from_env({**BASE, "HTTP_PORT": "9100", "INPUT_TOPIC": "in"}, http_port=9200)
    assert s.http_port == 9200 and s.input_topic == "in"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": ""}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"HTTP_PORT": "eighty"}, "HTTP_PORT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"BATCH_MAX_RECORDS": "0"}, "BATCH_MAX_RECORDS"),
        ({"KAFKA_SESSION_TIMEOUT_MS": "500"}, "KAFKA_SESSION_TIMEOUT_MS"),
        ({"KAFKA_SESSION_TIMEOUT_MS": "6s"}, "KAFKA_SESSION_TIMEOUT_MS"),
        ({"SHUTDOWN_GRACE_S": "soon"}, "SHUTDOWN_GRACE_S"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"SUMMARY_TOPIC": "delivery-events"}, "SUMMARY_TOPIC"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            "KAFKA_SASL_USERNAME",
        ),
        ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
        ({"API_AUTH_TOKEN": "t"}, "API_AUTH_ACCOUNT_SID"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**BASE, **env})


def test_secrets_are_masked() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "hunter2",
        }
    )
    text = repr(s.safe())
    assert "hunter2" not in text and "pw@" not in text and "u:***@db" in text


def test_cli_stops_on_bad_config_with_the_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {**BASE, "HTTP_PORT": "-1"}.items():
        monkeypatch.setenv(key, value)
    assert main(["run"]) == 2
    assert "HTTP_PORT" in capsys.readouterr().err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "migrate" in out and "KAFKA_BOOTSTRAP_SERVERS" in out
