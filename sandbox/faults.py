"""Fault injection: per-service specs, applied by an ASGI middleware around the whole sandbox.

A spec is either random (rates, drawn from a seeded generator so a faulty run is repeatable) or a
script: an exact list of outcomes for the next matching requests ("429", "503", "drop", ...), which
is what tests use to say "one 429, then success" without relying on chance.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["ok", "500", "502", "503", "429", "drop", "malformed", "timeout", "status_error", "commit_timeout"]


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0, ge=0, le=1)  # answered with a 5xx
    error_statuses: list[int] = [500, 502, 503]
    rate_limit_rate: float = Field(0, ge=0, le=1)  # starts a 429 storm
    storm_length: int = Field(3, ge=1)  # requests answered 429 once a storm starts
    drop_rate: float = Field(0, ge=0, le=1)  # connection dropped mid-body
    malformed_rate: float = Field(0, ge=0, le=1)  # 200 with a truncated JSON body
    status_error_rate: float = Field(0, ge=0, le=1)  # 200 carrying an error envelope (PhotoShelter)
    latency_rate: float = Field(0, ge=0, le=1)
    latency_ms: int = Field(0, ge=0)
    timeout_rate: float = Field(0, ge=0, le=1)  # no answer for timeout_s
    timeout_s: float = Field(60, ge=0)
    # The request is handled (a write is committed), then the answer is held for timeout_s: the
    # client times out not knowing it succeeded. ("drop" also commits first, then cuts the body.)
    commit_timeout_rate: float = Field(0, ge=0, le=1)
    path_contains: str | None = None  # only requests whose path contains this
    script: list[Outcome] = []  # exact outcomes for the next matching requests, then random/ok
    seed: int = 0


class FaultState:
    """The live fault specs and their random generators and storm counters."""

    def __init__(self):
        self.specs: dict[str, FaultSpec] = {}
        self._rngs: dict[str, random.Random] = {}
        self._storms: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    def set(self, service: str, spec: FaultSpec) -> None:
        self.specs[service] = spec
        self._rngs[service] = random.Random(spec.seed)
        self._storms[service] = 0

    def clear(self, service: str | None = None) -> None:
        for name in [service] if service else list(self.specs):
            self.specs.pop(name, None)
            self._storms.pop(name, None)

    def draw(self, service: str, path: str) -> tuple[Outcome, FaultSpec | None]:
        spec = self.specs.get(service)
        if spec is None or (spec.path_contains and spec.path_contains not in path):
            return "ok", None
        outcome = self._draw(service, spec)
        if outcome != "ok":
            self.injected[outcome] = self.injected.get(outcome, 0) + 1
        return outcome, spec

    def _draw(self, service: str, spec: FaultSpec) -> Outcome:
        if spec.script:
            return spec.script.pop(0)
        if self._storms.get(service, 0) > 0:
            self._storms[service] -= 1
            return "429"
        rng = self._rngs[service]
        roll = rng.random()
        for outcome, rate in (("5xx", spec.error_rate), ("429", spec.rate_limit_rate), ("drop", spec.drop_rate),
                              ("malformed", spec.malformed_rate), ("status_error", spec.status_error_rate),
                              ("timeout", spec.timeout_rate), ("commit_timeout", spec.commit_timeout_rate)):
            if roll < rate:
                if outcome == "5xx":
                    return str(rng.choice(spec.error_statuses))  # type: ignore[return-value]
                if outcome == "429":
                    self._storms[service] = spec.storm_length - 1
                return outcome  # type: ignore[return-value]
            roll -= rate
        return "ok"

    def latency_s(self, service: str) -> float:
        spec = self.specs.get(service)
        if spec and spec.latency_ms and self._rngs[service].random() < spec.latency_rate:
            return spec.latency_ms / 1000
        return 0.0


# A service's own body for an injected status: service name -> (status -> (headers, body)).
ErrorRenderer = Callable[[int], tuple[dict[str, str], bytes]]


def default_error(status: int) -> tuple[dict[str, str], bytes]:
    return {}, json.dumps({"error": {"msg": f"injected {status}"}}).encode()


class FaultMiddleware:
    """Applies the service's fault spec to each request under its path prefix."""

    def __init__(self, app, faults: FaultState, service_of: Callable[[str], str | None],
                 renderers: dict[str, ErrorRenderer]):
        self.app = app
        self.faults = faults
        self.service_of = service_of
        self.renderers = renderers

    async def __call__(self, scope, receive, send):
        service = self.service_of(scope["path"]) if scope["type"] == "http" else None
        if service is None:
            return await self.app(scope, receive, send)
        if delay := self.faults.latency_s(service):
            await asyncio.sleep(delay)
        outcome, spec = self.faults.draw(service, scope["path"])
        if outcome == "ok":
            return await self.app(scope, receive, send)
        if outcome == "timeout":
            await asyncio.sleep(spec.timeout_s)
            return await self.app(scope, receive, send)
        if outcome == "commit_timeout":
            return await self.app(scope, receive, _late_send(send, spec.timeout_s))
        if outcome.isdigit() or outcome == "status_error":
            status = 200 if outcome == "status_error" else int(outcome)
            headers, body = self.renderers.get(service, default_error)(status)
            return await _send_whole(send, status, headers, body)
        return await self.app(scope, receive, _mangling_send(send, outcome))


async def _send_whole(send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class DroppedConnection(Exception):
    """Raised inside the server to abort a response mid-body; the server then closes the socket."""


def _mangling_send(send, outcome: Outcome):
    """Wrap `send` so the real response is truncated: cut JSON (malformed) or a dropped socket."""
    state: dict = {}

    async def wrapped(message):
        if message["type"] == "http.response.start":
            state["start"] = message
            return
        body = message.get("body", b"")
        half = body[: max(1, len(body) // 2)]
        start = state["start"]
        if outcome == "malformed":
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(half)).encode()))
            await send({**start, "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": half})
            return
        await send(start)  # keeps the full content-length, so the client sees a short body
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise DroppedConnection("sandbox fault: connection dropped mid-body")

    return wrapped


def _late_send(send, delay_s: float):
    """Wrap `send` so the handled response goes out only after `delay_s` (the client has given up)."""

    async def wrapped(message):
        if message["type"] == "http.response.start":
            await asyncio.sleep(delay_s)
        await send(message)

    return wrapped
