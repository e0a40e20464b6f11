"""Microsoft identity platform and Graph Planner v1.0 emulation (contracts/planner.md).

`AUTH_SERVICE` is login.microsoftonline.com (`planner_auth`), `SERVICE` graph.microsoft.com. Every
Graph call is authenticated, then throttled per client id, then handled; writes check `If-Match`
against the §4.8 etags (the *concurrent edit* fault bumps one just before the check) and land in the
write log under `service=planner` only when accepted. Shapes and guesses live in `planner_common`,
merge rules in `planner_model`, storage in `planner_store`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.services import ServiceDef
from sandbox.services import planner_model as model
from sandbox.services.planner_auth import auth_error_renderer, expire_tokens, ms_auth, token_routes
from sandbox.services.planner_common import (
    BAD_JSON,
    BUCKET,
    DETAILS,
    GUID_RE,
    ID_RE,
    TASK,
    GraphError,
    app_identity,
    bad_request,
    check_id,
    compare_etag,
    error_renderer,
    etag,
    graph_empty,
    graph_error,
    graph_json,
    new_id,
    not_found,
    require_if_match,
    user_identity,
)
from sandbox.services.planner_store import PlannerStore, Stored

SERVICE_NAME = "planner"  # the write log's service name


class _Throttle:
    """A token bucket per client id whose 429s give the exact (fractional) time to the next slot."""

    def __init__(self, rate: float):
        self.rate, self.burst = rate, max(rate, 1.0)
        self._state: dict[str, tuple[float, float]] = {}

    def wait_s(self, key: str) -> float | None:
        now = time.monotonic()
        tokens, last = self._state.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[key] = (tokens - 1, now)
            return None
        self._state[key] = (tokens, now)  # rejected requests take no slot
        return math.ceil((1 - tokens) / self.rate * 1000) / 1000


class PlannerRuntime:
    """Per-world state beside the tables: creation counters, throttles, the concurrent-edit draw."""

    def __init__(self, state):
        self.state = state
        self.store = PlannerStore(state)
        self._task_seq = self.store.max_seq("planner_tasks")
        self._bucket_seq = self.store.max_seq("planner_buckets")
        self._hints = 0
        self._throttles: dict[float, _Throttle] = {}
        self._edit_rng = random.Random(state.options.seed)
        self._edited_last: set[str] = set()  # resources whose previous PATCH met a concurrent edit

    def next_id(self, kind: str) -> tuple[int, str]:
        if kind == "task":
            self._task_seq += 1
            seq = self._task_seq
        else:
            self._bucket_seq += 1
            seq = self._bucket_seq
        return seq, new_id(self.state.options.seed, kind, seq)

    def hint(self) -> str:
        self._hints += 1
        return str(8585269209601773376 - self._hints * 1_000_003)

    def throttle(self, client_id: str) -> None:
        rate = self.state.options.planner_rate_per_s
        if rate not in self._throttles:  # keyed by rate, so `POST /_sandbox/config` applies at once
            self._throttles[rate] = _Throttle(rate)
        wait = self._throttles[rate].wait_s(client_id)
        if wait is not None:
            raise GraphError(429, "Please retry again later.", code="TooManyRequests",
                             headers={"Retry-After": f"{wait:.3f}"})

    def concurrent_edit(self, resource: str) -> bool:
        """Whether someone else writes `resource` right now; never twice in a row on one resource."""
        if resource in self._edited_last:
            self._edited_last.discard(resource)
            return False
        rate = self.state.options.planner_concurrent_edit_rate
        if rate and self._edit_rng.random() < rate:
            self._edited_last.add(resource)
            return True
        return False

    def context(self, caller: dict) -> model.Context:
        return model.Context(caller=caller, now=self.state.now(), hint=self.hint,
                             bucket_plan=self.store.bucket_plan, plan_exists=self.store.plan_exists)


def _runtime(state) -> PlannerRuntime:
    # Looked up per request, never captured: a reset or world rebuild drops per-service state.
    return state.per_service("planner", lambda: PlannerRuntime(state))


def _graph_base(request: Request) -> str:
    """The sandbox's own base URL stands where `https://graph.microsoft.com` would."""
    return f"{request.url.scheme}://{request.url.netloc}/graph"


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraphError(400, BAD_JSON, code="BadRequest") from None


