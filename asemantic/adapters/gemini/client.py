"""Building google-genai clients and translating what goes wrong.

Every client is built with an explicit ``api_key`` (the SDK would otherwise read
``GOOGLE_API_KEY``/``GEMINI_API_KEY`` from the environment), ``vertexai=False`` and API
version ``v1beta`` (SDK 3.x defaults to ``v1``, which serves neither batches nor files).
asemantic passes its own ``httpx2.AsyncClient`` so that the transport is the same
whether or not aiohttp happens to be importable, and so tests can inject a transport.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from asemantic.adapters.gemini.transfer import TransferTimeout
from asemantic.domain.policy import (
    RetryConfig,
    is_retryable_status,
    is_token_quota_refusal,
    retry_info_delay,
    scrub,
)
from asemantic.errors import (
    AuthenticationError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitError,
    StoreClosedError,
)
from asemantic.keys import Secret

__all__ = [
    "ClientHandle",
    "GOOGLE_BASE_URL",
    "LazyClient",
    "call_with_retries",
    "open_client",
    "raw_json",
    "translate_error",
]

GOOGLE_BASE_URL = "https://generativelanguage.googleapis.com"
"""Where the Developer API lives when no ``base_url`` is given."""

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

try:  # httpx is optional: the SDK runs on it only when the caller injects a client.
    import httpx as _httpx

    _TIMEOUTS: tuple[type[BaseException], ...] = (
        TimeoutError,
        httpx2.TimeoutException,
        _httpx.TimeoutException,
    )
    _TRANSPORT: tuple[type[BaseException], ...] = (httpx2.TransportError, _httpx.TransportError)
except ImportError:  # pragma: no cover - depends on the environment
    _TIMEOUTS = (TimeoutError, httpx2.TimeoutException)
    _TRANSPORT = (httpx2.TransportError,)


@dataclass(frozen=True, slots=True)
class ClientHandle:
    """A genai client and the HTTP client it runs on (closed together if we made it)."""

    client: genai.Client
    http: Any
    owns_http: bool = True
    base_url: str = GOOGLE_BASE_URL

    def __repr__(self) -> str:
        return "ClientHandle(<genai client>)"

    async def aclose(self) -> None:
        if self.owns_http:
            await self.http.aclose()


def open_client(
    key: Secret,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    transport: httpx2.AsyncBaseTransport | None = None,
    http_client: Any = None,
) -> ClientHandle:
    """A google-genai client for one key (no I/O happens here).

    ``http_client`` is an ``httpx.AsyncClient`` or ``httpx2.AsyncClient`` the caller
    owns (and closes): for proxies, custom TLS, or ``respx`` in unit tests. Otherwise
    asemantic makes its own ``httpx2.AsyncClient`` (with ``transport`` when given).
    """
    owns = http_client is None
    http = (
        http_client
        if http_client is not None
        else httpx2.AsyncClient(transport=transport, timeout=timeout)
    )
    options = types.HttpOptions(
        api_version="v1beta",
        base_url=base_url,
        timeout=int(timeout * 1000),
        httpx_async_client=http,
    )
    client = genai.Client(api_key=key.reveal(), vertexai=False, http_options=options)
    return ClientHandle(
        client=client, http=http, owns_http=owns, base_url=(base_url or GOOGLE_BASE_URL).rstrip("/")
    )


async def raw_json(handle: ClientHandle, method: str, path: str) -> dict[str, Any]:
    """One JSON call through the SDK's own API client (its URL building, key header and
    error raising), returning the body as parsed JSON rather than as SDK types.

    Used where the SDK's types drop fields asemantic needs (a batch's ``done`` and
    ``error``). ``path`` is relative to the API version (``batches/abc``).
    """
    response = await handle.client.aio._api_client.async_request(method, path, {}, None)
    body = response.body
    parsed = json.loads(body) if body else {}
    return parsed if isinstance(parsed, dict) else {}


class LazyClient:
    """One key's google-genai client, made on first use and closed once.

    Building the client does no I/O, but it is still deferred, so an adapter that is
    never used costs nothing; after :meth:`aclose`, :meth:`get` raises ``closed_error``.
    """

    def __init__(
        self,
        key: Secret,
        *,
        base_url: str | None,
        timeout: float,
        transport: httpx2.AsyncBaseTransport | None,
        http_client: Any,
        what: str,
    ) -> None:
        self._key = key
        self._base_url = base_url
        self._timeout = timeout
        self._transport = transport
        self._http_client = http_client
        self._what = what
        self._handle: ClientHandle | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"LazyClient({self._what})"

    def get(self) -> ClientHandle:
        if self._closed:
            raise StoreClosedError(f"the {self._what} is closed")
        if self._handle is None:
            self._handle = open_client(
                self._key,
                base_url=self._base_url,
                timeout=self._timeout,
                transport=self._transport,
                http_client=self._http_client,
            )
        return self._handle

    async def aclose(self) -> None:
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.aclose()


def translate_error(
    exc: BaseException, *, what: str, secrets: Iterable[Secret] = ()
) -> ProviderError:
    """Turn an SDK or transport error into an asemantic error with no key in it."""
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code) if exc.code else None
        status = str(exc.status or "")
        message = scrub(str(exc.message or ""), secrets)[:500]
        text = scrub(f"{what} failed: {code} {status}: {message}".strip(), secrets)
        if code == 403 and "may not exist" in message:
            # Google answers 403 for a file that is gone (or never was): not a key problem.
            return ProviderRequestError(text, status=404)
        if code in (401, 403) or "API_KEY" in str(exc.details) or "API key" in message:
            return AuthenticationError(text, status=code)
        if code == 429:
            return RateLimitError(
                text,
                status=code,
                retry_after=retry_after_seconds(exc),
                token_quota=is_token_quota_refusal(exc.details, message),
            )
        if code is not None and code >= 500:
            return ProviderUnavailableError(text, status=code, retry_after=retry_after_seconds(exc))
        return ProviderRequestError(text, status=code)
    if isinstance(exc, TransferTimeout):
        return ProviderUnavailableError(f"{what} {exc}")
    if isinstance(exc, _TIMEOUTS):
        return ProviderUnavailableError(f"{what} timed out")
    if isinstance(exc, _TRANSPORT):
        return ProviderUnavailableError(
            f"{what} failed: cannot reach the provider ({type(exc).__name__})"
        )
    return ProviderError(scrub(f"{what} failed: {type(exc).__name__}: {exc}", secrets)[:500])


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed call is worth trying again: a retryable HTTP status (see
    :func:`asemantic.domain.policy.is_retryable_status`), a timeout or a transport error."""
    if isinstance(exc, genai_errors.APIError):
        return is_retryable_status(exc.code)
    return isinstance(exc, _TIMEOUTS + _TRANSPORT)


