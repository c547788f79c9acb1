"""Loads the API's account credentials from the settings and checks a login against them."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from worker.config import ConfigError, Settings

_ACCOUNT_SID: Final = re.compile(r"AC[0-9a-fA-F]{32}")
# Printable ASCII without space: what Twilio tokens and generated secrets are made of, and
# what survives an HTTP Basic header, a Secret and a copy-paste unchanged.
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")

NOT_CONFIGURED: Final = (
    "the API has no credentials configured and refuses to serve every account's data openly: "
    "set API_AUTH_ACCOUNT_SID and API_AUTH_TOKEN, or API_CREDENTIALS_FILE (one "
    "ACCOUNT_SID:TOKEN per line); to run without authentication anyway, set "
    "API_AUTH_DISABLED=true or pass --insecure-no-auth"
)


def canonical_account_sid(value: str) -> str | None:
    """``AC`` + lower-case hex (how the read model stores it), or None if not an account SID."""
    if _ACCOUNT_SID.fullmatch(value) is None:
        return None
    return "AC" + value[2:].lower()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Account SID and token pairs; an account may have several tokens (e.g. while rotating)."""

    # repr=False: a stray log of this object must not print a token.
    entries: tuple[tuple[str, bytes], ...] = field(repr=False)

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(account for account, _ in self.entries)

    def authenticate(self, username: str, password: str) -> str | None:
        """The account SID these Basic credentials log in as, or None.

        Every entry is compared, each with ``hmac.compare_digest`` on both parts and no
        short-circuit, so the time taken depends on neither which part nor which entry
        differs: it reveals no token and no configured account.
        """
        user = (canonical_account_sid(username) or username).encode("utf-8", "replace")
        given = password.encode("utf-8", "replace")
        found: str | None = None
        for account, token in self.entries:
            same_user = hmac.compare_digest(user, account.encode())
            same_token = hmac.compare_digest(given, token)
            if same_user & same_token:
                found = account
        return found


def parse_credentials_file(path: str) -> list[tuple[str, str]]:
    """The ``(account_sid, token)`` pairs of a credentials file.

    Format: one ``ACCOUNT_SID:TOKEN`` per line; blank lines and lines starting with ``#``
    are ignored; spaces around either part are trimmed. Errors name the file and the line,
    never the line's content, which may be a token.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"API_CREDENTIALS_FILE {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"API_CREDENTIALS_FILE {path}: not UTF-8 text") from None
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"API_CREDENTIALS_FILE {path} line {number}"
        sid, colon, token = (part.strip() for part in line.partition(":"))
        if not colon:
            raise ConfigError(f"{where}: expected ACCOUNT_SID:TOKEN")
        account = canonical_account_sid(sid)
        if account is None:
            raise ConfigError(f"{where}: the account SID is not AC followed by 32 hex digits")
        if _TOKEN.fullmatch(token) is None:
            raise ConfigError(
                f"{where}: the token is empty or has spaces or non-printable characters"
            )
        pairs.append((account, token))
    if not pairs:
        raise ConfigError(f"API_CREDENTIALS_FILE {path}: no credentials in it")
    return pairs


def load_credentials(settings: Settings) -> Credentials | None:
    """The credentials the API accepts; None only when explicitly told to run open.

    Raises ConfigError (the process exits 2 with it) when nothing is configured and running
    open was not asked for: secure by default.
    """
    # Again, for Settings built without from_env: open plus credentials is refused there.
    settings.validate()
    pairs: list[tuple[str, str]] = []
    if settings.api_auth_account_sid is not None and settings.api_auth_token is not None:
        account = canonical_account_sid(settings.api_auth_account_sid)
        if account is None:
            raise ConfigError("API_AUTH_ACCOUNT_SID must be AC followed by 32 hex digits")
        if _TOKEN.fullmatch(settings.api_auth_token) is None:
            raise ConfigError("API_AUTH_TOKEN must not contain spaces or non-printable characters")
        pairs.append((account, settings.api_auth_token))
    if settings.api_credentials_file is not None:
        pairs += parse_credentials_file(settings.api_credentials_file)
    if settings.api_auth_disabled:
        return None
    if not pairs:
        raise ConfigError(NOT_CONFIGURED)
    return Credentials(tuple((account, token.encode()) for account, token in dict.fromkeys(pairs)))
