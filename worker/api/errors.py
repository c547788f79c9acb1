"""Twilio-shaped error responses: the exception handlers raise and the body clients parse.

Twilio's helper libraries read ``code`` and ``message`` from a JSON body (the "legacy"
format without RFC 9457's ``type``/``title``), so every error this API returns has exactly
Twilio's four fields: ``code``, ``message``, ``more_info`` and ``status``.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

# Twilio error codes used by this API (https://www.twilio.com/docs/api/errors).
INVALID_PARAMETER: Final = 20001
AUTHENTICATE: Final = 20003
METHOD_NOT_ALLOWED: Final = 20004
NOT_FOUND: Final = 20404
INTERNAL_ERROR: Final = 20500
SERVICE_UNAVAILABLE: Final = 20503

_MORE_INFO: Final = "https://www.twilio.com/docs/errors/{code}"


class ApiError(Exception):
    """An error that becomes a Twilio error body with this HTTP status and Twilio code."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """The JSON body Twilio sends for an error."""
    return {
        "code": code,
        "message": message,
        "more_info": _MORE_INFO.format(code=code),
        "status": status,
    }


def error_response(error: ApiError) -> web.Response:
    return web.json_response(
        error_body(error.status, error.code, error.message),
        status=error.status,
        headers=error.headers,
    )


def invalid_parameter(message: str, parameter: str | None = None) -> ApiError:
    """A 400 for a malformed path SID or query parameter."""
    del parameter  # named at call sites for readability; the message already says it
    return ApiError(400, INVALID_PARAMETER, message)


def not_found(path: str) -> ApiError:
    """A 404 worded like Twilio's: the resource is named by its path."""
    return ApiError(404, NOT_FOUND, f"The requested resource {path} was not found")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a Twilio error body, so no client ever sees HTML or a trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        return error_response(not_found(request.path))
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            ApiError(
                405,
                METHOD_NOT_ALLOWED,
                f"Method {request.method} not allowed; this API is read-only",
                headers={"Allow": ",".join(sorted(exc.allowed_methods))},
            )
        )
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.ConnectionDoesNotExistError,
    ):
        # The database is down or restarting: a retryable condition, not a bug.
        request.app.logger.warning("database unavailable", exc_info=True)
        return error_response(
            ApiError(503, SERVICE_UNAVAILABLE, "The delivery receipts store is unavailable")
        )
    except asyncpg.QueryCanceledError:
        # statement_timeout fired: the request asked for more than this API serves.
        return error_response(
            ApiError(503, SERVICE_UNAVAILABLE, "The query took too long; try a smaller window")
        )
    except web.HTTPException:
        raise
    except Exception:
        request.app.logger.exception("unhandled error serving %s", request.path)
        return error_response(ApiError(500, INTERNAL_ERROR, "Internal server error"))
