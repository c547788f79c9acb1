"""Worker configuration, read from environment variables and validated before anything starts.

Each setting is declared once, as a field of `Settings` made by `_setting(...)`: its name (the
field's, upper-cased for the environment), type (the annotation), default, allowed range or
choices, whether it is secret, and a one-line help. Everything else is derived from that
declaration: the environment parsing and conversion, validation, the masking in `safe()` and
the CLI's `--help` list (`SETTINGS`). The README's configuration table and the Helm chart are
checked against it by tests/unit/test_settings_docs.py.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlsplit

T = TypeVar("T")

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigError(ValueError):
    """Configuration values are missing or invalid; each problem names its variable.

    `problems` holds every problem found (all of them, not just the first); str() joins them.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "; ".join(self.problems)


# A check of one setting's value: (variable name, value) -> the problem, or None if fine.
Check = Callable[[str, Any], str | None]


@dataclass(frozen=True, slots=True)
class Spec:
    """What a Settings field's declaration says beyond its name, type and default."""

    help: str
    # Numbers: the inclusive range. Strings: the allowed values (upper case; a value read from
    # the environment or a flag is upper-cased first).
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    # No default: the commands that use it cannot run without it.
    required: bool = False
    # Secret (or holding secrets): how safe() shows it.
    mask: Callable[[str], str] | None = None
    check: Check | None = None


def _setting(
    default: T,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    required: bool = False,
    mask: Callable[[str], str] | None = None,
    check: Check | None = None,
) -> T:
    """Declare a Settings field: its default and everything else about it (see Spec)."""
    spec = Spec(help, low, high, choices, required, mask, check)
    return field(default=default, metadata={"setting": spec})


def _hidden(_: str) -> str:
    return "***"


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


def _not_empty(name: str, value: str) -> str | None:
    return None if value else f"{name} must not be empty"


def _postgres_url(name: str, value: str) -> str | None:
    if value and not value.startswith(("postgres://", "postgresql://")):
        return f"{name} must be a postgresql:// URL"
    return None


def _existing_file(name: str, path: str) -> str | None:
    return None if os.path.isfile(path) else f"{name}: no such file: {path}"


def _public_base_url(name: str, url: str) -> str | None:
    """An absolute http(s) origin, optionally with a path prefix: it starts every served URL."""
    example = "e.g. https://receipts.example.com"
    # A value with '@' may hold user:password; it is never echoed.
    shown = repr(url) if "@" not in url else "a value with '@' (not shown)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return f"{name} is not a valid URL ({example})"
    if "@" in parts.netloc:
        # It would be sent to every client in every URL.
        return f"{name} must not contain user info (user:password@)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name} must be an absolute http:// or https:// URL ({example}), got {shown}"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return f"{name} must not have a query or fragment, got {shown}"
    if any(c.isspace() for c in url):
        return f"{name} must not contain white space, got {shown}"
    return None


