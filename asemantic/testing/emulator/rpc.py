"""Google-shaped errors: ``{"error": {"code", "message", "status", "details"?}}``."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from asemantic.testing.emulator.wire import EmulatorResponse

__all__ = [
    "ApiError",
    "REQUESTS_QUOTA",
    "STATUS_NAMES",
    "api_key_invalid",
    "bad_request",
    "enqueued_tokens_quota",
    "error_for_status",
    "html_not_found",
    "line_status",
    "missing_api_key",
]

#: The canonical status Google pairs with each HTTP code (400 is also used with
#: FAILED_PRECONDITION and OUT_OF_RANGE; callers say so explicitly).
STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_DEFAULT_MESSAGES: Mapping[int, str] = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits."
    ),
    500: (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ),
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_MISSING_KEY_MESSAGE = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
_INVALID_KEY_MESSAGE = "API key not valid. Please pass a valid API key."


class ApiError(Exception):
    """An error answer; handlers raise it and the emulator renders it."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = tuple(details)
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        """The JSON body Google sends for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = [dict(detail) for detail in self.details]
        return {"error": error}

    def response(self) -> EmulatorResponse:
        """The HTTP response for this error."""
        return EmulatorResponse.of_json(self.code, self.payload(), self.headers)


_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
REQUESTS_QUOTA: Mapping[str, Any] = {
    "quotaMetric": "generativelanguage.googleapis.com/embed_content_requests",
    "quotaId": "EmbedContentRequestsPerMinutePerProjectPerModel",
    "quotaDimensions": {"location": "global", "model": "gemini-embedding-001"},
    "quotaValue": "3000",
}
"""The violation an injected 429 reports (Google's shape; the numbers are made up)."""


def enqueued_tokens_quota(model: str, limit: int) -> dict[str, Any]:
    """The QuotaFailure violation of the batch enqueued-token quota."""
    return {
        "quotaMetric": "generativelanguage.googleapis.com/batch_enqueued_tokens",
        "quotaId": "BatchEnqueuedTokensPerModelPerProject",
        "quotaDimensions": {"location": "global", "model": model.removeprefix("models/")},
        "quotaValue": str(limit),
    }


def error_for_status(
    code: int,
    message: str | None = None,
    *,
    retry_delay: float | None = None,
    violation: Mapping[str, Any] | None = None,
) -> ApiError:
    """The error Google answers with ``code`` (429, 500, 503 ...), for injected faults.

    A 429 carries, in Google's order, a ``google.rpc.QuotaFailure`` (``violation``, or a
    requests-per-minute one), a ``google.rpc.Help`` link and, with ``retry_delay``, a
    ``google.rpc.RetryInfo`` (``"retryDelay": "17s"``); Google sends no ``Retry-After``.
    """
    details: list[dict[str, Any]] = []
    if code == 429:
        details.append({"@type": _QUOTA_FAILURE, "violations": [dict(violation or REQUESTS_QUOTA)]})
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            }
        )
        if retry_delay is not None:
            details.append({"@type": _RETRY_INFO, "retryDelay": f"{retry_delay:g}s"})
    text = message or _DEFAULT_MESSAGES.get(code, "The service encountered an error.")
    return ApiError(code, text, details=details)


def bad_request(messages: Sequence[str], violations: Sequence[tuple[str, str]] = ()) -> ApiError:
    """400 INVALID_ARGUMENT, with a ``google.rpc.BadRequest`` detail when given violations."""
    details: list[dict[str, Any]] = []
    if violations:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": field, "description": description}
                    for field, description in violations
                ],
            }
        )
    return ApiError(400, "\n".join(messages), details=details)


def missing_api_key() -> ApiError:
    """What Google answers a request without an API key."""
    return ApiError(403, _MISSING_KEY_MESSAGE)


def api_key_invalid() -> ApiError:
    """What Google answers a request whose API key it does not know."""
    return ApiError(
        400,
        _INVALID_KEY_MESSAGE,
        details=[
            {
                "@type": _ERROR_INFO,
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": _INVALID_KEY_MESSAGE,
            },
        ],
    )


def html_not_found(path: str) -> EmulatorResponse:
    """The HTML 404 page Google's front end serves for a URL no API method matches."""
    page = (
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
        "  <title>Error 404 (Not Found)!!1</title>\n"
        "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
        f"  <p>The requested URL <code>{html.escape(path)}</code> was not found on this server."
        "  <ins>That\u2019s all we know.</ins>\n"
    )
    return EmulatorResponse(
        status=404, headers={"content-type": "text/html; charset=UTF-8"}, body=page.encode()
    )


def line_status(code: int, message: str | None = None) -> dict[str, Any]:
    """A per-request error object as it appears in batch results."""
    text = message or _DEFAULT_MESSAGES.get(code, "The request failed.")
    return {"code": code, "message": text, "status": STATUS_NAMES.get(code, "UNKNOWN")}
