"""Worker configuration, read from environment variables and validated before anything starts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlsplit

T = TypeVar("T")

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the worker reads from its environment. Secrets are never logged (see safe())."""

    kafka_bootstrap_servers: str = ""
    database_url: str = ""
    input_topic: str = "delivery-events"
    summary_topic: str = "delivery-summaries"
    dlq_topic: str = "delivery-events.dlq"
    consumer_group: str = "delivery-receipts-worker"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    batch_max_records: int = 5000
    batch_timeout_ms: int = 100
    max_record_bytes: int = 65536
    shutdown_grace_s: float = 20.0
    liveness_timeout_s: float = 60.0
    outbox_batch_rows: int = 1000
    # History older than this many days is dropped, a monthly partition at a time (0: kept).
    history_retention_days: int = 0
    kafka_session_timeout_ms: int = 10000
    log_level: str = "INFO"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    api_auth_account_sid: str | None = None
    api_auth_token: str | None = None
    # One `ACxxx:token` per line (e.g. a mounted Kubernetes Secret); see worker/api/credentials.py.
    api_credentials_file: str | None = None
    # The only way to serve the API without credentials (also `api --insecure-no-auth`).
    api_auth_disabled: bool = False
    # The origin clients reach the API at (behind a proxy); URLs in responses start with it.
    api_public_base_url: str | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        require: tuple[str, ...] = ("kafka_bootstrap_servers", "database_url"),
        **overrides: Any,
    ) -> Settings:
        """Build from `env` (default os.environ); `overrides` (e.g. CLI flags) win over it.

        `require` names the settings the caller's command cannot run without.
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.name.upper()
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
                continue
            raw = source.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = raw.strip()
        for required in require:
            if required not in values:
                raise ConfigError(f"{required.upper()} is required")
        settings = cls(**{k: _convert(k, v) for k, v in values.items()})
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("input_topic", "summary_topic", "dlq_topic", "consumer_group"):
            if not getattr(self, name):
                raise ConfigError(f"{name.upper()} must not be empty")
        if len({self.input_topic, self.summary_topic, self.dlq_topic}) != 3:
            raise ConfigError(
                "INPUT_TOPIC, SUMMARY_TOPIC and DLQ_TOPIC must be three different topics"
            )
        if self.database_url and not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL")
        _in_range("HTTP_PORT", self.http_port, 0, 65535)
        _in_range("API_PORT", self.api_port, 0, 65535)
        _in_range("BATCH_MAX_RECORDS", self.batch_max_records, 1, 100_000)
        _in_range("BATCH_TIMEOUT_MS", self.batch_timeout_ms, 1, 60_000)
        _in_range("MAX_RECORD_BYTES", self.max_record_bytes, 256, 16 * 1024 * 1024)
        _in_range("SHUTDOWN_GRACE_S", self.shutdown_grace_s, 1, 3600)
        _in_range("LIVENESS_TIMEOUT_S", self.liveness_timeout_s, 1, 3600)
        _in_range("OUTBOX_BATCH_ROWS", self.outbox_batch_rows, 1, 100_000)
        _in_range("HISTORY_RETENTION_DAYS", self.history_retention_days, 0, 36_500)
        # The broker also bounds it (group.min/max.session.timeout.ms: 6 s to 30 min by default).
        _in_range("KAFKA_SESSION_TIMEOUT_MS", self.kafka_session_timeout_ms, 1000, 1_800_000)
        _one_of("LOG_LEVEL", self.log_level, _LOG_LEVELS)
        _one_of("KAFKA_SECURITY_PROTOCOL", self.kafka_security_protocol, _SECURITY_PROTOCOLS)
        if self.kafka_security_protocol.startswith("SASL_"):
            _one_of("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism or "", _SASL_MECHANISMS)
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise ConfigError(
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with "
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
                )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"{name.upper()}: no such file: {path}")
        if (self.api_auth_account_sid is None) != (self.api_auth_token is None):
            raise ConfigError("API_AUTH_ACCOUNT_SID and API_AUTH_TOKEN must be set together")
        if self.api_auth_disabled and (self.api_auth_token or self.api_credentials_file):
            # Either choice could be the mistake; serving open or refusing would guess.
            raise ConfigError(
                "API_AUTH_DISABLED (--insecure-no-auth) and API credentials "
                "(API_AUTH_ACCOUNT_SID/API_AUTH_TOKEN, API_CREDENTIALS_FILE) are both set; "
                "choose one"
            )
        if self.api_public_base_url is not None:
            _check_public_base_url(self.api_public_base_url)

    def safe(self) -> dict[str, object]:
        """The settings with secrets masked, fit for a log line."""
        result: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("kafka_sasl_password", "api_auth_token") and value is not None:
                value = "***"
            elif f.name == "database_url":
                value = _mask_url_password(value)
            result[f.name] = value
        return result


_INT_FIELDS = {
    "http_port",
    "api_port",
    "batch_max_records",
    "batch_timeout_ms",
    "max_record_bytes",
    "outbox_batch_rows",
    "history_retention_days",
    "kafka_session_timeout_ms",
}
_FLOAT_FIELDS = {"shutdown_grace_s", "liveness_timeout_s"}
_BOOL_FIELDS = {"api_auth_disabled"}
_UPPER_FIELDS = {"log_level", "kafka_security_protocol", "kafka_sasl_mechanism"}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _convert(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _INT_FIELDS:
        return _parse(name, value, int, "an integer")
    if name in _FLOAT_FIELDS:
        return _parse(name, value, float, "a number")
    if name in _BOOL_FIELDS:
        return _parse_bool(name, value)
    if name in _UPPER_FIELDS:
        return value.upper()
    return value


def _parse_bool(name: str, value: str) -> bool:
    # Strict: a typo such as API_AUTH_DISABLED=ture must not silently mean either answer.
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name.upper()} must be true or false, got {value!r}")


def _check_public_base_url(url: str) -> None:
    """An absolute http(s) origin, optionally with a path prefix: it starts every served URL."""
    example = "e.g. https://receipts.example.com"
    # A value with '@' may hold user:password; it is never echoed.
    shown = repr(url) if "@" not in url else "a value with '@' (not shown)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ConfigError(f"API_PUBLIC_BASE_URL is not a valid URL ({example})") from None
    if "@" in parts.netloc:
        # It would be sent to every client in every URL.
        raise ConfigError("API_PUBLIC_BASE_URL must not contain user info (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"API_PUBLIC_BASE_URL must be an absolute http:// or https:// URL ({example}), "
            f"got {shown}"
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigError(f"API_PUBLIC_BASE_URL must not have a query or fragment, got {shown}")
    if any(c.isspace() for c in url):
        raise ConfigError(f"API_PUBLIC_BASE_URL must not contain white space, got {shown}")


def _parse(name: str, value: str, kind: Callable[[str], T], what: str) -> T:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name.upper()} must be {what}, got {value!r}") from None


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


# libpq/asyncpg also take secrets as query parameters: ?password=...&sslpassword=...
_SECRET_QUERY_PARAMS = frozenset({"password", "sslpassword"})


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    # Masked after the userinfo, so a raw '?' or '@' in either secret cannot shield the other.
    head, qmark, query = f"{scheme}{sep}{userinfo}{at}{host}".partition("?")
    masked = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        secret = unquote_plus(name).strip().lower() in _SECRET_QUERY_PARAMS
        masked.append(f"{name}=***" if eq and secret else item)
    return head + qmark + "&".join(masked)