def _prefers_representation(request: Request) -> bool:
    return "return=representation" in request.headers.get("prefer", "").replace(" ", "")


def _skiptoken(after: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}, separators=(",", ":")).encode()).decode().rstrip("=")


def _after(request: Request) -> int:
    """The keyset position from `$skiptoken` (inferred format); a tampered token is a 400."""
    token = request.query_params.get("$skiptoken")
    if token is None:
        return 0
    try:
        after = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise bad_request("The request is invalid:\nThe skip token is not valid.")
    return after


def task_body(request: Request, task: dict, n: int, entity: bool = True) -> dict:
    head = {"@odata.context": f"{_graph_base(request)}/v1.0/$metadata#planner/tasks/$entity"} if entity else {}
    return {**head, "@odata.etag": etag(TASK, n), **task}


def details_body(request: Request, details: dict, n: int) -> dict:
    context = f"{_graph_base(request)}/v1.0/$metadata#planner/tasks('{details['id']}')/details/$entity"
    return {"@odata.context": context, "@odata.etag": etag(DETAILS, n), **details}


def graph_routes(state) -> list[Route]:
    def rt() -> PlannerRuntime:
        return _runtime(state)

    def load(task_id: str) -> Stored:
        stored = rt().store.task(check_id(task_id))
        if stored is None:
            raise not_found()
        return stored

    def record(request: Request, status: int, body: Any) -> None:
        path = request.url.path.removeprefix("/graph")
        state.record_write(SERVICE_NAME, request.method, path, status, body)

    def answer(request: Request, body: dict) -> Response:
        """204 without a body (and without an ETag header), or 200 with `Prefer: return=representation`."""
        return graph_json(request, body) if _prefers_representation(request) else graph_empty(request)

    async def create_task(request: Request, app_id: str) -> Response:
        body = await _json_body(request)
        task = model.new_task(body, rt().context(app_identity(app_id)))
        seq, task["id"] = rt().next_id("task")
        rt().store.insert_task(seq, task, model.new_details(task["id"]))
        record(request, 201, body)
        return graph_json(request, task_body(request, task, 1), status=201)

    async def get_task(request: Request, app_id: str) -> Response:
        stored = load(request.path_params["task_id"])
        return graph_json(request, task_body(request, stored.task, stored.n))

    async def patch_task(request: Request, app_id: str) -> Response:
        stored = load(request.path_params["task_id"])
        given = require_if_match(request)
        body = await _json_body(request)
        changed = model.patch_task(stored.task, body, rt().context(app_identity(app_id)))
        n = stored.n
        if rt().concurrent_edit(f"task:{stored.task['id']}"):
            n += 1
            rt().store.save_task(stored.task, n)  # someone else's write, just before ours is checked
        compare_etag(given, TASK, n)
        rt().store.save_task(changed, n + 1)  # no-op PATCHes change the etag too
        record(request, 200 if _prefers_representation(request) else 204, body)
        return answer(request, task_body(request, changed, n + 1))

    async def delete_task(request: Request, app_id: str) -> Response:
        stored = load(request.path_params["task_id"])
        compare_etag(require_if_match(request), TASK, stored.n)
        rt().store.delete_task(stored.task["id"])  # the details go with it
        record(request, 204, None)
        return graph_empty(request)

    async def get_details(request: Request, app_id: str) -> Response:
        stored = load(request.path_params["task_id"])
        return graph_json(request, details_body(request, stored.details, stored.details_n))

    async def patch_details(request: Request, app_id: str) -> Response:
        stored = load(request.path_params["task_id"])
        given = require_if_match(request)
        body = await _json_body(request)
        changed = model.patch_details(stored.details, body, rt().context(app_identity(app_id)))
        n = stored.details_n
        if rt().concurrent_edit(f"details:{stored.task['id']}"):
            n += 1
            rt().store.save_details(stored.task["id"], stored.details, n)
        compare_etag(given, DETAILS, n)
        _save_details(rt().store, stored, changed, n + 1)
        record(request, 200 if _prefers_representation(request) else 204, body)
        return answer(request, details_body(request, changed, n + 1))

    async def list_tasks(request: Request, app_id: str) -> Response:
        plan_id = check_id(request.path_params["plan_id"])
        return _page(request, plan_id, "tasks", rt().store.tasks,
                     lambda task, n: task_body(request, task, n, entity=False))

    async def list_buckets(request: Request, app_id: str) -> Response:
        plan_id = check_id(request.path_params["plan_id"])
        return _page(request, plan_id, "buckets", rt().store.buckets,
                     lambda bucket, n: {"@odata.etag": etag(BUCKET, n), **bucket})

    def _page(request: Request, plan_id: str, what: str, fetch: Callable, render: Callable) -> Response:
        if not rt().store.plan_exists(plan_id):
            raise not_found()
        after, size = _after(request), state.options.planner_page_size
        rows = fetch(plan_id, after, size + 1)
        base = _graph_base(request)
        body: dict = {"@odata.context": f"{base}/v1.0/$metadata#planner/plans('{plan_id}')/{what}"}
        if len(rows) > size:
            rows = rows[:size]
            body["@odata.nextLink"] = f"{base}/v1.0/planner/plans/{plan_id}/{what}?$skiptoken={_skiptoken(rows[-1][0])}"
        body["value"] = [render(doc, n) for _, doc, n in rows]
        return graph_json(request, body)

    async def create_bucket(request: Request, app_id: str) -> Response:
        body = await _json_body(request)
        bucket = _new_bucket(body, rt())
        seq, bucket["id"] = rt().next_id("bucket")
        rt().store.insert_bucket(seq, bucket)
        record(request, 201, body)
        context = f"{_graph_base(request)}/v1.0/$metadata#planner/buckets/$entity"
        return graph_json(request, {"@odata.context": context, "@odata.etag": etag(BUCKET, 1), **bucket}, status=201)

    async def unknown(request: Request, app_id: str) -> Response:
        segment = request.url.path.removeprefix("/graph").strip("/").split("/")[-1]
        raise GraphError(400, f"Resource not found for the segment '{segment}'.", code="BadRequest")

    def endpoint(handlers: dict[str, Callable[[Request, str], Awaitable[Response]]]):
        async def serve(request: Request) -> Response:
            try:
                app_id = ms_auth(state).caller(request)
                rt().throttle(app_id)
                handler = handlers.get(request.method)
                if handler is None:  # inferred text
                    raise GraphError(405, f"The requested resource does not support http method '{request.method}'.")
                return await handler(request, app_id)
            except GraphError as exc:
                return graph_error(request, exc)

        return serve

    every = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/v1.0/planner/tasks", endpoint({"POST": create_task}), methods=every),
        Route("/v1.0/planner/tasks/{task_id}", endpoint({"GET": get_task, "PATCH": patch_task,
                                                         "DELETE": delete_task}), methods=every),
        Route("/v1.0/planner/tasks/{task_id}/details", endpoint({"GET": get_details, "PATCH": patch_details}),
              methods=every),
        Route("/v1.0/planner/plans/{plan_id}/tasks", endpoint({"GET": list_tasks}), methods=every),
        Route("/v1.0/planner/plans/{plan_id}/buckets", endpoint({"GET": list_buckets}), methods=every),
        Route("/v1.0/planner/buckets", endpoint({"POST": create_bucket}), methods=every),
        Route("/{rest:path}", endpoint({m: unknown for m in every}), methods=every),
    ]


