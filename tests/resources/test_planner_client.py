"""The Planner client against the running sandbox, over real loopback HTTP, plus the marker convention."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from orchestration.settings import env_value
from resources import planner_markers as mk
from resources.http import AuthenticationFailed, RequestRejected
from resources.planner import DesiredTask, PlannerClient, PlannerResource

PLAN = "sandboxPlanAAAAAAAAAAAAAAAAA"
LAUNCH_CHECKLIST = ("Copy review", "Image approval", "Channel setup", "Marketplace validation")


class RecordingSleep:
    def __init__(self, really: bool = False):
        self.calls: list[float] = []
        self.really = really

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.really:
            time.sleep(seconds)


def make_client(sandbox, *, secret="sandbox-secret", tenant="sandbox-tenant", sleep=None, **kwargs) -> PlannerClient:
    return PlannerClient(f"{sandbox.url}/msauth", f"{sandbox.url}/graph", tenant, "sandbox-client", secret, PLAN,
                         sleep=sleep or RecordingSleep(), **kwargs)


@pytest.fixture
def fast(sandbox):
    sandbox.configure(planner_rate_per_s=100_000)
    return sandbox


def person(sandbox, mail: str) -> str:
    return sandbox.ground_truth()["ids"][f"planner_user:{mail}"][0]


def desired(sandbox, subject: str, **changes) -> DesiredTask:
    task = DesiredTask(key=f"launch-ready/{subject}", summary=f"Launch ready: {subject} Trail Jacket",
                       bucket="Ready for approval", assignees=(person(sandbox, "apparel-merchandising@example.com"),),
                       priority=3, notes=("Stage: Ready for approval",), checklist=LAUNCH_CHECKLIST)
    return dataclasses.replace(task, **changes)


def task_writes(sandbox, task_id: str) -> list[dict]:
    return [w for w in sandbox.writes("planner") if task_id in w["path"]]


def posts_titled(sandbox, title: str) -> list[dict]:
    return [w for w in sandbox.writes("planner") if w["method"] == "POST" and (w["body"] or {}).get("title") == title]


# ---------- the marker convention (pure) ----------
def test_marker_convention_matches_the_contract_examples():
    assert mk.marker("missing-attributes/SKU-100234") == "CO-9031c64b68"
    assert mk.checklist_key("missing-attributes/SKU-100234", "Copy review") == "1c352d22-9aa4-5158-99fc-d7d97fb80bb6"
    long_title = mk.title("missing-attributes/SKU-100234", "Missing attributes: " + "x" * 400)
    assert len(long_title) == 255 and long_title.startswith("[CO-9031c64b68] Missing attributes: ")
    assert mk.title_marker(long_title) == "CO-9031c64b68" and mk.title_marker("CO-9031c64b68 no brackets") is None
    assert mk.issue_key("channel-optimisation", "Marketplaces", "SKU-100234") == "channel-optimisation/Marketplaces/SKU-100234"
    for bad in (("unknown-kind", "SKU-1"), ("duplicate-sku", " sku-100001"), ("catalog-refresh", "x" * 120)):
        with pytest.raises(ValueError):
            mk.issue_key(*bad)
    assert mk.issue_key("duplicate-sku", mk.key_part(" sku-100001")) == "duplicate-sku/sku-100001"


def test_description_keeps_peoples_text_and_rewrites_only_the_block():
    key = "missing-attributes/SKU-100234"
    block = mk.managed_block(key, ["Missing: color, size_chart"])
    assert block == ("--- catalog-ops (managed; edits below this line are overwritten) ---\nMissing: color, size_chart\n"
                     "catalog-ops-key: missing-attributes/SKU-100234")  # the contract's example
    people = "Called the supplier.\r\nWaiting for photos."
    current = people + "\r\n" + block.replace("\n", "\r\n") + "\r\nsomeone typed below the line"
    parsed = mk.split_description(current)
    assert parsed.people == people + "\r\n" and parsed.key == key
    assert mk.block_differs(people + "\r\n" + block.replace("\n", "\r\n"), block) is False  # `\r\n` is normalised
    assert mk.block_differs(current, block)  # text below the header line is the block's
    assert mk.compose_description(current, block) == people + "\r\n" + block
    assert mk.compose_description(None, block) == block and mk.compose_description("Note", block) == "Note\n" + block


# ---------- token (§3) ----------
@pytest.mark.parametrize(("changes", "error", "status"), [
    ({"secret": "very-distinctive-secret-1234"}, AuthenticationFailed, 401),
    ({"tenant": "other-tenant"}, RequestRejected, 400),
])
def test_token_errors_are_fatal_and_never_show_the_secret(fast, changes, error, status):
    sleep = RecordingSleep()
    client = make_client(fast, sleep=sleep, **changes)
    with pytest.raises(error) as caught:
        client.list_buckets()
    assert (caught.value.service, caught.value.status) == ("msauth", status)
    assert sleep.calls == [] and caught.value.attempts == 1  # a configuration error: not retried
    assert "very-distinctive-secret-1234" not in str(caught.value) and "sandbox-secret" not in str(caught.value)


def test_token_is_cached_and_refreshed_with_five_minutes_left(fast):
    offset = [0.0]
    client = make_client(fast, clock=lambda: time.monotonic() + offset[0])
    for _ in range(3):
        client.list_buckets()
    assert client.token_fetches == 1
    offset[0] = 3599 - 300 + 1  # under 5 min of the default 3599 s left: refresh before any 401
    client.list_buckets()
    assert client.token_fetches == 2


def test_a_graph_401_refreshes_once_and_retries(fast):
    client = make_client(fast)
    client.list_buckets()
    fast.admin.post("/_sandbox/tokens/expire", json={"service": "graph"}).raise_for_status()
    assert {b["name"] for b in client.list_buckets()} >= {"Enrichment", "Published"}
    assert client.token_fetches == 2


# ---------- reads (§4.2, §7 retries) ----------
def test_paging_follows_next_link_and_counts_every_task(fast):
    client = make_client(fast)
    before = len(client.list_tasks())
    for i in range(4):
        assert client.ensure_task(desired(fast, f"SKU-PAGE{i}", checklist=())).action == "created"
    fast.configure(planner_page_size=3)
    pages = list(client.iter_pages(f"/planner/plans/{PLAN}/tasks"))
    ids = [t["id"] for page in pages for t in page]
    assert len(ids) == len(set(ids)) == before + 4 and len(pages) == -(-len(ids) // 3)


def test_reads_retry_5xx_and_429_with_retry_after_but_never_4xx(fast):
    sleep = RecordingSleep()
    client = make_client(fast, sleep=sleep)
    client.list_buckets()
    fast.fault("graph", script=["500", "503", "429"])
    assert client.list_buckets()
    assert 1.0 <= sleep.calls[0] <= 2.0 and sleep.calls[1:] == [5.0, 0.512]  # backoff, then Retry-After (a float)
    sleep.calls.clear()
    assert client.get_task("unknownTaskAAAAAAAAAAAAAAAAA") is None
    with pytest.raises(RequestRejected) as caught:
        client.get_task("malformed")
    assert caught.value.status == 400 and sleep.calls == []


def test_a_throttled_burst_is_paced_by_retry_after(fast):
    fast.configure(planner_rate_per_s=5)
    sleep = RecordingSleep(really=True)
    client = make_client(fast, sleep=sleep)
    for _ in range(12):
        client.list_buckets()
    assert sleep.calls and all(0 < s < 1 for s in sleep.calls)  # fractional Retry-After waits, no failures


# ---------- reconciliation (§7) ----------
def test_a_second_run_over_an_unchanged_world_writes_nothing(fast):
    target = desired(fast, "SKU-RUN1")
    first = make_client(fast).ensure_task(target)
    assert (first.action, first.writes) == ("created", 2)  # the POST, then the details
    task_id = first.task_id
    writes = task_writes(fast, task_id)
    assert [w["method"] for w in writes] == ["PATCH"] and len(posts_titled(fast, mk.title(target.key, target.summary))) == 1
    details = writes[0]["body"]
    assert details["description"] == mk.managed_block(target.key, target.notes)
    assert set(details["checklist"]) == {mk.checklist_key(target.key, t) for t in LAUNCH_CHECKLIST}
    assert all("isChecked" not in item for item in details["checklist"].values())
    people_etags = _people_task_etags(fast)
    second = make_client(fast).ensure_task(target)  # a new run: a new client, a fresh listing
    assert (second.action, second.writes, second.task_id) == ("unchanged", 0, task_id)
    assert task_writes(fast, task_id) == writes
    assert _people_task_etags(fast) == people_etags  # people's own tasks are never touched


def _people_task_etags(sandbox) -> dict[str, str]:
    client = make_client(sandbox)
    seeded = set(sandbox.ground_truth()["ids"]["planner_people_task"])
    return {t["id"]: t["@odata.etag"] for t in client.list_tasks() if t["id"] in seeded}


def test_only_what_differs_is_patched(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-DIFF1")
    task_id = client.ensure_task(target).task_id
    changed = dataclasses.replace(target, priority=1, summary="Launch ready: SKU-DIFF1 Rain Shell")
    outcome = client.ensure_task(changed)
    assert (outcome.action, outcome.writes) == ("updated", 1)
    assert task_writes(fast, task_id)[-1]["body"] == {"priority": 1, "title": mk.title(target.key, changed.summary)}


def test_a_stale_etag_is_reread_and_the_change_applied_once(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-412")
    task_id = client.ensure_task(target).task_id
    fast.configure(planner_concurrent_edit_rate=1.0)  # someone edits the task just before each first PATCH
    outcome = make_client(fast).ensure_task(dataclasses.replace(target, priority=9))
    assert (outcome.action, outcome.writes) == ("updated", 1)
    patches = [w for w in task_writes(fast, task_id) if w["path"].endswith(task_id)]
    assert [w["body"] for w in patches] == [{"priority": 9}]
    assert client.get_task(task_id)["priority"] == 9


@pytest.mark.parametrize("fault", ["drop", "commit_timeout"])
def test_a_post_whose_answer_was_lost_is_found_not_repeated(fast, fault):
    sleep = RecordingSleep()
    client = make_client(fast, sleep=sleep, timeout_s=1.0)
    target = desired(fast, f"SKU-LOST-{fault}")
    index = client.load_index()  # read first, so the scripted fault meets the POST (faults have no method filter)
    fast.fault("graph", script=[fault], path_contains="/planner/tasks", timeout_s=1.5)
    outcome = client.ensure_task(target, index)
    assert outcome.action == "adopted" and 2.0 in sleep.calls  # waited, re-listed, found it
    assert len(posts_titled(fast, mk.title(target.key, target.summary))) == 1
    marked = [t for t in client.list_tasks() if mk.title_marker(t["title"]) == mk.marker(target.key)]
    assert [t["id"] for t in marked] == [outcome.task_id]
    assert make_client(fast).ensure_task(target).writes == 0  # the details were completed too


def test_peoples_text_and_checks_survive_an_update(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-PEOPLE")
    task_id = client.ensure_task(target).task_id
    details = client.get_details(task_id)
    copy_review = mk.checklist_key(target.key, "Copy review")
    own_item = "7d3b0c9a-1111-4222-8333-444455556666"
    note = "Supplier says photos arrive Friday.\r\nAsk Maria about the size chart.\r\n"
    edit = {"user_id": person(fast, "apparel-merchandising@example.com"),
            "details": {"description": note + details["description"].replace("\n", "\r\n"),
                        "checklist": {copy_review: {"@odata.type": "microsoft.graph.plannerChecklistItem", "isChecked": True},
                                      own_item: {"@odata.type": "microsoft.graph.plannerChecklistItem",
                                                 "title": "Ask legal"}}}}
    fast.admin.post(f"/_sandbox/planner/tasks/{task_id}/edit", json=edit).raise_for_status()
    changed = dataclasses.replace(target, notes=("Stage: Approved",), checklist=LAUNCH_CHECKLIST[:2])
    assert make_client(fast).ensure_task(changed).action == "updated"
    after = client.get_details(task_id)
    assert after["description"] == note + mk.managed_block(target.key, changed.notes)
    assert after["checklist"][copy_review]["isChecked"] is True and after["checklist"][own_item]["title"] == "Ask legal"
    assert set(after["checklist"]) == {copy_review, mk.checklist_key(target.key, "Image approval"), own_item}
    assert "isChecked" not in json.dumps(task_writes(fast, task_id)[-1]["body"])
    assert make_client(fast).ensure_task(changed).writes == 0


def test_a_renamed_app_task_is_adopted_and_its_title_restored(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-RENAMED")
    task_id = client.ensure_task(target).task_id
    edit = {"user_id": person(fast, "data-steward@example.com"), "task": {"title": "Someone's better title"}}
    fast.admin.post(f"/_sandbox/planner/tasks/{task_id}/edit", json=edit).raise_for_status()
    outcome = make_client(fast).ensure_task(target)
    assert (outcome.action, outcome.task_id, outcome.writes) == ("updated", task_id, 1)
    assert client.get_task(task_id)["title"] == mk.title(target.key, target.summary)
    assert len(posts_titled(fast, mk.title(target.key, target.summary))) == 1


def test_younger_duplicates_the_app_made_are_deleted(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-DUP")
    kept = client.ensure_task(target).task_id
    body = {"planId": PLAN, "title": mk.title(target.key, target.summary)}
    started = client._call("POST", "/planner/tasks", json=body, idempotent=False).body  # a raw duplicate
    idle = client._call("POST", "/planner/tasks", json=body, idempotent=False).body
    fast.admin.post(f"/_sandbox/planner/tasks/{started['id']}/edit",
                    json={"user_id": person(fast, "data-steward@example.com"), "task": {"percentComplete": 50}})
    outcome = make_client(fast).ensure_task(target)
    assert outcome.task_id == kept
    remaining = {t["id"] for t in client.list_tasks() if mk.title_marker(t["title"]) == mk.marker(target.key)}
    assert remaining == {kept, started["id"]}  # the idle app duplicate went; the started one is a person's now
    assert [w["method"] for w in task_writes(fast, idle["id"])] == ["DELETE"]


def test_a_task_keyed_the_earlier_way_is_taken_over_with_its_checks_and_text(fast):
    """SKU `Jacket 1` had the key `launch-ready/Jacket-1`; now it has its own. Its task is re-keyed in
    place: same task, people's text and ticks kept, nothing created, then nothing more to write."""
    client = make_client(fast)
    subject = "Jacket 1 Ä"
    former = desired(fast, mk.former_key_part(subject))
    task_id = client.ensure_task(former).task_id
    note = "Photos arrive Friday.\n"
    ticked = mk.checklist_key(former.key, "Copy review")
    details = client.get_details(task_id)
    edit = {"user_id": person(fast, "apparel-merchandising@example.com"),
            "details": {"description": note + details["description"],
                        "checklist": {ticked: {"@odata.type": "microsoft.graph.plannerChecklistItem", "isChecked": True}}}}
    fast.admin.post(f"/_sandbox/planner/tasks/{task_id}/edit", json=edit).raise_for_status()
    now = desired(fast, mk.key_part(subject), former_key=mk.former_key("launch-ready", subject))
    assert now.key != former.key and now.former_key == former.key
    posts_before = [w for w in fast.writes("planner") if w["method"] == "POST"]
    outcome = make_client(fast).ensure_task(now)
    assert (outcome.action, outcome.task_id) == ("migrated", task_id)
    assert [w for w in fast.writes("planner") if w["method"] == "POST"] == posts_before
    task, after = client.get_task(task_id), client.get_details(task_id)
    assert task["title"] == mk.title(now.key, now.summary)
    assert after["description"] == note + mk.managed_block(now.key, now.notes)
    assert set(after["checklist"]) == {mk.checklist_key(now.key, item) for item in LAUNCH_CHECKLIST}
    assert after["checklist"][mk.checklist_key(now.key, "Copy review")]["isChecked"] is True
    assert not after["checklist"][mk.checklist_key(now.key, "Image approval")]["isChecked"]
    again = make_client(fast).ensure_task(now)
    assert (again.action, again.task_id, again.writes) == ("unchanged", task_id, 0)
    assert client.task_key(task_id) == now.key


