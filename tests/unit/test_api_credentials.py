"""Unit tests of the API's credentials: the file format, the secure default, the login check."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.api.credentials import (
    NOT_CONFIGURED,
    Credentials,
    canonical_account_sid,
    load_credentials,
    parse_credentials_file,
)
from worker.config import ConfigError, Settings

A = "AC" + "a" * 32
B = "AC" + "0123456789abcdef" * 2
TOKEN_A = "tokenA-0123456789abcdef"
TOKEN_B = "tokenB-fedcba9876543210"
DB = {"DATABASE_URL": "postgresql://u:pw@db/x"}


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "credentials"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def api_settings(**env: str) -> Settings:
    return Settings.from_env({**DB, **env}, require=("database_url",))


# -- the file ------------------------------------------------------------------------------


def test_file_with_comments_blank_lines_and_spaces(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"# tenants of the read API\n\n{A}:{TOKEN_A}\n  {B} : {TOKEN_B}  \r\n"
        f"# a second token of A while rotating\n{A}:{TOKEN_B}\n",
    )
    assert parse_credentials_file(path) == [(A, TOKEN_A), (B, TOKEN_B), (A, TOKEN_B)]


def test_file_sids_are_canonical_and_tokens_may_hold_colons(tmp_path: Path) -> None:
    upper = "AC" + "A" * 32
    path = write(tmp_path, f"\ufeff{upper}:to:ken\n".encode())
    assert parse_credentials_file(path) == [(A, "to:ken")]


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        (f"{A}:{TOKEN_A}\nsupersecret-no-colon\n", 2, "expected ACCOUNT_SID:TOKEN"),
        (f"# c\n\nsupersecret:{TOKEN_A}\n", 3, "not AC followed by 32 hex digits"),
        (f"{A[:-1]}:supersecret\n", 1, "not AC followed by 32 hex digits"),
        (f"ac{'a' * 32}:supersecret\n", 1, "not AC followed by 32 hex digits"),
        (f"{A}:\n", 1, "the token is empty"),
        (f"{A}:super secret\n", 1, "has spaces"),
        (f"{A}:supersecret\u00e9\n", 1, "non-printable"),
    ],
)
def test_bad_file_names_the_file_and_line_never_the_token(
    tmp_path: Path, text: str, line: int, why: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        parse_credentials_file(path)
    message = str(info.value)
    assert f"API_CREDENTIALS_FILE {path} line {line}:" in message
    assert why in message
    assert "secret" not in message.replace(path, "")
    assert TOKEN_A not in message


@pytest.mark.parametrize(
    ("content", "why"),
    [("# only a comment\n\n", "no credentials"), (b"\xff\xfe" + A.encode(), "not UTF-8")],
)
def test_empty_or_binary_file_is_refused(tmp_path: Path, content: str | bytes, why: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigError, match=why):
        parse_credentials_file(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"API_CREDENTIALS_FILE .*/nope: cannot read"):
        parse_credentials_file(str(tmp_path / "nope"))


# -- the secure default -----------------------------------------------------------------------


def test_nothing_configured_refuses_naming_every_way_out() -> None:
    with pytest.raises(ConfigError) as info:
        load_credentials(api_settings())
    assert str(info.value) == NOT_CONFIGURED
    for name in (
        "API_AUTH_ACCOUNT_SID",
        "API_AUTH_TOKEN",
        "API_CREDENTIALS_FILE",
        "API_AUTH_DISABLED=true",
        "--insecure-no-auth",
    ):
        assert name in NOT_CONFIGURED


def test_open_only_when_asked() -> None:
    assert load_credentials(api_settings(API_AUTH_DISABLED="true")) is None
    assert load_credentials(Settings(database_url=DB["DATABASE_URL"], api_auth_disabled=True)) is (
        None
    )
    with pytest.raises(ConfigError):
        load_credentials(api_settings(API_AUTH_DISABLED="false"))
    # Open and credentials at once is ambiguous, however the settings were built.
    both = Settings(
        database_url=DB["DATABASE_URL"],
        api_auth_disabled=True,
        api_auth_account_sid=A,
        api_auth_token=TOKEN_A,
    )
    with pytest.raises(ConfigError, match="choose one"):
        load_credentials(both)


def test_environment_pair_and_file_combine(tmp_path: Path) -> None:
    path = write(tmp_path, f"{B}:{TOKEN_B}\n")
    creds = load_credentials(
        api_settings(
            API_AUTH_ACCOUNT_SID="AC" + "A" * 32,
            API_AUTH_TOKEN=TOKEN_A,
            API_CREDENTIALS_FILE=path,
        )
    )
    assert creds is not None
    assert creds.accounts == {A, B}
    assert creds.authenticate(A, TOKEN_A) == A
    assert creds.authenticate(B, TOKEN_B) == B


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"API_AUTH_ACCOUNT_SID": "AC123", "API_AUTH_TOKEN": TOKEN_A}, "API_AUTH_ACCOUNT_SID"),
        ({"API_AUTH_ACCOUNT_SID": A, "API_AUTH_TOKEN": "a b"}, "API_AUTH_TOKEN"),
    ],
)
def test_bad_environment_credentials_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as info:
        load_credentials(api_settings(**env))
    assert TOKEN_A not in str(info.value)


# -- the login check ---------------------------------------------------------------------------


def test_authenticate() -> None:
    creds = Credentials(((A, TOKEN_A.encode()), (B, TOKEN_B.encode()), (A, b"rotated")))
    assert creds.authenticate(A, TOKEN_A) == A
    assert creds.authenticate(A, "rotated") == A
    assert creds.authenticate("AC" + "A" * 32, TOKEN_A) == A  # SIDs compare canonically
    assert creds.authenticate(B, TOKEN_B) == B
    # Another account's token, a near miss, nothing, garbage: no account.
    for user, password in [
        (A, TOKEN_B),
        (B, TOKEN_A),
        (A, TOKEN_A + " "),
        (A, TOKEN_A[:-1]),
        ("", ""),
        (TOKEN_A, A),
        ("\udcff", "\udcff"),
        (A, "é"),
    ]:
        assert creds.authenticate(user, password) is None


def test_repr_never_shows_a_token() -> None:
    creds = Credentials(((A, TOKEN_A.encode()),))
    assert TOKEN_A not in repr(creds) and TOKEN_A not in str(creds)


def test_canonical_account_sid() -> None:
    assert canonical_account_sid("AC" + "F" * 32) == "AC" + "f" * 32
    for bad in ("", "AC", "ac" + "f" * 32, "AC" + "g" * 32, "AC" + "f" * 33, "MB" + "f" * 32):
        assert canonical_account_sid(bad) is None