def _save_details(store: PlannerStore, stored: Stored, details: dict, details_n: int) -> None:
    """Save details; when what the task mirrors changes, the task is written too (new task etag)."""
    store.save_details(stored.task["id"], details, details_n)
    mirror = model.mirrored(details)
    if any(stored.task[k] != v for k, v in mirror.items()):
        store.save_task({**stored.task, **mirror}, stored.n + 1)


def _new_bucket(body: Any, runtime: PlannerRuntime) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request is invalid:\nAn object was expected.")
    for name in body:
        if name not in ("name", "planId", "orderHint") and not name.startswith("@odata."):
            raise bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.plannerBucket'. Make "
                              "sure to only use property names that are defined by the type or mark the type as open type.")
    name, plan_id = body.get("name"), body.get("planId")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("The request is invalid:\nThe name field is required.")
    if not isinstance(plan_id, str) or not ID_RE.match(plan_id):
        raise bad_request("The request is invalid:\nThe planId field is required.")
    if not runtime.store.plan_exists(plan_id):
        raise not_found()
    hint = body.get("orderHint")
    if hint is not None and (not isinstance(hint, str) or not hint.endswith("!") or " " not in hint):
        raise bad_request("The request is invalid:\nThe order hint is not in the correct format.")
    return {"name": name, "planId": plan_id, "orderHint": runtime.hint(), "id": None}


