"""Twilio's helper library pointed at the local read API, and the OpenAPI contracts every
response of the API tests is validated against.

Two documents: Twilio's official one (tests/integration/openapi/, see its README) for the
200 answers of Twilio's own paths, and the project's docs/openapi.yaml for every answer,
errors and extensions included.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

ROOT = Path(__file__).resolve().parents[2]
PROJECT_OPENAPI_PATH = ROOT / "docs" / "openapi.yaml"
TWILIO_OPENAPI_PATH = Path(__file__).parent / "openapi" / "twilio_conversations_v1.json"
TWILIO_ORIGIN = "https://conversations.twilio.com"
# The project document's server; openapi-core routes by it, the real host does not matter.
PROJECT_ORIGIN = "http://localhost:8000"
# The status enums the official document forgot to make nullable (see openapi/README.md).
_NULLABLE_STATUS_ENUMS = (
    "conversation_message_receipt_enum_delivery_status",
    "service_conversation_message_receipt_enum_delivery_status",
)


def twilio_document() -> dict[str, Any]:
    """The vendored official document, exactly as published."""
    doc: dict[str, Any] = json.loads(TWILIO_OPENAPI_PATH.read_text())
    return doc


@cache
def load_twilio_openapi() -> OpenAPI:
    """Twilio's document with its one erratum: a receipt status may be null."""
    doc = copy.deepcopy(twilio_document())
    schemas = doc["components"]["schemas"]
    for name in _NULLABLE_STATUS_ENUMS:
        schema = schemas[name]
        # Fails the day Twilio fixes the document: then this erratum is to be removed.
        assert not schema.get("nullable") and None not in schema["enum"], name
        schema["nullable"] = True
        schema["enum"] = [*schema["enum"], None]
    return OpenAPI.from_dict(doc)


@cache
def load_project_openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(PROJECT_OPENAPI_PATH))


def is_twilio_path(path: str) -> bool:
    """A path of Twilio's Conversations API (not one of this API's extensions)."""
    return path.startswith(("/v1/Conversations/", "/v1/Services/")) and not path.endswith(
        "/History"
    )


def validate(url: str, status: int, body: bytes, headers: Mapping[str, str]) -> None:
    """Validate one response against the project's document and, for a 200 of a Twilio
    path, against Twilio's official one; raises with the reason if either disagrees."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    content_type = headers.get("Content-Type", "application/json").split(";")[0]
    response = MockResponse(
        body, status_code=status, headers=dict(headers), content_type=content_type
    )
    load_project_openapi().validate_response(
        MockRequest(PROJECT_ORIGIN, "get", parts.path, args=query), response
    )
    if status == 200 and is_twilio_path(parts.path):
        load_twilio_openapi().validate_response(
            MockRequest(TWILIO_ORIGIN, "get", parts.path, args=query), response
        )


class LocalHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, sending what it meant for Twilio to the local server, and
    validating every answer against both OpenAPI documents."""

    def __init__(self, base_url: str, aliases: tuple[str, ...] = ()) -> None:
        super().__init__(timeout=10)
        self.base_url = base_url
        # Twilio's origin, and any public base URL the server writes into next_page_url.
        self.origins = (TWILIO_ORIGIN, *aliases)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for origin in self.origins:
            if url.startswith(origin):
                url = self.base_url + url[len(origin) :]
                break
        response = super().request(method, url, *args, **kwargs)
        params = kwargs.get("params") or (args[0] if args else None)
        full = f"{url}?{urlencode(params)}" if params else url
        validate(full, response.status_code, response.text.encode(), response.headers)
        return response


def twilio_client(base_url: str, auth: tuple[str, str], aliases: tuple[str, ...] = ()) -> Client:
    return Client(auth[0], auth[1], http_client=LocalHttpClient(base_url, aliases))


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def twilio_error(exc: TwilioException) -> tuple[int, int]:
    """(HTTP status, Twilio code) of what the library raised.

    Fetches raise TwilioRestException; list pages raise a bare TwilioException carrying the
    response (the library's own behaviour against Twilio too).
    """
    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code
    response = exc.args[1]
    return response.status_code, json.loads(response.text)["code"]


async def in_thread(fn: Callable[[], Any]) -> Any:
    """The twilio client is synchronous; the server runs on the test's loop."""
    return await asyncio.to_thread(fn)
