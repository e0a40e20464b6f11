"""The project's marker convention for Planner tasks (../shared/contracts/planner.md §7 "Marker convention").

Planner has no idempotency key and no custom fields, so a task is found again by what the project
writes into it: a marker in the title (`[CO-<10 hex of sha256(key)>] summary`), a managed block at the
end of the description that ends with the full key, and checklist keys derived from the key. Pure
functions and the small types reconciliation speaks in (`DesiredTask`, `PlanIndex`, outcomes); the
client (`resources.planner`) does the HTTP.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

KINDS = ("missing-attributes", "launch-ready", "regulated-change", "channel-optimisation", "duplicate-sku",
         "taxonomy-error", "catalog-refresh")
KEY_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,120}$")
MAX_KEY_PART = 80  # the longest kind (20) and a channel part still fit in KEY_RE's 120 with it
TITLE_MARKER_RE = re.compile(r"^\[(CO-[0-9a-f]{10})\] ")
MAX_TITLE = 255
BLOCK_HEADER = "--- catalog-ops (managed; edits below this line are overwritten) ---"
KEY_LINE_PREFIX = "catalog-ops-key: "


def issue_key(kind: str, *subject: str) -> str:
    """`<kind>/<subject>`, e.g. `issue_key("channel-optimisation", "Marketplaces", "SKU-100234")`."""
    if kind not in KINDS:
        raise ValueError(f"unknown issue kind {kind!r}; expected one of {', '.join(KINDS)}")
    key = "/".join((kind, *subject))
    if not KEY_RE.match(key):
        raise ValueError(f"issue key {key!r} must be 1-120 characters of [A-Za-z0-9._:/-]")
    return key


def validate_key(key: str) -> str:
    """A key made elsewhere: a known kind, then a subject, within the allowed characters."""
    kind, _, subject = key.partition("/")
    if not subject:
        raise ValueError(f"issue key {key!r} must be <kind>/<subject>")
    return issue_key(kind, subject)


def key_part(text: str) -> str:
    """A subject part made safe for a key, and different for different subjects. A trimmed subject of
    key-safe characters is kept as it is (`" SKU-100234 "` -> `SKU-100234`); any other is written
    key-safe plus a digest of the whole text (`"Jacket 1"` -> `Jacket-1.<10 hex>`), so `SKU-Ä1` and
    `SKU-Ö1`, or `Jacket 1` and `Jacket-1`, never share a task."""
    trimmed, safe = text.strip(), former_key_part(text)
    if safe == trimmed and len(trimmed) <= MAX_KEY_PART:
        return trimmed
    digest = hashlib.sha256(trimmed.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe[:MAX_KEY_PART - 11]}.{digest}" if safe else digest


def former_key_part(text: str) -> str:
    """The part keys were made of before they told such subjects apart: every run of other characters
    as `-`. Tasks keyed that way are found again through it and re-keyed (`DesiredTask.former_key`)."""
    return re.sub(r"[^A-Za-z0-9._:-]+", "-", text.strip()).strip("-")


def former_key(kind: str, *subject: str) -> str | None:
    """The key `issue_key(kind, *map(key_part, subject))` had before, when it had another one."""
    parts = [former_key_part(part) for part in subject]
    if not all(parts):  # nothing key-safe in a part: such a subject could not have a task then
        return None
    try:
        former = issue_key(kind, *parts)
    except ValueError:  # too long for a key: the same
        return None
    return None if former == issue_key(kind, *map(key_part, subject)) else former


def marker(key: str) -> str:
    """`CO-` + the first 10 hex digits of sha256(key): `missing-attributes/SKU-100234` -> `CO-9031c64b68`."""
    return "CO-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def title(key: str, summary: str) -> str:
    """`[<marker>] <summary>`, at most 255 characters (the summary is truncated, never the marker)."""
    head = f"[{marker(key)}] "
    summary = " ".join(summary.split())
    if len(head) + len(summary) > MAX_TITLE:
        summary = summary[: MAX_TITLE - len(head) - 1].rstrip() + "…"
    return head + summary


def title_marker(task_title: str | None) -> str | None:
    match = TITLE_MARKER_RE.match(task_title or "")
    return match.group(1) if match else None


def checklist_key(key: str, item_title: str) -> str:
    """uuid5(NAMESPACE_URL, `catalog-ops:<key>:<item slug>`): `Copy review` -> slug `copy-review`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"catalog-ops:{key}:{slug(item_title)}"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------- the managed description block ----------