# ---------- sandbox-only: people acting in the Planner app (not project writes) ----------
def admin_routes(state) -> list[Route]:
    async def person(request: Request) -> tuple[model.Context, Stored, dict] | Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not GUID_RE.match(str(body.get("user_id", ""))):
            return JSONResponse({"error": "body must be {\"user_id\": <Entra user id (GUID)>, ...}"}, status_code=400)
        stored = _runtime(state).store.task(request.path_params["task_id"])
        if stored is None:
            return JSONResponse({"error": f"no task {request.path_params['task_id']}"}, status_code=404)
        return _runtime(state).context(user_identity(body["user_id"])), stored, body

    async def complete(request: Request) -> Response:
        """Plays a person completing a task: 100%, `completedBy.user`, a new etag."""
        found = await person(request)
        if isinstance(found, Response):
            return found
        ctx, stored, _ = found
        task = model.complete_as(stored.task, ctx)
        _runtime(state).store.save_task(task, stored.n + 1)
        return JSONResponse({"@odata.etag": etag(TASK, stored.n + 1), **task})

    async def edit(request: Request) -> Response:
        """Plays a person editing a task or its details in the app: `{"user_id", "task"?, "details"?}`
        with Graph PATCH bodies, applied without If-Match (the UI always has the latest)."""
        found = await person(request)
        if isinstance(found, Response):
            return found
        ctx, stored, body = found
        store = _runtime(state).store
        try:
            if "task" in body:
                stored.task, stored.n = model.patch_task(stored.task, body["task"], ctx), stored.n + 1
                store.save_task(stored.task, stored.n)
            if "details" in body:
                details = model.patch_details(stored.details, body["details"], ctx)
                _save_details(store, stored, details, stored.details_n + 1)
        except GraphError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        stored = store.task(stored.task["id"])
        return JSONResponse({"task": {"@odata.etag": etag(TASK, stored.n), **stored.task},
                             "details": {"@odata.etag": etag(DETAILS, stored.details_n), **stored.details}})

    async def people(request: Request) -> Response:
        return JSONResponse({"people": _runtime(state).store.people()})

    return [
        Route("/_sandbox/planner/tasks/{task_id}/complete", complete, methods=["POST"]),
        Route("/_sandbox/planner/tasks/{task_id}/edit", edit, methods=["POST"]),
        Route("/_sandbox/planner/people", people, methods=["GET"]),
    ]


AUTH_SERVICE = ServiceDef(prefix="msauth", routes=token_routes, error_renderer=auth_error_renderer,
                          expire_tokens=expire_tokens)
SERVICE = ServiceDef(prefix="graph", routes=graph_routes, error_renderer=error_renderer, expire_tokens=expire_tokens,
                     admin_routes=admin_routes)