def _not_one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    return f"{name} must be one of {', '.join(allowed)}, got {value!r}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the worker reads from its environment. Secrets are never logged (see safe())."""

    kafka_bootstrap_servers: str = _setting(
        "", "Kafka brokers, host:port[,host:port]", required=True
    )
    database_url: str = _setting(
        "",
        "postgresql://user:pass@host:port/db (TLS: README.md, docs/security.md)",
        required=True,
        mask=_mask_url_password,
        check=_postgres_url,
    )
    input_topic: str = _setting("delivery-events", "delivery events to consume", check=_not_empty)
    summary_topic: str = _setting("delivery-summaries", "summary-changed events", check=_not_empty)
    dlq_topic: str = _setting("delivery-events.dlq", "dead letters", check=_not_empty)
    consumer_group: str = _setting(
        "delivery-receipts-worker",
        "Kafka consumer group; replicas in one group share the partitions",
        check=_not_empty,
    )
    http_host: str = _setting("0.0.0.0", "address of /metrics, /healthz, /readyz")
    http_port: int = _setting(8080, "port of /metrics, /healthz, /readyz", low=0, high=65535)
    batch_max_records: int = _setting(
        5000, "records per batch (one transaction each)", low=1, high=100_000
    )
    batch_timeout_ms: int = _setting(
        100, "longest wait for a batch when the topic is quiet", low=1, high=60_000
    )
    max_record_bytes: int = _setting(
        65536, "larger records are dead-lettered (too_large)", low=256, high=16 * 1024 * 1024
    )
    shutdown_grace_s: float = _setting(
        20.0, "SIGTERM drain deadline; keep the pod's grace period above it", low=1, high=3600
    )
    liveness_timeout_s: float = _setting(
        60.0, "/healthz fails after this long without loop progress", low=1, high=3600
    )
    outbox_batch_rows: int = _setting(
        1000, "summary events published per outbox transaction", low=1, high=100_000
    )
    # History older than this many days is dropped, a monthly partition at a time (0: kept).
    history_retention_days: int = _setting(
        0, "days of status history kept, whole months dropped (0: forever)", low=0, high=36_500
    )
    # The broker also bounds it (group.min/max.session.timeout.ms: 6 s to 30 min by default).
    kafka_session_timeout_ms: int = _setting(
        10000,
        "a replica silent this long loses its partitions (the broker bounds it too)",
        low=1000,
        high=1_800_000,
    )
    # How long a Messaging status event waits for its receipt (docs/design.md, "Input forms"):
    # one whose receipt never comes (an SMS sent outside Conversations) is dropped after this.
    # 7 days, the span over which Twilio retries webhooks and a carrier may still report.
    pending_status_ttl_s: float = _setting(
        7 * 24 * 3600.0,
        "how long a Messaging status event waits for its receipt",
        low=1,
        high=90 * 24 * 3600,
    )
    log_level: str = _setting("INFO", "level of the JSON logs", choices=_LOG_LEVELS)
    kafka_security_protocol: str = _setting(
        "PLAINTEXT", "how the Kafka clients connect", choices=_SECURITY_PROTOCOLS
    )
    kafka_sasl_mechanism: str | None = _setting(
        None, "SASL mechanism (required with SASL_*)", choices=_SASL_MECHANISMS
    )
    kafka_sasl_username: str | None = _setting(None, "SASL user (required with SASL_*)")
    kafka_sasl_password: str | None = _setting(
        None, "SASL password (required with SASL_*)", mask=_hidden
    )
    kafka_ssl_cafile: str | None = _setting(
        None, "CA bundle (PEM) that verifies the brokers", check=_existing_file
    )
    kafka_ssl_certfile: str | None = _setting(
        None, "client certificate (PEM) for mutual TLS", check=_existing_file
    )
    kafka_ssl_keyfile: str | None = _setting(
        None, "client private key (PEM) for mutual TLS", check=_existing_file
    )
    api_host: str = _setting("0.0.0.0", "address of the REST read API (the api command)")
    api_port: int = _setting(8000, "port of the REST read API", low=0, high=65535)
    api_auth_account_sid: str | None = _setting(
        None, "the API's HTTP Basic user: an account SID (with API_AUTH_TOKEN)"
    )
    api_auth_token: str | None = _setting(None, "that account's token", mask=_hidden)
    # One `ACxxx:token` per line (e.g. a mounted Kubernetes Secret); see worker/api/credentials.py.
    api_credentials_file: str | None = _setting(
        None, "a file of ACxxx:token lines, one per account the API serves"
    )
    # The only way to serve the API without credentials (also `api --insecure-no-auth`).
    api_auth_disabled: bool = _setting(
        False,
        "serve the API to anyone, without credentials (also api --insecure-no-auth); "
        "else api refuses to start without any",
    )
    # The origin clients reach the API at (behind a proxy); URLs in responses start with it.
    api_public_base_url: str | None = _setting(
        None,
        "the API's public origin, e.g. https://receipts.example.com (else the request's Host)",
        check=_public_base_url,
    )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        require: tuple[str, ...] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build from `env` (default os.environ); `overrides` (e.g. CLI flags) win over it.

        `require` names the settings the caller's command cannot run without (default: every
        setting declared required). Raises ConfigError naming every bad value, not the first.
        """
        source = os.environ if env is None else env
        needed = require if require is not None else tuple(s.name for s in SETTINGS if s.required)
        values: dict[str, Any] = {}
        problems: list[str] = []
        given: set[str] = set()
        for setting in SETTINGS:
            raw = overrides.get(setting.name)
            if raw is None:
                raw = source.get(setting.env)
                if raw is None or raw.strip() == "":
                    continue
                raw = raw.strip()
            given.add(setting.name)
            try:
                values[setting.name] = setting.convert(raw)
            except ConfigError as exc:
                problems.extend(exc.problems)
        problems[:0] = [f"{name.upper()} is required" for name in needed if name not in given]
        settings = cls(**values)
        problems += settings.problems()
        if problems:
            raise ConfigError(*problems)
        return settings

    def problems(self) -> list[str]:
        """Every invalid value and combination, each naming its variables (empty: all good)."""
        found: list[str] = []
        for setting in SETTINGS:
            found += setting.problems(getattr(self, setting.name))
        if len({self.input_topic, self.summary_topic, self.dlq_topic}) != 3:
            found.append("INPUT_TOPIC, SUMMARY_TOPIC and DLQ_TOPIC must be three different topics")
        if self.kafka_security_protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism is None:
                found.append(_not_one_of("KAFKA_SASL_MECHANISM", "", _SASL_MECHANISMS))
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                found.append(
                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with "
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
                )
        if (self.api_auth_account_sid is None) != (self.api_auth_token is None):
            found.append("API_AUTH_ACCOUNT_SID and API_AUTH_TOKEN must be set together")
        if self.api_auth_disabled and (self.api_auth_token or self.api_credentials_file):
            # Either choice could be the mistake; serving open or refusing would guess.
            found.append(
                "API_AUTH_DISABLED (--insecure-no-auth) and API credentials "
                "(API_AUTH_ACCOUNT_SID/API_AUTH_TOKEN, API_CREDENTIALS_FILE) are both set; "
                "choose one"
            )
        return found

    def validate(self) -> None:
        """Raise ConfigError naming every problem (see problems())."""
        found = self.problems()
        if found:
            raise ConfigError(*found)

    def safe(self) -> dict[str, object]:
        """The settings with secrets masked, fit for a log line."""
        result: dict[str, object] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.spec.mask is not None and value is not None:
                value = setting.spec.mask(value)
            result[setting.name] = value
        return result


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting: a Settings field with its type, default and Spec, resolved."""

    name: str
    kind: type
    optional: bool
    default: Any
    spec: Spec

    @property
    def env(self) -> str:
        return self.name.upper()

    @property
    def required(self) -> bool:
        return self.spec.required

    @property
    def secret(self) -> bool:
        return self.spec.mask is not None

    def convert(self, value: Any) -> Any:
        """A value from the environment (a string) or a flag (already typed) as the field's type."""
        if not isinstance(value, str):
            return value
        if self.kind is bool:
            return _parse_bool(self.env, value)
        if self.kind is int:
            return _parse(self.env, value, int, "an integer")
        if self.kind is float:
            return _parse(self.env, value, float, "a number")
        return value.upper() if self.spec.choices else value

    def problems(self, value: Any) -> list[str]:
        """What is wrong with this setting's value on its own (cross-setting rules aside)."""
        if value is None:
            return []
        spec = self.spec
        found: list[str | None] = []
        if spec.low is not None and spec.high is not None and not spec.low <= value <= spec.high:
            found.append(f"{self.env} must be between {spec.low} and {spec.high}, got {value}")
        if spec.choices and value not in spec.choices:
            found.append(_not_one_of(self.env, value, spec.choices))
        if spec.check is not None:
            found.append(spec.check(self.env, value))
        return [problem for problem in found if problem is not None]

    def shown_default(self) -> str:
        """The default as the docs show it: '' for none, numbers without a needless '.0'."""
        value = self.default
        if value is None or (value == "" and self.required):
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


def _declared(cls: type[Settings]) -> tuple[Setting, ...]:
    hints = typing.get_type_hints(cls)
    declared = []
    for f in fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        kind, optional = (args[0], True) if args else (hints[f.name], False)
        declared.append(Setting(f.name, kind, optional, f.default, f.metadata["setting"]))
    return tuple(declared)


# Every setting, in declaration order.
SETTINGS: tuple[Setting, ...] = _declared(Settings)


def _parse_bool(name: str, value: str) -> bool:
    # Strict: a typo such as API_AUTH_DISABLED=ture must not silently mean either answer.
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _parse(name: str, value: str, kind: Callable[[str], T], what: str) -> T:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {value!r}") from None