def test_completion_by_a_person_shows_through_the_client(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-DONE")
    task_id = client.ensure_task(target).task_id
    steward = person(fast, "data-steward@example.com")
    assert all(c.task_id != task_id for c in client.completed_by_people())
    fast.admin.post(f"/_sandbox/planner/tasks/{task_id}/complete", json={"user_id": steward}).raise_for_status()
    done = {c.task_id: c for c in make_client(fast).completed_by_people()}[task_id]
    task = client.get_task(task_id)
    assert (done.user_id, done.marker, done.completed_at) == (steward, mk.marker(target.key), task["completedDateTime"])
    assert done.run_key == f"planner-done:{task_id}:{task['completedDateTime']}"
    assert client.task_key(task_id) == target.key
    assert make_client(fast).ensure_task(target).writes == 0  # a person's completion is not undone


def test_resolving_completes_with_a_note_once_and_is_not_a_person_completion(fast):
    client = make_client(fast)
    target = desired(fast, "SKU-RESOLVED")
    task_id = client.ensure_task(target).task_id
    outcome = client.complete_task(target.key, "All required attributes present on 2026-11-23.")
    assert (outcome.action, outcome.writes) == ("completed", 2)
    task, details = client.get_task(task_id), client.get_details(task_id)
    assert task["percentComplete"] == 100 and task["completedBy"]["application"]["id"] == "sandbox-client"
    assert "Resolved: All required attributes present on 2026-11-23." in mk.split_description(details["description"]).block_lines
    assert make_client(fast).complete_task(target.key, "All required attributes present on 2026-11-23.").writes == 0
    assert all(c.task_id != task_id for c in make_client(fast).completed_by_people())
    reopened = make_client(fast).ensure_task(target)  # the problem is back: the app's own completion is undone
    assert reopened.action == "updated" and client.get_task(task_id)["percentComplete"] == 0


def test_resolved_problems_are_found_by_their_keys(fast):
    client = make_client(fast)
    kept, gone = desired(fast, "SKU-KEPT"), desired(fast, "SKU-GONE")
    gone_id = client.ensure_task(gone).task_id
    client.ensure_task(kept)
    index = make_client(fast).load_index()
    resolved = dict(client.resolved_candidates([kept.key], index))
    assert resolved[gone_id] == gone.key and kept.key not in resolved.values()
    assert set(fast.ground_truth()["ids"]["planner_people_task"]).isdisjoint(resolved)  # people's tasks are not ours


def test_resource_reads_its_settings_from_the_environment(sandbox_env):
    sandbox_env.configure(planner_rate_per_s=100_000)
    names = {"login_url": "MS_LOGIN_URL", "graph_url": "MS_GRAPH_URL", "tenant_id": "MS_TENANT_ID",
             "client_id": "MS_CLIENT_ID", "client_secret": "MS_CLIENT_SECRET", "plan_id": "PLANNER_PLAN_ID"}
    resource = PlannerResource(**{field: env_value(name) for field, name in names.items()})
    buckets = {b["name"]: b["id"] for b in resource.get_client().list_buckets()}
    truth = sandbox_env.ground_truth()["ids"]
    assert buckets["Enrichment"] == truth["planner_bucket:Enrichment"][0]
