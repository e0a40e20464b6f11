"""Outgoing webhooks, shared by Shopify and Threekit (shopify.md §9.3-9.4, threekit.md §5).

One hub does registration, delivery, retries, duplicates, reordering and the delivery log; each
service only builds its payloads and headers (an `Outgoing`) and calls `hub(state).emit(...)` when
its world changes, or registers a builder in `BUILDERS` for `POST /_sandbox/webhooks/deliver`.

Deliveries run as asyncio tasks on the server's event loop with one httpx.AsyncClient, so a slow
receiver never blocks a request. The body is frozen when emitted (signed once) and every retry,
and every injected duplicate, resends the same bytes and headers under the same delivery id.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Outgoing:
    topic: str  # e.g. "orders/updated" or "order.updated"
    body: bytes  # the exact bytes, frozen (signed once, resent verbatim on retries)
    headers: Callable[[str, str], dict[str, str]]  # (delivery_id, event_id) -> that delivery's headers
    resource_id: str | None = None  # for the log


# service name -> builder for POST /_sandbox/webhooks/deliver: (state, topic, resource_id, sample) -> Outgoing,
# raising KeyError/LookupError for an unknown resource (-> 404) or ValueError for an unknown topic (-> 400)
BUILDERS: dict[str, Callable[..., Outgoing]] = {}
# service name -> its topic list (registrations without `topics` get all) and default retry schedule
TOPICS: dict[str, list[str]] = {}
DEFAULT_RETRY_SCHEDULE_S = {"shopify": [1, 2, 4, 8, 16, 32, 64, 128], "threekit": [1, 5, 30]}
TIMEOUTS_S = {"shopify": (1.0, 5.0), "threekit": (1.0, 10.0)}  # (connect, answer)
FALLBACK_TIMEOUT_S = (1.0, 5.0)
FALLBACK_RETRY_SCHEDULE_S = [1, 5, 30]
MAX_LOGGED = 100_000  # the delivery log keeps the most recent attempts


def hub(state) -> WebhookHub:
    # Per-service state: a reset (or a world rebuild) drops registrations and stops pending retries.
    return state.per_service("webhooks", lambda: WebhookHub(state))


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class RegistrationRequest(BaseModel):
    """The body of `POST /_sandbox/webhooks`."""

    model_config = ConfigDict(extra="forbid")

    service: str
    address: str = Field(pattern=r"^https?://\S+$")
    topics: list[str] | None = None
    duplicate_rate: float = Field(0, ge=0, le=1)
    reorder_window_s: float = Field(0, ge=0)
    retry_schedule_s: list[float] | None = None


@dataclass
class Registration:
    id: str
    service: str
    address: str
    topics: list[str]
    duplicate_rate: float
    reorder_window_s: float
    retry_schedule_s: list[float]
    active: bool = True
    created_at: str = ""  # not in the admin JSON; for services that list their webhooks (Threekit)

    def public(self) -> dict:
        return {"id": self.id, "service": self.service, "address": self.address, "topics": list(self.topics),
                "duplicate_rate": self.duplicate_rate, "reorder_window_s": self.reorder_window_s,
                "retry_schedule_s": list(self.retry_schedule_s), "active": self.active}


@dataclass
class _Delivery:
    id: str  # the delivery id (Shopify's Webhook-Id, Threekit's Delivery-Id), kept across retries
    event_id: str
    registration: Registration
    outgoing: Outgoing
    headers: dict[str, str]
    first_sent: asyncio.Event | None = field(default=None, repr=False)


class WebhookHub:
    def __init__(self, state=None, seed: int = 0):
        self.state = state
        self.registrations: dict[str, Registration] = {}
        self.log: deque[dict] = deque(maxlen=MAX_LOGGED)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._fault_rngs: dict[str, tuple[Any, random.Random]] = {}
        self._held: dict[str, list[_Delivery]] = {}  # registration id -> deliveries held for reordering
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, once seen
        self._own_loop: asyncio.AbstractEventLoop | None = None  # only when emitted with no server loop
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # ---- registrations ----
    def register(self, service: str, address: str, topics: list[str] | None = None, duplicate_rate: float = 0,
                 reorder_window_s: float = 0, retry_schedule_s: list[float] | None = None) -> Registration:
        """Add a registration, replacing any with the same service and address. ValueError names an
        unknown service or topic."""
        self._remember_loop()
        if service not in TOPICS:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(sorted(TOPICS))}")
        unknown = sorted(set(topics or []) - set(TOPICS[service]))
        if unknown:
            raise ValueError(f"unknown {service} topic(s): {', '.join(unknown)}")
        if retry_schedule_s is not None and any(s < 0 for s in retry_schedule_s):
            raise ValueError("retry_schedule_s: delays must be >= 0")
        schedule = retry_schedule_s if retry_schedule_s is not None else \
            DEFAULT_RETRY_SCHEDULE_S.get(service, FALLBACK_RETRY_SCHEDULE_S)
        registration = Registration(str(uuid.uuid4()), service, address, list(topics or TOPICS[service]),
                                    duplicate_rate, reorder_window_s, list(schedule), created_at=_stamp(self._now()))
        with self._lock:
            for old in [r for r in self.registrations.values() if r.service == service and r.address == address]:
                del self.registrations[old.id]
            self.registrations[registration.id] = registration
        return registration

    def remove(self, registration_id: str) -> bool:
        with self._lock:
            return self.registrations.pop(registration_id, None) is not None

    def registrations_of(self, service: str | None = None) -> list[Registration]:
        with self._lock:
            return [r for r in self.registrations.values() if service is None or r.service == service]

    def deliveries_of(self, service: str | None = None) -> list[dict]:
        with self._lock:
            entries = list(self.log)
        return [{k: v for k, v in e.items() if k != "service"} for e in entries
                if service is None or e["service"] == service]

    # ---- emission ----
    def emit(self, service: str, outgoing: Outgoing) -> dict:
        """Called by a service when its world changes (or by /deliver). Returns at once with
        {"event_id": uuid, "webhook_ids": [one uuid per matching active registration]}; deliveries
        run as asyncio tasks on the server's loop (hold back by reorder_window_s, shuffle; resend
        with the same delivery id at duplicate_rate; retry non-2xx/timeouts per the registration's
        retry_schedule_s; after the schedule is exhausted set the registration "active": false)."""
        event_id = str(uuid.uuid4())
        with self._lock:
            matching = [r for r in self.registrations.values()
                        if r.service == service and r.active and outgoing.topic in r.topics]
        deliveries = []
        for registration in matching:
            delivery_id = str(uuid.uuid4())
            deliveries.append(_Delivery(delivery_id, event_id, registration, outgoing,
                                        dict(outgoing.headers(delivery_id, event_id))))
        if deliveries:
            self._schedule(deliveries)
        return {"event_id": event_id, "webhook_ids": [d.id for d in deliveries]}

    def _remember_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if loop is not self._own_loop:
            self._loop = loop
        return loop

    def _schedule(self, deliveries: list[_Delivery]) -> None:
        if self._remember_loop() is not None:
            self._dispatch(deliveries)
            return
        # Emitted from a worker thread (a sync handler) or outside the server: hand over to a loop.
        loop = self._loop if self._loop is not None and self._loop.is_running() else self._private_loop()
        loop.call_soon_threadsafe(self._dispatch, deliveries)

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._own_loop is None:
                self._own_loop = asyncio.new_event_loop()
                threading.Thread(target=self._own_loop.run_forever, name="webhook-hub", daemon=True).start()
            return self._own_loop

    def _dispatch(self, deliveries: list[_Delivery]) -> None:
        """On the loop: send now, or hold per registration for its reorder window then send shuffled."""
        loop = asyncio.get_running_loop()
        for delivery in deliveries:
            window = delivery.registration.reorder_window_s
            if window <= 0:
                self._start(delivery, None)
                continue
            held = self._held.setdefault(delivery.registration.id, [])
            if not held:
                loop.call_later(window, self._release, delivery.registration.id)
            held.append(delivery)

    def _release(self, registration_id: str) -> None:
        batch = self._held.pop(registration_id, [])
        self._rng.shuffle(batch)
        # First attempts go out one after another in the shuffled order, so the receiver sees it.
        previous: asyncio.Event | None = None
        for delivery in batch:
            delivery.first_sent = asyncio.Event()
            self._start(delivery, previous)
            previous = delivery.first_sent

    def _start(self, delivery: _Delivery, after: asyncio.Event | None) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _live(self, registration: Registration) -> bool:
        """Still registered and active, and this hub is still the sandbox's (not dropped by a reset)."""
        if self.state is not None and self.state.service_state.get("webhooks") is not self:
            return False
        return registration.active and self.registrations.get(registration.id) is registration

    async def _deliver(self, delivery: _Delivery, after: asyncio.Event | None) -> None:
        registration = delivery.registration
        try:
            if after is not None:
                await after.wait()
            attempt = 1
            while self._live(registration):
                status = await self._send(delivery, attempt, duplicate=False)
                if delivery.first_sent is not None:
                    delivery.first_sent.set()
                if status is not None and 200 <= status < 300:
                    if self._rng.random() < registration.duplicate_rate:
                        await self._send(delivery, attempt, duplicate=True)
                    return
                if attempt > len(registration.retry_schedule_s):
                    registration.active = False  # the schedule is exhausted
                    return
                await asyncio.sleep(registration.retry_schedule_s[attempt - 1])
                attempt += 1
        finally:
            if delivery.first_sent is not None:
                delivery.first_sent.set()  # never hold back the rest of a batch

    async def _send(self, delivery: _Delivery, attempt: int, duplicate: bool) -> int | None:
        """One POST; None on a timeout, a refused connection, or an attempt lost to an injected fault."""
        service = delivery.registration.service
        lost = await self._fault(service)
        sent_at = _stamp(self._now())
        status = None
        if not lost:
            connect, answer = TIMEOUTS_S.get(service, FALLBACK_TIMEOUT_S)
            try:
                response = await self._http().post(delivery.registration.address, content=delivery.outgoing.body,
                                                   headers=delivery.headers,
                                                   timeout=httpx.Timeout(answer, connect=connect))
                status = response.status_code  # a 3xx is a failure too: redirects are not followed
            except httpx.HTTPError:
                status = None
        entry = {"webhook_id": delivery.id, "event_id": delivery.event_id, "topic": delivery.outgoing.topic,
                 "registration_id": delivery.registration.id, "attempt": attempt, "status_code": status,
                 "duplicate": duplicate, "sent_at": sent_at, "resource_id": delivery.outgoing.resource_id,
                 "service": service}
        with self._lock:
            self.log.append(entry)
        return status

    async def _fault(self, service: str) -> bool:
        """The service's `/_sandbox/faults` spec, kept simple: `latency_ms` (at `latency_rate`) delays
        the attempt and `error_rate` loses it. Specs limited by `path_contains` target requests only."""
        faults = getattr(self.state, "faults", None)
        spec = faults.specs.get(service) if faults is not None else None
        if spec is None or spec.path_contains:
            return False
        known = self._fault_rngs.get(service)
        if known is None or known[0] is not spec:  # a new spec restarts its own seeded sequence
            known = (spec, random.Random(spec.seed))
            self._fault_rngs[service] = known
        rng = known[1]
        if spec.latency_ms and rng.random() < spec.latency_rate:
            await asyncio.sleep(spec.latency_ms / 1000)
        return rng.random() < spec.error_rate

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # trust_env=False: receivers are on loopback; a developer's proxy settings must not apply.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self._client_loop = loop
        return self._client

    def _now(self) -> datetime:
        if self.state is not None:
            return self.state.now()
        return datetime.now(UTC).replace(tzinfo=None)


