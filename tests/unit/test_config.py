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
    assert s.history_retention_days == 0  # history kept forever unless asked
    assert Settings.from_env({**BASE, "HISTORY_RETENTION_DAYS": "90"}).history_retention_days == 90


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
        ({"HISTORY_RETENTION_DAYS": "-1"}, "HISTORY_RETENTION_DAYS"),
        ({"HISTORY_RETENTION_DAYS": "90d"}, "HISTORY_RETENTION_DAYS"),
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
        ({"API_AUTH_DISABLED": "ture"}, "API_AUTH_DISABLED"),
        (
            {"API_AUTH_DISABLED": "true", "API_CREDENTIALS_FILE": "/run/secrets/api"},
            "API_AUTH_DISABLED",
        ),
        (
            {
                "API_AUTH_DISABLED": "1",
                "API_AUTH_ACCOUNT_SID": "AC" + "a" * 32,
                "API_AUTH_TOKEN": "t",
            },
            "choose one",
        ),
        ({"API_PUBLIC_BASE_URL": "receipts.example.com"}, "API_PUBLIC_BASE_URL"),
        ({"API_PUBLIC_BASE_URL": "ftp://receipts.example.com"}, "API_PUBLIC_BASE_URL"),
        ({"API_PUBLIC_BASE_URL": "https://"}, "API_PUBLIC_BASE_URL"),
        ({"API_PUBLIC_BASE_URL": "https://receipts.example.com/?a=1"}, "query"),
        ({"API_PUBLIC_BASE_URL": "https://receipts.example.com/#top"}, "fragment"),
        ({"API_PUBLIC_BASE_URL": "https://receipts.example.com:99999"}, "API_PUBLIC_BASE_URL"),
        ({"API_PUBLIC_BASE_URL": "https://a b.example.com"}, "API_PUBLIC_BASE_URL"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**BASE, **env})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False)],
)
def test_api_auth_disabled_is_a_strict_boolean(value: str, expected: bool) -> None:
    assert Settings.from_env({**BASE, "API_AUTH_DISABLED": value}).api_auth_disabled is expected


@pytest.mark.parametrize(
    "url",
    [
        "https://receipts.example.com",
        "https://receipts.example.com/",
        "http://10.0.0.7:8000",
        "https://example.com/delivery-api",
    ],
)
def test_public_base_url_accepted(url: str) -> None:
    assert Settings.from_env({**BASE, "API_PUBLIC_BASE_URL": url}).api_public_base_url == url


def test_public_base_url_with_user_info_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="user info") as info:
        Settings.from_env({**BASE, "API_PUBLIC_BASE_URL": "https://u:hunter2@example.com"})
    assert "hunter2" not in str(info.value)


def test_secrets_are_masked() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "KAFKA_SASL_USERNAME": "svc",
            "KAFKA_SASL_PASSWORD": "hunter2",
            "API_AUTH_ACCOUNT_SID": "AC" + "a" * 32,
            "API_AUTH_TOKEN": "api-token-42",
            "API_CREDENTIALS_FILE": "/run/secrets/api/credentials",
        }
    )
    text = repr(s.safe())
    assert "hunter2" not in text and "pw@" not in text and "u:***@db" in text
    assert "api-token-42" not in text and "/run/secrets/api/credentials" in text


def test_cli_api_refuses_to_start_without_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("API_AUTH_ACCOUNT_SID", "API_AUTH_TOKEN", "API_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("API_AUTH_DISABLED", raising=False)
    monkeypatch.setenv("DATABASE_URL", BASE["DATABASE_URL"])
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert "API_CREDENTIALS_FILE" in err and "--insecure-no-auth" in err


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


def test_every_bad_value_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        "HTTP_PORT": "eighty",
        "BATCH_MAX_RECORDS": "0",
        "LOG_LEVEL": "LOUD",
        "API_AUTH_DISABLED": "ture",
        "API_PUBLIC_BASE_URL": "ftp://x",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": "mysql://x", **bad})
    problems = info.value.problems
    named = ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", *bad]
    assert len(problems) == len(named)
    for name in named:
        assert sum(problem.startswith(name) for problem in problems) == 1, name
    # The CLI prints one line per problem, each naming its variable.
    for key, value in {**BASE, **bad}.items():
        monkeypatch.setenv(key, value)
    assert main(["run"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(bad)
    assert all(line.startswith("delivery-receipts-worker: configuration error: ") for line in lines)
    assert sorted(line.split(": ", 2)[2].split()[0] for line in lines) == sorted(bad)


def test_one_problem_reads_as_before() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "HTTP_PORT": "70000"})
    assert str(info.value) == "HTTP_PORT must be between 0 and 65535, got 70000"
    assert info.value.problems == (str(info.value),)
