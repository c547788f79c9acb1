"""The read API's error body (worker/api/errors.py): Twilio's code, message, more_info and
status."""

from __future__ import annotations

from worker.api.errors import error_body


def test_error_body() -> None:
    assert error_body(404, 20404, "gone") == {
        "code": 20404,
        "message": "gone",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
