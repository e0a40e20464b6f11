"""The sandbox's identity platform and Graph Planner against ../shared/contracts/planner.md, over raw HTTP."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

PLAN = "sandboxPlanAAAAAAAAAAAAAAAAA"
TOKEN_FORM = {"client_id": "sandbox-client", "client_secret": "sandbox-secret",
              "scope": "https://graph.microsoft.com/.default", "grant_type": "client_credentials"}
ASSIGNEE = "fbab97d0-4932-4511-b675-204639209557"
STAMP7 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
# Every property of a task, as the contract's captured 201 shows it.
TASK_KEYS = {"@odata.etag", "planId", "bucketId", "title", "orderHint", "assigneePriority", "percentComplete",
             "startDateTime", "createdDateTime", "dueDateTime", "hasDescription", "previewType", "completedDateTime",
             "completedBy", "referenceCount", "checklistItemCount", "activeChecklistItemCount", "conversationThreadId",
             "priority", "id", "createdBy", "appliedCategories", "assignments"}
APP = {"application": {"displayName": None, "id": "sandbox-client"}}
CHECKLIST_KEY = "1c352d22-9aa4-5158-99fc-d7d97fb80bb6"


def version_of(etag: str) -> str:
    """The §4.8 version inside `W/"base64('version')"`."""
    match = re.match(r'^W/"(.+)"$', etag)
    assert match, etag
    return base64.b64decode(match.group(1)).decode()[1:-1]


def token(sandbox) -> str:
    return httpx.post(f"{sandbox.url}/msauth/sandbox-tenant/oauth2/v2.0/token", data=TOKEN_FORM).json()["access_token"]


@pytest.fixture
def graph(sandbox):
    sandbox.configure(planner_rate_per_s=100_000)
    with httpx.Client(base_url=f"{sandbox.url}/graph/v1.0", headers={"Authorization": f"Bearer {token(sandbox)}"}) as c:
        yield c


@pytest.fixture
def buckets(sandbox) -> dict[str, str]:
    ids = sandbox.ground_truth()["ids"]
    return {kind.split(":", 1)[1]: v[0] for kind, v in ids.items() if kind.startswith("planner_bucket:")}


def new_task(graph, buckets, title="[CO-9031c64b68] Missing attributes: SKU-100234 Trail Jacket", **extra) -> dict:
    body = {"planId": PLAN, "bucketId": buckets["Enrichment"], "title": title, "priority": 3,
            "dueDateTime": "2026-11-25T17:00:00Z",
            "assignments": {ASSIGNEE: {"@odata.type": "#microsoft.graph.plannerAssignment", "orderHint": " !"}}, **extra}
    reply = graph.post("/planner/tasks", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def writes_for(sandbox, task_id: str) -> list[dict]:
    return [w for w in sandbox.writes("planner") if task_id in w["path"] or w["body"] and task_id in json.dumps(w["body"])]


# ---------- auth (§3) ----------
def test_token_body_and_claims(sandbox):
    sandbox.configure(msauth_token_ttl_s=1234)
    reply = httpx.post(f"{sandbox.url}/msauth/sandbox-tenant/oauth2/v2.0/token", data=TOKEN_FORM)
    body = reply.json()
    assert reply.status_code == 200 and set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == ("Bearer", 1234, 1234)
    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 1234
    assert (claims["aud"], claims["tid"], claims["appid"], claims["roles"]) == (
        "https://graph.microsoft.com", "sandbox-tenant", "sandbox-client", ["Tasks.ReadWrite.All"])


@pytest.mark.parametrize(("tenant", "changes", "status", "error", "code", "text"), [
    ("sandbox-tenant", {"client_secret": "wrong"}, 401, "invalid_client", 7000215,
     "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the "
     "client secret ID, for a secret added to app 'sandbox-client'."),
    ("sandbox-tenant", {"client_id": "x"}, 400, "unauthorized_client", 700016,
     "Application with identifier 'x' was not found in the directory 'sandbox-tenant'."),
    ("x", {}, 400, "invalid_request", 90002, "Tenant 'x' not found."),
    ("sandbox-tenant", {"scope": "https://graph.microsoft.com"}, 400, "invalid_scope", 1002012, None),
])
def test_token_errors_have_the_flat_aad_shape(sandbox, tenant, changes, status, error, code, text):
    reply = httpx.post(f"{sandbox.url}/msauth/{tenant}/oauth2/v2.0/token", data={**TOKEN_FORM, **changes})
    body = reply.json()
    assert reply.status_code == status
    assert set(body) == {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
                         "error_uri"}
    assert (body["error"], body["error_codes"]) == (error, [code])
    first, *rest = body["error_description"].split("\r\n")
    assert first.startswith(f"AADSTS{code}: ") and (text is None or first == f"AADSTS{code}: {text}")
    assert rest == [f"Trace ID: {body['trace_id']}", f"Correlation ID: {body['correlation_id']}",
                    f"Timestamp: {body['timestamp']}"]
    assert body["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"


def test_graph_401s(sandbox):
    url = f"{sandbox.url}/graph/v1.0/planner/plans/{PLAN}/tasks"
    fresh = token(sandbox)
    sandbox.admin.post("/_sandbox/tokens/expire", json={"service": "msauth"}).raise_for_status()
    cases = {None: "Access token is empty.", "garbage": "CompactToken parsing failed with error code: 80049217",
             fresh: "Lifetime validation failed, the token is expired."}
    for value, message in cases.items():
        headers = {"Authorization": f"Bearer {value}"} if value else {}
        reply = httpx.get(url, headers=headers)
        error = reply.json()["error"]
        assert reply.status_code == 401 and (error["code"], error["message"]) == ("InvalidAuthenticationToken", message)
        assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
        assert reply.headers["request-id"] == error["innerError"]["request-id"]


# ---------- tasks and details (§4.1-§4.5) ----------
def test_created_task_has_every_property_and_app_identities(sandbox, graph, buckets):
    reply = graph.post("/planner/tasks", headers={"client-request-id": "c0ffee00-0000-4000-8000-000000000001"},
                       json={"planId": PLAN, "bucketId": buckets["Enrichment"], "title": "[CO-9031c64b68] x",
                             "priority": 3, "dueDateTime": "2026-11-25T17:00:00Z",
                             "assignments": {ASSIGNEE: {"@odata.type": "#microsoft.graph.plannerAssignment",
                                                        "orderHint": " !"}}})
    task = reply.json()
    assert reply.status_code == 201
    assert reply.headers["content-type"] == ("application/json;odata.metadata=minimal;odata.streaming=true;"
                                             "IEEE754Compatible=false;charset=utf-8")
    assert reply.headers["client-request-id"] == "c0ffee00-0000-4000-8000-000000000001" and reply.headers["request-id"]
    assert set(task) == TASK_KEYS | {"@odata.context"}
    assert task["@odata.context"] == f"{sandbox.url}/graph/v1.0/$metadata#planner/tasks/$entity"
    assert task["@odata.etag"] == 'W/"JzEtVGFzayAgQEBAQEBAQEBAQEBAQEBARCc="'  # the contract's first task etag
    assert re.match(r"^[A-Za-z0-9_-]{28}$", task["id"]) and STAMP7.match(task["createdDateTime"])
    assert task["dueDateTime"] == "2026-11-25T17:00:00Z" and task["createdBy"] == APP
    for name in ("startDateTime", "completedDateTime", "completedBy", "conversationThreadId"):
        assert task[name] is None
    assert (task["percentComplete"], task["hasDescription"], task["checklistItemCount"], task["appliedCategories"]) == (
        0, False, 0, {})
    assignment = task["assignments"][ASSIGNEE]
    assert assignment["@odata.type"] == "#microsoft.graph.plannerAssignment" and assignment["assignedBy"] == APP
    assert assignment["orderHint"] != " !" and STAMP7.match(assignment["assignedDateTime"])
    logged = writes_for(sandbox, "[CO-9031c64b68] x")
    assert [(w["method"], w["path"], w["status"]) for w in logged] == [("POST", "/v1.0/planner/tasks", 201)]


def test_details_start_empty_and_merge_per_key(sandbox, graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}/details"
    details = graph.get(path).json()
    assert details == {"@odata.context": f"{sandbox.url}/graph/v1.0/$metadata#planner/tasks('{task['id']}')/details/$entity",
                       "@odata.etag": 'W/"JzEtVGFza0RldGFpbHMgQEBAQEBAQEBAQEBAQEBARCc="', "description": None,
                       "previewType": "automatic", "id": task["id"], "references": {}, "checklist": {}}
    patch = {"description": "--- catalog-ops ---\nMissing: color\ncatalog-ops-key: missing-attributes/SKU-100234",
             "checklist": {CHECKLIST_KEY: {"@odata.type": "microsoft.graph.plannerChecklistItem", "title": "Copy review",
                                           "isChecked": False}}}
    reply = graph.patch(path, json=patch, headers={"If-Match": details["@odata.etag"], "Prefer": "return=representation"})
    changed = reply.json()
    assert reply.status_code == 200 and changed["@odata.etag"] == 'W/"JzEtVGFza0RldGFpbHMgQEBAQEBAQEBAQEBAQEBASCc="'
    item = changed["checklist"][CHECKLIST_KEY]
    assert set(item) == {"@odata.type", "isChecked", "title", "orderHint", "lastModifiedDateTime", "lastModifiedBy"}
    assert (item["@odata.type"], item["title"], item["isChecked"], item["lastModifiedBy"]) == (
        "#microsoft.graph.plannerChecklistItem", "Copy review", False, APP)
    # Items merge per key: a second item keeps the first; null removes one; `isChecked` alone keeps the title.
    second = "2d5c9b1e-0000-4000-8000-000000000002"
    graph.patch(path, json={"checklist": {second: {"@odata.type": "microsoft.graph.plannerChecklistItem",
                                                   "title": "Image approval"},
                                          CHECKLIST_KEY: {"@odata.type": "microsoft.graph.plannerChecklistItem",
                                                          "isChecked": True}}},
                headers={"If-Match": changed["@odata.etag"]}).raise_for_status()
    merged = graph.get(path).json()
    assert merged["description"] == patch["description"]
    assert {k: (v["title"], v["isChecked"]) for k, v in merged["checklist"].items()} == {
        CHECKLIST_KEY: ("Copy review", True), second: ("Image approval", False)}
    # The task mirrors the details' counts.
    mirrored = graph.get(f"/planner/tasks/{task['id']}").json()
    assert (mirrored["hasDescription"], mirrored["checklistItemCount"], mirrored["activeChecklistItemCount"]) == (True, 2, 1)
    graph.patch(path, json={"checklist": {second: None}}, headers={"If-Match": merged["@odata.etag"]}).raise_for_status()
    assert list(graph.get(path).json()["checklist"]) == [CHECKLIST_KEY]


def test_etags_change_on_every_write_and_details_writes_bump_the_task(graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}"
    seen = [task["@odata.etag"]]
    for body in ({}, {"priority": 5}, {"title": "[CO-9031c64b68] renamed"}):  # a no-op PATCH counts too
        reply = graph.patch(path, json=body, headers={"If-Match": seen[-1]})
        assert reply.status_code == 204 and reply.content == b"" and "etag" not in reply.headers
        seen.append(graph.get(path).json()["@odata.etag"])
    details = graph.get(path + "/details").json()
    graph.patch(path + "/details", json={"description": "notes"}, headers={"If-Match": details["@odata.etag"]})
    seen.append(graph.get(path).json()["@odata.etag"])
    assert len(set(seen)) == len(seen) and seen == sorted(seen, key=version_of)  # newer is greater, ordinally
    # §4.8: "1-Task  " + 4·n in base 32 with digits @.._, padded to 16; n = 1, 2, 3, 4, 5.
    assert [version_of(e)[-1] for e in seen] == ["D", "H", "L", "P", "T"]
    assert all(version_of(e).startswith("1-Task  @@@@@@@@@@@@@@@") for e in seen)


def test_if_match_is_required_and_checked(sandbox, graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}"
    details_etag = graph.get(path + "/details").json()["@odata.etag"]
    graph.patch(path, json={"priority": 5}, headers={"If-Match": task["@odata.etag"]}).raise_for_status()
    cases = [({}, 400, "The If-Match header must be specified for this kind of request."),
             ({"If-Match": "*"}, 400, "The given key was not present in the dictionary."),
             ({"If-Match": task["@odata.etag"]}, 412,
              "The etag in the If-Match header does not match the current version of the resource."),
             ({"If-Match": details_etag}, 412, "The If-Match header contains an invalid value.")]
    for headers, status, message in cases:
        for method in ("PATCH", "DELETE"):
            reply = graph.request(method, path, json={"priority": 1} if method == "PATCH" else None, headers=headers)
            assert (reply.status_code, reply.json()["error"]["message"]) == (status, message), (method, headers)
    assert graph.get(path).json()["priority"] == 5
    assert [w["method"] for w in writes_for(sandbox, task["id"])] == ["PATCH"]  # rejected writes are not logged


def test_delete_needs_the_current_etag_and_takes_the_details(sandbox, graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}"
    assert graph.delete(path, headers={"If-Match": task["@odata.etag"]}).status_code == 204
    for target in (path, path + "/details"):
        gone = graph.get(target)
        assert gone.status_code == 404 and gone.json()["error"]["message"] == "The requested item is not found."
        assert gone.json()["error"]["code"] == ""
    assert graph.delete(path, headers={"If-Match": task["@odata.etag"]}).status_code == 404
    assert [(w["method"], w["status"]) for w in writes_for(sandbox, task["id"])] == [("DELETE", 204)]


def test_completion_fields_follow_percent_complete(sandbox, graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}"
    prefer = {"Prefer": "return=representation"}
    done = graph.patch(path, json={"percentComplete": 100}, headers={"If-Match": task["@odata.etag"], **prefer}).json()
    assert STAMP7.match(done["completedDateTime"]) and done["completedBy"] == APP
    again = graph.patch(path, json={"percentComplete": 100}, headers={"If-Match": done["@odata.etag"], **prefer}).json()
    assert again["completedDateTime"] == done["completedDateTime"] and again["@odata.etag"] != done["@odata.etag"]
    reopened = graph.patch(path, json={"percentComplete": 50}, headers={"If-Match": again["@odata.etag"], **prefer}).json()
    assert (reopened["completedDateTime"], reopened["completedBy"]) == (None, None)
    for read_only in ({"completedDateTime": "2026-11-22T10:00:00Z"}, {"completedBy": None}, {"checklistItemCount": 1}):
        assert graph.patch(path, json=read_only, headers={"If-Match": reopened["@odata.etag"]}).status_code == 400
    # A person completes it in the app (sandbox-only call): a user identity, a new etag, not a project write.
    person = sandbox.ground_truth()["ids"]["planner_user:data-steward@example.com"][0]
    before = len(sandbox.writes("planner"))
    completed = sandbox.admin.post(f"/_sandbox/planner/tasks/{task['id']}/complete", json={"user_id": person}).json()
    current = graph.get(path).json()
    assert current["completedBy"] == {"user": {"displayName": None, "id": person}} and current["percentComplete"] == 100
    assert current["@odata.etag"] == completed["@odata.etag"] != reopened["@odata.etag"]
    assert len(sandbox.writes("planner")) == before


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"planId": PLAN, "assignments": {ASSIGNEE: {"orderHint": " !"}}}, 400,
     "The request is invalid:\nValue cannot be null.\nParameter name: qualifiedName"),
    ({"title": "no plan"}, 400, None),
    ({"planId": PLAN, "priority": 11}, 400, None),
    ({"planId": PLAN, "percentComplete": 101}, 400, None),
    ({"planId": PLAN, "orderHint": "no-space"}, 400, None),
    ({"planId": PLAN, "id": "x"}, 400, None),
    ({"planId": PLAN, "colour": "red"}, 400, None),
    ({"planId": PLAN, "bucketId": "unknownBucketAAAAAAAAAAAAAAA"}, 404, "The requested item is not found."),
    ({"planId": "sandboxPlanBBBBBBBBBBBBBBBBB"}, 404, "The requested item is not found."),
])
def test_invalid_task_posts_are_refused_and_not_logged(sandbox, graph, body, status, message):
    before = len(sandbox.writes("planner"))
    reply = graph.post("/planner/tasks", json=body)
    assert reply.status_code == status and set(reply.json()["error"]) == {"code", "message", "innerError"}
    assert message is None or reply.json()["error"]["message"] == message
    assert len(sandbox.writes("planner")) == before


def test_ids_malformed_400_unknown_404(graph):
    assert graph.get("/planner/tasks/short").status_code == 400
    assert graph.get("/planner/tasks/unknownTaskAAAAAAAAAAAAAAAAA").status_code == 404


def test_more_than_20_checklist_items_is_403(graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}/details"
    items = {f"00000000-0000-4000-8000-{i:012d}": {"@odata.type": "microsoft.graph.plannerChecklistItem",
                                                    "title": f"item {i}"} for i in range(21)}
    etag = graph.get(path).json()["@odata.etag"]
    refused = graph.patch(path, json={"checklist": items}, headers={"If-Match": etag})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "MaximumChecklistItemsOnTask"
    twenty = dict(list(items.items())[:20])
    assert graph.patch(path, json={"checklist": twenty}, headers={"If-Match": etag}).status_code == 204
    assert len(graph.get(path).json()["checklist"]) == 20


# ---------- lists (§4.2, §4.6) ----------
def test_plan_tasks_page_by_next_link(sandbox, graph, buckets):
    created = {new_task(graph, buckets, title=f"paging {i}")["id"] for i in range(5)}
    sandbox.configure(planner_page_size=100_000)
    everything = graph.get(f"/planner/plans/{PLAN}/tasks").json()
    assert "@odata.nextLink" not in everything  # one page holds them all
    all_ids = [t["id"] for t in everything["value"]]
    assert created <= set(all_ids) and all("@odata.context" not in t and set(t) == TASK_KEYS for t in everything["value"])
    sandbox.configure(planner_page_size=3)
    ids, sizes, url = [], [], f"/planner/plans/{PLAN}/tasks?$top=100"  # $top is ignored
    late = None
    while url:
        page = graph.get(url).json()
        ids += [t["id"] for t in page["value"]]
        sizes.append(len(page["value"]))
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{sandbox.url}/graph/v1.0/planner/plans/{PLAN}/tasks?$skiptoken=")
        if late is None:  # a task created between pages is not skipped (keyset in creation order)
            late = new_task(graph, buckets, title="created mid-listing")["id"]
    assert ids == [*all_ids, late] and set(sizes[:-1]) == {3} and 1 <= sizes[-1] <= 3
    assert graph.get(f"/planner/plans/{PLAN}/tasks?$skiptoken=tampered!").status_code == 400
    assert graph.get("/planner/plans/sandboxPlanBBBBBBBBBBBBBBBBB/tasks").status_code == 404


def test_stage_buckets_are_seeded_and_created(sandbox, graph, buckets):
    listed = graph.get(f"/planner/plans/{PLAN}/buckets").json()
    from sandbox.taxonomy import WORKFLOW_STAGES

    stage_buckets = [b for b in listed["value"] if b["name"] in WORKFLOW_STAGES]
    assert {b["name"]: b["id"] for b in stage_buckets} == buckets and len(buckets) == len(WORKFLOW_STAGES)
    assert listed["value"][0]["@odata.etag"] == 'W/"JzEtQnVja2V0QEBAQEBAQEBAQEBAQEBARCc="'
    reply = graph.post("/planner/buckets", json={"name": "Image review extra", "planId": PLAN, "orderHint": " !"})
    bucket = reply.json()
    assert reply.status_code == 201 and set(bucket) == {"@odata.context", "@odata.etag", "name", "planId", "orderHint", "id"}
    assert bucket["orderHint"] != " !" and bucket["@odata.context"].endswith("$metadata#planner/buckets/$entity")
    assert graph.post("/planner/buckets", json={"planId": PLAN}).status_code == 400
    assert graph.post("/planner/buckets", json={"name": "x", "planId": PLAN, "orderHint": "bad"}).status_code == 400
    assert graph.post("/planner/buckets", json={"name": "x", "planId": "sandboxPlanBBBBBBBBBBBBBBBBB"}).status_code == 404
    assert [w["body"]["name"] for w in sandbox.writes("planner") if w["path"] == "/v1.0/planner/buckets"][-1:] == [
        "Image review extra"]


def test_people_tasks_are_seeded_without_markers(sandbox, graph):
    seeded = set(sandbox.ground_truth()["ids"]["planner_people_task"])
    sandbox.configure(planner_page_size=100_000)
    listed = {t["id"]: t for t in graph.get(f"/planner/plans/{PLAN}/tasks").json()["value"]}
    assert seeded and seeded <= set(listed)
    for task_id in seeded:
        task = listed[task_id]
        assert "user" in task["createdBy"] and not task["title"].startswith("[CO-")


def test_owners_of_the_default_rules_have_entra_ids(sandbox):
    rules = yaml.safe_load(Path("orchestration/rules.yaml").read_text())
    owners = {rules["owners"]["default"], *rules["owners"]["by_category"].values(),
              *rules["owners"]["by_channel"].values(), *rules["owners"]["by_rule"].values()}
    people = {p["mail"]: p for p in sandbox.admin.get("/_sandbox/planner/people").json()["people"]}
    truth = sandbox.ground_truth()["ids"]
    for mail in owners:
        assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", people[mail]["id"])
        assert truth[f"planner_user:{mail}"] == [people[mail]["id"]]
        manager = people[mail]["managerId"]
        assert manager in {p["id"] for p in people.values()}  # every owner has a manager to escalate to


# ---------- limits and faults (§5, §7) ----------
def test_throttling_answers_429_with_a_fractional_retry_after(sandbox, graph):
    sandbox.configure(planner_rate_per_s=2)
    replies = [graph.get(f"/planner/plans/{PLAN}/buckets") for _ in range(6)]
    throttled = [r for r in replies if r.status_code == 429]
    assert throttled and all(r.status_code in (200, 429) for r in replies)
    for reply in throttled:
        assert re.match(r"^\d+\.\d{3}$", reply.headers["retry-after"]) and 0 < float(reply.headers["retry-after"]) <= 0.5
        error = reply.json()["error"]
        assert (error["code"], error["message"], error["innerError"]["status"]) == (
            "TooManyRequests", "Please retry again later.", "429")


def test_concurrent_edit_bumps_the_etag_never_twice_in_a_row(sandbox, graph, buckets):
    task = new_task(graph, buckets)
    path = f"/planner/tasks/{task['id']}"
    sandbox.configure(planner_concurrent_edit_rate=1.0)
    first = graph.patch(path, json={"priority": 1}, headers={"If-Match": task["@odata.etag"]})
    assert first.status_code == 412
    current = graph.get(path).json()
    assert current["@odata.etag"] != task["@odata.etag"] and current["priority"] == 3  # someone else's write
    assert graph.patch(path, json={"priority": 1}, headers={"If-Match": current["@odata.etag"]}).status_code == 204
    third = graph.get(path).json()
    assert graph.patch(path, json={"priority": 5}, headers={"If-Match": third["@odata.etag"]}).status_code == 412
    assert [(w["method"], w["body"]) for w in writes_for(sandbox, task["id"])] == [("PATCH", {"priority": 1})]


def test_injected_faults_use_graph_shapes(sandbox, graph):
    sandbox.fault("graph", script=["503", "429"])
    unavailable = graph.get(f"/planner/plans/{PLAN}/buckets")
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "5"
    assert unavailable.json()["error"]["code"] == "serviceNotAvailable"
    throttled = graph.get(f"/planner/plans/{PLAN}/buckets")
    assert throttled.status_code == 429 and float(throttled.headers["retry-after"]) % 1 != 0
    assert throttled.json()["error"]["code"] == "TooManyRequests"


def test_commit_then_drop_applies_the_post(sandbox, graph, buckets):
    sandbox.fault("graph", script=["drop"], path_contains="/planner/tasks")
    with pytest.raises(httpx.RemoteProtocolError):
        new_task(graph, buckets, title="dropped but created")
    sandbox.configure(planner_page_size=100_000)
    listed = graph.get(f"/planner/plans/{PLAN}/tasks").json()["value"]
    assert [t["title"] for t in listed].count("dropped but created") == 1
    assert len(writes_for(sandbox, "dropped but created")) == 1
