"""Microsoft Graph Planner client and Dagster resource (../shared/contracts/planner.md §7 "What a client must do").

Reconciliation, not fire-and-forget: every write is the difference between a desired task and the
task as a fresh read shows it, so a second run over an unchanged world writes nothing. Tasks are
found again by the marker convention (`resources.planner_markers`); PATCH and DELETE carry the
resource's own etag and are re-read and re-applied on 409/412; a POST whose answer was lost is
followed by a re-list before any second POST, because Planner has no idempotency key.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from resources import planner_markers as mk
from resources.http import HttpService, MalformedResponse, Pacer, Reply, RetryPolicy, ServiceError, ServiceUnavailable
from resources.planner_markers import CompletedTask, DesiredTask, PlanIndex, TaskOutcome

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REFRESH_MARGIN_S = 300.0  # refresh when under 5 min of the token's life remain
CONFLICT_ROUNDS = 3  # PATCH/DELETE attempts per resource per call when the etag keeps moving
POSTS_PER_TASK = 3  # per key per client (one client per run)
RELIST_DELAY_S = 2.0  # after a POST whose answer was lost, before looking for what it may have created
ASSIGNMENT_TYPE = "#microsoft.graph.plannerAssignment"
CHECKLIST_TYPE = "microsoft.graph.plannerChecklistItem"


class _Deferred(Exception):
    """The etag kept moving for CONFLICT_ROUNDS attempts, or the POST budget is spent: next run."""


class PlannerClient:
    def __init__(self, login_url: str, graph_url: str, tenant_id: str, client_id: str, client_secret: str,
                 plan_id: str, *, timeout_s: float = 30.0, max_attempts: int = 8,
                 max_requests_per_second: float | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 relist_delay_s: float = RELIST_DELAY_S, logger: logging.Logger | None = None):
        self.tenant_id, self.client_id, self.plan_id = tenant_id, client_id, plan_id
        self._secret = client_secret
        self.sleep, self._clock, self.relist_delay_s = sleep, clock, relist_delay_s
        self.log = logger or logging.getLogger("catalog_ops.planner")
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # Backoff with jitter from 1 s to 60 s, `max_attempts` tries; Retry-After (a float) wins.
        retry = RetryPolicy(max_attempts=max_attempts, base_delay_s=2.0, max_delay_s=60.0)
        self.graph = HttpService("planner", graph_url.rstrip("/") + "/v1.0", timeout=timeout, retry=retry,
                                 pacer=Pacer(max_requests_per_second, sleep=sleep), transport=transport,
                                 sleep=sleep, headers={"Accept": "application/json"})
        self.login = HttpService("msauth", login_url, timeout=timeout, transport=transport, sleep=sleep,
                                 retry=RetryPolicy(max_attempts=min(4, max_attempts), base_delay_s=2.0))
        self._graph_origin = httpx.URL(graph_url).copy_with(path="/", query=None)
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = threading.Lock()
        self._posts: dict[str, int] = {}
        self._buckets: dict[str, str] | None = None
        self.token_fetches = 0

    def close(self) -> None:
        self.graph.close()
        self.login.close()

    # ---------- token (§3) ----------
    def _current_token(self) -> str:
        if self._token is None or self._clock() >= self._refresh_at:
            self._refresh(stale=self._token)
        assert self._token is not None
        return self._token

    def _refresh(self, stale: str | None) -> None:
        """Single flight: a thread that finds the token already replaced uses the new one. A 400/401
        from the token endpoint is a configuration error and raises (never retried)."""
        with self._lock:
            if self._token is not None and self._token != stale and self._clock() < self._refresh_at:
                return
            form = {"client_id": self.client_id, "client_secret": self._secret, "scope": GRAPH_SCOPE,
                    "grant_type": "client_credentials"}
            reply = self.login.request("POST", f"/{quote(self.tenant_id, safe='')}/oauth2/v2.0/token", data=form)
            lifetime = float(reply.body["expires_in"])
            self._token = reply.body["access_token"]
            self._refresh_at = self._clock() + lifetime - min(REFRESH_MARGIN_S, lifetime / 4)
            self.token_fetches += 1

    # ---------- HTTP ----------
    def _call(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs) -> Reply:
        """One logical call: a Graph 401 refreshes the token once and retries once; failures are
        logged with the service's `request-id` and our `client-request-id`, never with the token."""
        sent: list[str] = []

        def auth() -> dict[str, str]:
            token = self._current_token()
            sent[:] = [token]
            return {"Authorization": f"Bearer {token}"}

        client_request_id = str(uuid.uuid4())
        try:
            return self.graph.request(method, path, auth=auth, on_unauthorized=lambda: self._refresh(sent[0] if sent else None),
                                      headers={"client-request-id": client_request_id, **(headers or {})}, **kwargs)
        except ServiceError as exc:
            self.log.warning("planner %s %s failed: HTTP %s, request-id %s, client-request-id %s", method,
                             _short(path), exc.status, exc.request_id, client_request_id)
            raise

    def _get(self, path: str) -> dict | None:
        reply = self._call("GET", path, ok_statuses=(404,))
        return None if reply.status == 404 else reply.body

    def iter_pages(self, path: str) -> Iterator[list[dict]]:
        """Follows `@odata.nextLink` verbatim until it is absent (never to another host: it would get the token)."""
        url: str | None = path
        while url:
            body = self._call("GET", url).body
            yield body.get("value", [])
            url = body.get("@odata.nextLink")
            if url and httpx.URL(url).copy_with(path="/", query=None) != self._graph_origin:
                raise MalformedResponse("planner", "GET", _short(path), 200, None, "nextLink points to another host")

    def list_tasks(self) -> list[dict]:
        return [task for page in self.iter_pages(f"/planner/plans/{self.plan_id}/tasks") for task in page]

    def list_buckets(self) -> list[dict]:
        return [bucket for page in self.iter_pages(f"/planner/plans/{self.plan_id}/buckets") for bucket in page]

    def get_task(self, task_id: str) -> dict | None:
        return self._get(f"/planner/tasks/{task_id}")

    def get_details(self, task_id: str) -> dict | None:
        return self._get(f"/planner/tasks/{task_id}/details")

    def _update(self, path: str, current: dict, diff: Callable[[dict], dict]) -> tuple[dict, bool]:
        """PATCH what `diff` finds against the resource's own etag; on 409/412 re-read and re-diff
        (a lost answer to our own PATCH ends here with nothing left to do). Returns (resource, wrote)."""
        for attempt in range(CONFLICT_ROUNDS + 1):
            changes = diff(current)
            if not changes:
                return current, False
            if attempt == CONFLICT_ROUNDS:
                break
            try:
                reply = self._call("PATCH", path, json=changes,
                                   headers={"If-Match": current["@odata.etag"], "Prefer": "return=representation"})
            except ServiceError as exc:
                if exc.status not in (409, 412):
                    raise
                fresh = self._get(path)
                if fresh is None:
                    raise
                current = fresh
                continue
            return (reply.body if reply.body else self._get(path) or current), True
        self.log.warning("planner PATCH %s: etag changed %d times in a row; left for the next run", _short(path),
                         CONFLICT_ROUNDS)
        raise _Deferred(path)

    def _delete(self, task: dict, may_delete: Callable[[dict], bool]) -> bool | None:
        """DELETE with the task's etag: True when deleted, None when already gone (a 404 means done),
        False when a re-read after 409/412 shows it may no longer be deleted."""
        for _ in range(CONFLICT_ROUNDS):
            try:
                reply = self._call("DELETE", f"/planner/tasks/{task['id']}", ok_statuses=(404,),
                                   headers={"If-Match": task["@odata.etag"]})
                return True if reply.status != 404 else None
            except ServiceError as exc:
                if exc.status not in (409, 412):
                    raise
                fresh = self.get_task(task["id"])
                if fresh is None:
                    return None
                if not may_delete(fresh):
                    return False
                task = fresh
        raise _Deferred(task["id"])

    # ---------- buckets ----------
    def bucket_id(self, name: str) -> str:
        """The bucket with exactly this name (the first listed), created when missing."""
        if self._buckets is None:
            self._load_buckets()
        assert self._buckets is not None
        if name not in self._buckets:
            body = {"name": name, "planId": self.plan_id, "orderHint": " !"}
            result, created = self._post_once("/planner/buckets", body, f"bucket:{name}",
                                              lambda: self._load_buckets().get(name))
            self._buckets[name] = result["id"] if created else result  # type: ignore[index]
        return self._buckets[name]

    def _load_buckets(self) -> dict[str, str]:
        buckets: dict[str, str] = {}
        for bucket in self.list_buckets():
            buckets.setdefault(bucket["name"], bucket["id"])
        self._buckets = buckets
        return buckets

    def _post_once(self, path: str, body: dict, budget_key: str, find: Callable[[], object]) -> tuple[object, bool]:
        """POST, and when its answer is lost (timeout, drop, 5xx, cut body) wait, look for what it may
        have created, and only then POST again: at most POSTS_PER_TASK per key. 429s are retried by
        the HTTP layer (not processed). Returns (the created or found thing, created)."""
        while self._posts.get(budget_key, 0) < POSTS_PER_TASK:
            self._posts[budget_key] = self._posts.get(budget_key, 0) + 1
            try:
                return self._call("POST", path, json=body, idempotent=False).body, True
            except (ServiceUnavailable, MalformedResponse) as exc:
                self.log.warning("planner POST %s: answer lost (%s); looking for it before any retry", path, exc.detail)
            self.sleep(self.relist_delay_s)
            found = find()
            if found:
                return found, False
        self.log.warning("planner POST %s for %s: %d answers lost this run; left for the next run", path, budget_key,
                         POSTS_PER_TASK)
        raise _Deferred(budget_key)

    # ---------- the plan index ----------
    def load_index(self) -> PlanIndex:
        """One full listing, indexed by marker; app-created tasks without one by the key in their details."""
        index = PlanIndex()
        for task in self.list_tasks():
            marker = mk.title_marker(task.get("title"))
            if marker:
                index.add(marker, task)
            elif self._created_by_us(task):
                details = self.get_details(task["id"])
                key = mk.split_description(details and details.get("description")).key
                if key:
                    index.add(mk.marker(key), task)
        return index

    def _created_by_us(self, task: dict) -> bool:
        return ((task.get("createdBy") or {}).get("application") or {}).get("id") == self.client_id

    def _locate(self, key: str, index: PlanIndex, outcome: TaskOutcome,
                former_key: str | None = None) -> tuple[dict, dict] | None:
        """The oldest task whose details carry this key (or no block yet, or the key it had before a
        re-keying that did not finish). Younger ones are duplicates: deleted when the app made them and
        nobody started them, else logged."""
        kept: tuple[dict, dict] | None = None
        for task in index.candidates(key):
            details = self.get_details(task["id"])
            if details is None:  # deleted since the listing
                index.drop(task["id"])
                continue
            found_key = mk.split_description(details.get("description")).key
            if found_key not in (None, key, former_key):
                outcome.notes.append(f"marker collision with {found_key!r} on task {task['id']}: not ours")
                continue
            if kept is None:
                kept = (task, details)
                continue
            deletable = lambda t: self._created_by_us(t) and t.get("percentComplete") == 0  # noqa: E731
            deleted = self._delete(task, deletable) if deletable(task) else False
            if deleted is not False:
                outcome.writes += int(bool(deleted))
                outcome.notes.append(f"deleted duplicate task {task['id']}")
                index.drop(task["id"])
            else:
                outcome.notes.append(f"duplicate task {task['id']} kept: not the app's or already started")
                self.log.warning("planner key %s: duplicate task %s left alone", key, task["id"])
        return kept

    # ---------- reconciliation API ----------
    def ensure_task(self, desired: DesiredTask, index: PlanIndex | None = None) -> TaskOutcome:
        """Create the task when no task carries the key, else bring it in line with `desired`,
        writing only what differs. A task the app completed earlier is reopened (the problem is back);
        one a person completed is left completed."""
        mk.validate_key(desired.key)
        index = index if index is not None else self.load_index()
        outcome = TaskOutcome(desired.key, "unchanged")
        try:
            bucket_id = self.bucket_id(desired.bucket)
            found = self._locate(desired.key, index, outcome, desired.former_key)
            if found is None and desired.former_key:  # keyed the earlier way: take it over, re-keyed
                found = self._locate(desired.former_key, index, outcome)
                if found is not None:
                    outcome.action = "migrated"
                    index.drop(found[0]["id"])
            if found is None:
                task, details = self._create(desired, bucket_id, index, outcome)
            else:
                task, details = found
            path = f"/planner/tasks/{task['id']}"
            outcome.task_id = task["id"]
            task, wrote = self._update(path, task, lambda t: self._task_changes(t, desired, bucket_id))
            outcome.writes += wrote
            index.drop(task["id"])
            index.add(mk.marker(desired.key), task)
            _, wrote_details = self._update(path + "/details", details, lambda d: self._details_changes(d, desired))
            outcome.writes += wrote_details
            if outcome.action == "unchanged" and (wrote or wrote_details):
                outcome.action = "updated"
        except _Deferred:
            outcome.action = "deferred"
        return outcome

    def _create(self, desired: DesiredTask, bucket_id: str, index: PlanIndex,
                outcome: TaskOutcome) -> tuple[dict, dict]:
        body: dict = {"planId": self.plan_id, "bucketId": bucket_id, "title": mk.title(desired.key, desired.summary),
                      "priority": desired.priority,
                      "assignments": {user: {"@odata.type": ASSIGNMENT_TYPE, "orderHint": " !"}
                                      for user in desired.assignees}}
        if desired.due is not None:
            body["dueDateTime"] = _format(desired.due)

        def look_again() -> tuple[dict, dict] | None:
            fresh = self.load_index()
            index.by_marker = fresh.by_marker
            return self._locate(desired.key, index, outcome)

        result, created = self._post_once("/planner/tasks", body, f"task:{desired.key}", look_again)
        if created:
            task = result
            assert isinstance(task, dict)
            index.add(mk.marker(desired.key), task)
            outcome.action, outcome.writes = "created", outcome.writes + 1
            details = self.get_details(task["id"])
            if details is None:
                raise _Deferred(task["id"])
            return task, details
        outcome.action = "adopted"
        assert isinstance(result, tuple)
        return result

    def _task_changes(self, task: dict, desired: DesiredTask, bucket_id: str) -> dict:
        changes: dict = {}
        wanted_title = mk.title(desired.key, desired.summary)
        if task.get("title") != wanted_title:
            changes["title"] = wanted_title
        if task.get("bucketId") != bucket_id:
            changes["bucketId"] = bucket_id
        if task.get("priority") != desired.priority:
            changes["priority"] = desired.priority
        if desired.due is not None and mk.instant(task.get("dueDateTime")) != mk.instant(_format(desired.due)):
            changes["dueDateTime"] = _format(desired.due)
        current = task.get("assignments") or {}
        assignments: dict = {user: {"@odata.type": ASSIGNMENT_TYPE, "orderHint": " !"}
                             for user in desired.assignees if user not in current}
        for user, assignment in current.items():  # only assignments the app made are withdrawn
            by_app = ((assignment.get("assignedBy") or {}).get("application") or {}).get("id") == self.client_id
            if user not in desired.assignees and by_app:
                assignments[user] = None
        if assignments:
            changes["assignments"] = assignments
        completed_by_app = ((task.get("completedBy") or {}).get("application") or {}).get("id") == self.client_id
        if task.get("percentComplete") == 100 and completed_by_app:
            changes["percentComplete"] = 0
        return changes

    def _details_changes(self, details: dict, desired: DesiredTask) -> dict:
        changes: dict = {}
        block = mk.managed_block(desired.key, desired.notes)
        if mk.block_differs(details.get("description"), block):
            changes["description"] = mk.compose_description(details.get("description"), block)
        wanted = {mk.checklist_key(desired.key, item): item for item in desired.checklist}
        current = details.get("checklist") or {}
        # New items only carry a title: `isChecked` belongs to people and is never sent, except to carry
        # their ticks over to a re-keyed item (item keys derive from the task key).
        checklist: dict = {}
        for item_key, item_title in wanted.items():
            if item_key in current:
                continue
            checklist[item_key] = {"@odata.type": CHECKLIST_TYPE, "title": item_title}
            former = mk.checklist_key(desired.former_key, item_title) if desired.former_key else None
            if former in current:
                checklist[item_key]["isChecked"] = bool(current[former].get("isChecked"))
                checklist[former] = None
        for item_key, item in current.items():
            if item_key not in wanted and self._own_item(desired.key, item_key, item):
                checklist[item_key] = None
        if checklist:
            changes["checklist"] = checklist
        return changes

    def _own_item(self, key: str, item_key: str, item: dict) -> bool:
        by_app = ((item.get("lastModifiedBy") or {}).get("application") or {}).get("id") == self.client_id
        return by_app or item_key == mk.checklist_key(key, item.get("title") or "")

    def complete_task(self, key: str, note: str, index: PlanIndex | None = None) -> TaskOutcome:
        """The problem is resolved: the note goes into the managed block, then the task to 100%."""
        index = index if index is not None else self.load_index()
        outcome = TaskOutcome(key, "unchanged")
        found = self._locate(key, index, outcome)
        if found is None:
            outcome.action = "missing"
            return outcome
        task, details = found
        outcome.task_id = task["id"]
        resolved = f"Resolved: {' '.join(note.split())}"

        def details_changes(current: dict) -> dict:
            lines = [line for line in mk.split_description(current.get("description")).block_lines
                     if not line.startswith("Resolved: ")]
            block = mk.managed_block(key, [*lines, resolved])
            if not mk.block_differs(current.get("description"), block):
                return {}
            return {"description": mk.compose_description(current.get("description"), block)}

        path = f"/planner/tasks/{task['id']}"
        try:
            _, wrote_details = self._update(path + "/details", details, details_changes)
            # The details write may have moved the task's etag (its mirrored counts): read it fresh.
            current = (self.get_task(task["id"]) or task) if wrote_details else task
            task, wrote = self._update(path, current, lambda t: {} if t.get("percentComplete") == 100
                                       else {"percentComplete": 100})
        except _Deferred:
            outcome.action = "deferred"
            return outcome
        index.add(mk.marker(key), task)
        outcome.writes += wrote_details + wrote
        if wrote:
            outcome.action = "completed"
        elif wrote_details:
            outcome.action = "updated"
        return outcome

    def completed_by_people(self, index: PlanIndex | None = None) -> list[CompletedTask]:
        """Marked tasks at 100% completed by a person (the app's own completions are skipped)."""
        index = index if index is not None else self.load_index()
        done = []
        for task in index.tasks():
            by = task.get("completedBy") or {}
            user = (by.get("user") or {}).get("id")
            if task.get("percentComplete") != 100 or not user or (by.get("application") or {}).get("id") == self.client_id:
                continue
            marker = mk.title_marker(task.get("title")) or ""
            done.append(CompletedTask(task["id"], marker, task.get("title") or "", task["completedDateTime"], user))
        return sorted(done, key=lambda c: (c.completed_at, c.task_id))

    def resolved_candidates(self, wanted_keys: Iterable[str], index: PlanIndex | None = None) -> list[tuple[str, str]]:
        """Open marked tasks whose marker no wanted key carries, as (task id, key from the details):
        the tasks whose problem is gone, for `complete_task`. Only those tasks' details are read."""
        index = index if index is not None else self.load_index()
        wanted = {mk.marker(key) for key in wanted_keys}
        found = []
        for marker, tasks in index.by_marker.items():
            if marker in wanted:
                continue
            for task in tasks.values():
                if task.get("percentComplete") == 100:
                    continue
                details = self.get_details(task["id"])
                key = mk.split_description(details and details.get("description")).key
                if key and mk.marker(key) == marker:
                    found.append((task["id"], key))
        return sorted(found)

    def task_key(self, task_id: str) -> str | None:
        """The issue key in the task's managed block, if it matches the title's marker (else not ours)."""
        task, details = self.get_task(task_id), self.get_details(task_id)
        if task is None or details is None:
            return None
        key = mk.split_description(details.get("description")).key
        marker = mk.title_marker(task.get("title"))
        if key is None or (marker is not None and marker != mk.marker(key)):
            return None
        return key


def _format(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(path: str) -> str:
    return path.split("?", 1)[0]


class PlannerResource(dg.ConfigurableResource):
    """Microsoft Graph Planner (tasks for people). Unset env vars mean the embedded sandbox."""

    login_url: str
    graph_url: str
    tenant_id: str
    client_id: str
    client_secret: str
    plan_id: str
    timeout_s: float = 30.0
    max_attempts: int = Field(8, description="Tries per call for reads (contract: 8).")
    max_requests_per_second: float | None = Field(None, description="Client-side pace; None relies on 429 Retry-After.")
    _client: PlannerClient | None = PrivateAttr(None)

    def get_client(self) -> PlannerClient:
        if self._client is None:
            self._client = PlannerClient(self.login_url, self.graph_url, self.tenant_id, self.client_id,
                                         self.client_secret, self.plan_id, timeout_s=self.timeout_s,
                                         max_attempts=self.max_attempts,
                                         max_requests_per_second=self.max_requests_per_second)
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
