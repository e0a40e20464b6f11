"""The HTTP layer every service client shares: timeouts, bounded retries, pacing, typed errors.

One place decides what is safe to retry: connection failures before the request left, 429s (the
service refused it) and, for idempotent calls only, 5xx, timeouts and truncated bodies. A POST that
may have been applied is never re-sent blindly; its client decides (Plytix's 409 handling, say).
Errors name the service, method, path, status and request id, and never carry a secret: request
bodies and headers are never quoted, only a short slice of the service's own response.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

log = logging.getLogger("catalog_ops.http")
REQUEST_ID_HEADERS = ("request-id", "x-request-id", "x-kong-request-id", "x-ms-request-id")
# Services announce retirements in these; the contracts ask clients to log them.
DEPRECATION_HEADERS = ("x-plytix-deprecation", "x-shopify-api-deprecated-reason", "deprecation", "sunset")


class ServiceError(Exception):
    """A call to an outside service failed for good. Safe to log and show: it holds no secret."""

    def __init__(self, service: str, method: str, path: str, status: int | None, request_id: str | None,
                 detail: str, attempts: int = 1):
        self.service, self.method, self.path = service, method, path
        self.status, self.request_id, self.detail, self.attempts = status, request_id, detail, attempts
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{service} {method} {path} failed: {where}, request id {request_id or 'none'}, "
                         f"after {attempts} attempt(s): {detail}")


class ServiceUnavailable(ServiceError):
    """5xx, timeouts or dropped connections beyond the retry budget."""


class NotSent(ServiceUnavailable):
    """The connection failed before the request left (refused, connect timeout): nothing reached the
    service, so even a non-idempotent call is safe to send again."""


class RateLimited(ServiceError):
    """Still rate limited (429) after the retry budget."""


class AuthenticationFailed(ServiceError):
    """Credentials rejected, or a token refused even right after re-authenticating."""


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class RequestRejected(ServiceError):
    """The service refused the request as invalid (400/403/405/422/428...): retrying cannot help."""


class MalformedResponse(ServiceError):
    """A 2xx whose body is not the JSON the contract promises."""


class UnexpectedRedirect(ServiceError):
    """A 3xx: following it would drop `Authorization`, so it is a bug in the path, never followed."""


_BY_STATUS = {401: AuthenticationFailed, 404: NotFound, 409: Conflict}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 600.0  # a Retry-After beyond this is treated as an outage
    # Some hosts ask for a steady pace on 5xx rather than a growing one (Plytix auth: every 5 s).
    server_error_delay_s: float | None = None

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential from `base_delay_s` to `max_delay_s`, with jitter so workers spread out."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


class Pacer:
    """Client-side rate limit shared by every thread using one client: at most `rate` calls/s."""

    def __init__(self, rate_per_s: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON, or None for an empty body
    request_id: str | None


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_delay_scale() -> float:
    """`CATALOG_OPS_HTTP_RETRY_DELAY_SCALE` (default 1) multiplies every retry wait, backoff and Retry-After
    alike. Only for tests against the sandbox, whose injected faults need no real waiting; never set it
    against the real services, whose Retry-After must be honoured in full."""
    return float(os.environ.get("CATALOG_OPS_HTTP_RETRY_DELAY_SCALE") or 1)


def _detail(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:300] or response.reason_phrase


class HttpService:
    """An httpx.Client for one service's host with the project's retry and error rules."""

    def __init__(self, service: str, base_url: str, *, timeout: httpx.Timeout | float = 30.0,
                 retry: RetryPolicy | None = None, pacer: Pacer | None = None,
                 transport: httpx.BaseTransport | None = None, headers: dict[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        self.service = service
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or Pacer(None)
        self.sleep = sleep
        self._rng = random.Random(seed)
        self.requests_sent = 0  # every attempt, for run metadata
        self._deprecations_seen: set[tuple[str, str]] = set()
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, follow_redirects=False,
                                   transport=transport, headers=headers)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, *, idempotent: bool = True,
                auth: Callable[[], dict[str, str]] | None = None,
                on_unauthorized: Callable[[], None] | None = None,
                ok_statuses: tuple[int, ...] = (), **kwargs) -> Reply:
        """Send with retries; return the reply for 2xx and `ok_statuses`, raise ServiceError otherwise.

        `on_unauthorized` is called once on a 401 (re-authenticate) and the call retried once.
        """
        attempt, reauthenticated = 0, False
        extra_headers = kwargs.pop("headers", None) or {}
        while True:
            attempt += 1
            self.pacer.wait()
            client_request_id = uuid.uuid4().hex
            headers = {**extra_headers, **(auth() if auth else {}), "X-Request-Id": client_request_id}
            self.requests_sent += 1
            try:
                response = self.client.request(method, path, headers=headers, **kwargs)
                body = response.read()
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if (sent and not idempotent) or attempt >= self.retry.max_attempts:
                    hint = " (not retried: the request may have been applied)" if sent and not idempotent else ""
                    raise (ServiceUnavailable if sent else NotSent)(
                        self.service, method, path, None, f"client:{client_request_id}", reason + hint, attempt
                    ) from None
                self._wait(attempt, None, method, path, reason)
                continue
            # The service's own id if it sends one, else ours (sent as X-Request-Id) for correlation.
            request_id = next((response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers),
                              f"client:{client_request_id}")
            self._note_deprecation(response.headers, method, path)
            status = response.status_code
            if status == 401 and on_unauthorized and not reauthenticated:
                reauthenticated = True
                on_unauthorized()
                continue
            if status in ok_statuses or 200 <= status < 300:
                try:
                    parsed = self._parse(response, body, method, path, request_id, attempt)
                except MalformedResponse as exc:
                    # A truncated body can be a transient proxy fault: re-read, within the budget.
                    if not idempotent or attempt >= self.retry.max_attempts:
                        raise
                    self._wait(attempt, None, method, path, exc.detail)
                    continue
                return Reply(status, response.headers, parsed, request_id)
            if 300 <= status < 400:
                raise UnexpectedRedirect(self.service, method, path, status, request_id,
                                         f"redirect to {response.headers.get('location')!r} not followed", attempt)
            retryable = status == 429 or (status >= 500 and idempotent)
            if not retryable or attempt >= self.retry.max_attempts:
                cls = RateLimited if status == 429 else ServiceUnavailable if status >= 500 else \
                    _BY_STATUS.get(status, RequestRejected)
                raise cls(self.service, method, path, status, request_id, _detail(response), attempt)
            delay = retry_after_s(response.headers)
            if delay is None and status >= 500 and self.retry.server_error_delay_s is not None:
                delay = self.retry.server_error_delay_s
            self._wait(attempt, delay, method, path, f"HTTP {status}")

    def _parse(self, response: httpx.Response, body: bytes, method: str, path: str, request_id: str | None,
               attempt: int) -> Any:
        if not body:
            return None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedResponse(self.service, method, path, response.status_code, request_id,
                                    f"body is not valid JSON ({exc.msg} at char {exc.pos}; {len(body)} bytes)"
                                    if isinstance(exc, json.JSONDecodeError) else "body is not UTF-8", attempt) from None

    def _note_deprecation(self, headers: httpx.Headers, method: str, path: str) -> None:
        for name in DEPRECATION_HEADERS:
            value = headers.get(name)
            if value and (name, value) not in self._deprecations_seen:  # once per message, not per call
                self._deprecations_seen.add((name, value))
                log.warning("%s %s %s: deprecation notice %s: %s", self.service, method, path, name, value)

    def _wait(self, attempt: int, retry_after: float | None, method: str, path: str, reason: str) -> None:
        delay = retry_after if retry_after is not None else self.retry.backoff(attempt, self._rng)
        if delay > self.retry.max_retry_after_s:
            delay = self.retry.max_retry_after_s
        delay *= retry_delay_scale()
        log.warning("%s %s %s: %s, retry %d/%d in %.1fs", self.service, method, path, reason, attempt,
                    self.retry.max_attempts - 1, delay)
        self.sleep(delay)