def managed_block(key: str, lines: list[str] | tuple[str, ...] = ()) -> str:
    """The block: header line, the project's lines, then `catalog-ops-key: <key>` last."""
    body = [line.rstrip() for text in lines for line in normalise(text).split("\n")]
    return "\n".join([BLOCK_HEADER, *body, KEY_LINE_PREFIX + key])


@dataclass(frozen=True)
class Description:
    people: str  # everything above the block, verbatim (`\r\n` kept)
    block: str | None  # from the header line to the end, normalised; None when there is none

    @property
    def key(self) -> str | None:
        """The key on the block's last `catalog-ops-key:` line, if the block has one."""
        if self.block is None:
            return None
        keys = [line[len(KEY_LINE_PREFIX):].strip() for line in self.block.split("\n")
                if line.startswith(KEY_LINE_PREFIX)]
        return keys[-1] if keys else None

    @property
    def block_lines(self) -> list[str]:
        """The project's lines inside the block (between the header and the key line)."""
        if self.block is None:
            return []
        return [line for line in self.block.split("\n")[1:] if not line.startswith(KEY_LINE_PREFIX)]


def normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_description(description: str | None) -> Description:
    """People's text above the header line; the block is the header and everything below it."""
    text = description or ""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\r\n").strip() == BLOCK_HEADER:
            return Description("".join(lines[:i]), normalise("".join(lines[i:])).strip("\n"))
    return Description(text, None)


def compose_description(current: str | None, block: str) -> str:
    """People's text kept verbatim, then the new block on a line of its own."""
    people = split_description(current).people
    if people and not people.endswith(("\n", "\r")):
        people += "\r\n" if "\r\n" in people else "\n"
    return people + block


def block_differs(current: str | None, block: str) -> bool:
    """Only the block is compared, after normalising line ends and trailing blanks."""
    existing = split_description(current).block
    return existing is None or _trimmed(existing) != _trimmed(normalise(block))


def _trimmed(block: str) -> str:
    return "\n".join(line.rstrip() for line in block.strip().split("\n"))


# ---------- what reconciliation speaks in ----------
@dataclass(frozen=True)
class DesiredTask:
    """What one problem should look like in the plan. `assignees` are Entra user ids; `due=None`
    leaves the due date to people; `notes` are the managed block's lines."""

    key: str
    summary: str
    bucket: str  # a bucket name (a workflow stage), matched exactly
    assignees: tuple[str, ...] = ()
    priority: int = 5  # Planner's own: 1 urgent, 3 important, 5 medium, 9 low
    due: datetime | None = None
    notes: tuple[str, ...] = ()
    checklist: tuple[str, ...] = ()  # item titles; keys derive from the key and the title's slug
    # The key an earlier version gave this problem (see `former_key_part`), when it differs: its task is
    # taken over and re-keyed instead of being closed while a new one is created.
    former_key: str | None = None


@dataclass
class TaskOutcome:
    key: str
    action: str  # created | adopted | migrated | updated | unchanged | completed | missing | deferred
    task_id: str | None = None
    writes: int = 0  # accepted POST/PATCH/DELETE calls, duplicates removed included
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CompletedTask:
    """A marked task a person completed: the way back into Plytix starts here."""

    task_id: str
    marker: str
    title: str
    completed_at: str  # as the service wrote it (7 fractional digits)
    user_id: str

    @property
    def run_key(self) -> str:
        """Reopening and re-completing gives a new key (contract §7 "Completion back")."""
        return f"planner-done:{self.task_id}:{self.completed_at}"


class PlanIndex:
    """The plan's tasks by marker, from one full listing. Unmarked tasks the app created are indexed
    under the key in their details (a person edited the title away: the title is restored)."""

    def __init__(self) -> None:
        self.by_marker: dict[str, dict[str, dict]] = {}

    def add(self, task_marker: str, task: dict) -> None:
        self.by_marker.setdefault(task_marker, {})[task["id"]] = task

    def drop(self, task_id: str) -> None:
        for tasks in self.by_marker.values():
            tasks.pop(task_id, None)

    def candidates(self, key: str) -> list[dict]:
        """Tasks carrying the key's marker, oldest first (`createdDateTime`, then `id`)."""
        tasks = self.by_marker.get(marker(key), {}).values()
        return sorted(tasks, key=lambda t: (instant(t.get("createdDateTime")) or _LAST, t["id"]))

    def tasks(self) -> Iterator[dict]:
        for tasks in self.by_marker.values():
            yield from tasks.values()


_LAST = datetime.max.replace(tzinfo=UTC)


def instant(value: str | None) -> datetime | None:
    """A Graph time as an aware datetime (7 fractional digits: Python >= 3.11 parses them)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