def retry_after_seconds(exc: BaseException) -> float | None:
    """How long the provider asked us to wait, in seconds, or None.

    Google puts it in a ``google.rpc.RetryInfo`` detail of the error body (its 429s
    send no ``Retry-After`` header); a ``Retry-After`` header (a proxy's) counts too.
    """
    if isinstance(exc, genai_errors.APIError):
        delay = retry_info_delay(exc.details)
        if delay is not None:
            return delay
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


async def call_with_retries(
    operation: Callable[[], Awaitable[_T]],
    *,
    what: str,
    retry: RetryConfig,
    secrets: Iterable[Secret] = (),
    rng: random.Random | None = None,
    bounded: bool = True,
) -> _T:
    """Run an idempotent call with a timeout per attempt and retries on 408/429/5xx.

    ``bounded=False`` drops the per-attempt timeout, for calls that bound themselves
    (file transfers: idle and size-derived limits, :mod:`.transfer`).
    """
    rng = rng or random.Random()
    secrets = tuple(secrets)
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(retry.timeout if bounded else None):
                return await operation()
        except Exception as exc:  # noqa: BLE001 - translated; CancelledError is not an Exception
            failure: Exception = exc
        if attempt >= retry.attempts or not is_retryable(failure):
            # Raised outside the ``except`` block and with the SDK's exception dropped
            # from this frame: that exception holds the HTTP request, and with it the
            # ``x-goog-api-key`` header. ``raise ... from None`` would only hide it from
            # tracebacks; ``__context__`` (and frame locals) would still reach it.
            error = translate_error(failure, what=what, secrets=secrets)
            del failure
            raise error
        delay = retry.delay(attempt, rng, retry_after_seconds(failure))
        del failure
        logger.warning("provider call failed, retrying", extra={"call": what})
        await asyncio.sleep(delay)