# ---------- admin routes ----------
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def admin_routes(state) -> list[Route]:
    async def registrations(request: Request) -> Response:
        if request.method == "GET":
            service = request.query_params.get("service")
            current = hub(state)
            return JSONResponse({"registrations": [r.public() for r in current.registrations_of(service)],
                                 "deliveries": current.deliveries_of(service)})
        body = await _body(request)
        try:
            wanted = RegistrationRequest.model_validate(body)
            registration = hub(state).register(**wanted.model_dump())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return _error(400, f"invalid registration: {problems}")
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(registration.public(), status_code=201)

    async def deliver(request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        service, topic = body.get("service"), body.get("topic")
        builder = BUILDERS.get(service) if isinstance(service, str) else None
        if builder is None:
            return _error(400, f"unknown service {service!r}; known: {', '.join(sorted(BUILDERS))}")
        if service in TOPICS and topic not in TOPICS[service]:
            return _error(400, f"unknown {service} topic {topic!r}")
        try:
            outgoing = builder(state, topic, body.get("resource_id"), bool(body.get("sample", False)))
            if inspect.isawaitable(outgoing):
                outgoing = await outgoing
        except LookupError as exc:  # KeyError included
            return _error(404, f"no {service} resource {body.get('resource_id')!r}: {exc}")
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(hub(state).emit(service, outgoing), status_code=202)

    async def delete(request: Request) -> Response:
        if not hub(state).remove(request.path_params["registration_id"]):
            return _error(404, f"no webhook registration {request.path_params['registration_id']!r}")
        return Response(status_code=204)

    return [
        Route("/_sandbox/webhooks", registrations, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks/deliver", deliver, methods=["POST"]),
        Route("/_sandbox/webhooks/{registration_id}", delete, methods=["DELETE"]),
    ]
