"""The configurator's automation: one job over the Threekit assets, the sensors that run it for
today's partition, and the receiver of Threekit's webhook deliveries.

`threekit_changes_sensor` polls: the newest configuration, order and asset (one first page each,
newest first) against its cursor; a run key made of those timestamps means a tick that repeats asks
for nothing twice. `threekit_webhook_sensor` reacts to deliveries (threekit.md §5): they are unsigned,
so the receiver's URL carries an unguessable path token (`THREEKIT_WEBHOOK_TOKEN`) and answers 404
without it; a delivery is stored once per `X-Threekit-Delivery-Id` (retries and duplicates keep it),
and it is only a hint: its body is never applied, the run it causes re-reads Threekit, and a version
already stored is not stored again. The daily catalog schedule closes each day; these keep today fresh.
"""

import hmac
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assets.configurator_notifications import configurator_assets
from orchestration.service_tags import service_run_tags
from resources.threekit import ThreekitResource

configurator_job = dg.define_asset_job(
    "configurator_job", selection=dg.AssetSelection.assets(*configurator_assets),
    tags=service_run_tags(configurator_assets),
    description="Threekit extraction (configurations, orders, 3D assets, catalog) and the configurator's "
                "notifications and order write-back for one day.")

# What the sensor watches: list path, envelope key, sort, and the timestamp the sort is on.
WATCHED = {"configurations": ("/api/configurations", "configurations", "-createdAt", "createdAt"),
           "orders": ("/api/orders", "orders", "-updatedAt", "updatedAt"),
           "assets": ("/api/assets", "assets", "-updatedAt", "updatedAt")}


def newest(client, resource: str) -> str | None:
    """The newest timestamp of a resource (its first page, newest first), as Threekit wrote it."""
    path, key, sort, stamp = WATCHED[resource]
    page = next(client.iter_pages(path, key, {"sort": sort}), [])
    stamps = [row.get(stamp) for row in page if isinstance(row.get(stamp), str)]
    return max(stamps) if stamps else None  # ISO 8601 UTC with milliseconds: text order is time order


@dg.sensor(job=configurator_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Threekit changed (a configuration saved, an order or an asset updated) since the last "
                       "look: run the configurator assets for today's partition.")
def threekit_changes_sensor(context: dg.SensorEvaluationContext, threekit: ThreekitResource):
    active = context.instance.get_run_records(dg.RunsFilter(job_name=configurator_job.name, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
    if active:
        return dg.SkipReason("a configurator run is in progress; it will see these changes")
    seen = json.loads(context.cursor) if context.cursor else {}
    client = threekit.get_client()
    now = {resource: newest(client, resource) for resource in WATCHED}
    changed = sorted(r for r, stamp in now.items() if stamp and (seen.get(r) is None or stamp > seen[r]))
    context.update_cursor(json.dumps({r: now[r] or seen.get(r) for r in WATCHED}))
    if not changed:
        return dg.SkipReason("nothing newer in Threekit since the last look")
    key = "threekit-changes:" + ",".join(f"{r}={now[r]}" for r in sorted(WATCHED))
    return dg.RunRequest(run_key=key, partition_key=datetime.now(UTC).date().isoformat(),
                         tags={"catalog-ops/threekit-changed": ",".join(changed)})


# ---------- webhooks ----------
DEFAULT_HINTS = Path("var/threekit_webhooks.sqlite3")
SANDBOX_WEBHOOK_TOKEN = "sandbox-threekit-webhook-token"  # a deployment sets its own, unguessable
SCHEMA = """
CREATE TABLE IF NOT EXISTS threekit_webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order: the sensor's cursor
    delivery_id TEXT NOT NULL UNIQUE,       -- X-Threekit-Delivery-Id, the same on retries and duplicates
    topic TEXT, resource_id TEXT, received_at TEXT NOT NULL
)"""


def hints_path() -> Path:
    return Path(os.environ.get("CATALOG_OPS_THREEKIT_WEBHOOKS_PATH") or DEFAULT_HINTS)


def webhook_token() -> str:
    return os.environ.get("THREEKIT_WEBHOOK_TOKEN") or SANDBOX_WEBHOOK_TOKEN


class Hints:
    """Received deliveries, in a SQLite file the receiver, the sensor and the UI's process share."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")  # stored durably before the 2xx
        self._con.execute(SCHEMA)

    def add(self, delivery_id: str, topic: str | None, resource_id: str | None) -> bool:
        """Store a delivery; False when its id was stored before (a retry or a duplicate)."""
        with self._lock:
            cursor = self._con.execute(
                "INSERT OR IGNORE INTO threekit_webhooks (delivery_id, topic, resource_id, received_at) "
                "VALUES (?, ?, ?, ?)", [delivery_id, topic, resource_id, datetime.now(UTC).isoformat()])
            return cursor.rowcount == 1

    def after(self, seq: int, limit: int = 1000) -> list[tuple[int, str, str | None, str | None]]:
        with self._lock:
            return self._con.execute("SELECT seq, delivery_id, topic, resource_id FROM threekit_webhooks "
                                     "WHERE seq > ? ORDER BY seq LIMIT ?", [seq, limit]).fetchall()

    def close(self) -> None:
        self._con.close()


def _hint(body: bytes) -> str | None:
    """The resource id a delivery names, for the record only: the body is never trusted or applied."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value[:100] if isinstance(value, str) else None


def threekit_webhook_routes(path: str | Path | None = None, token: str | None = None) -> list[Route]:
    """Starlette routes of the receiver: `POST /threekit/{token}` (mount in the webhook app)."""
    hints = Hints(path or hints_path())
    expected = (token or webhook_token()).encode()

    async def receive(request: Request) -> Response:
        if not hmac.compare_digest(request.path_params["token"].encode(), expected):
            return JSONResponse({"error": "not found"}, status_code=404)  # no hint that the path exists
        delivery_id = request.headers.get("x-threekit-delivery-id", "").strip()
        if not delivery_id or len(delivery_id) > 100:
            return JSONResponse({"error": "X-Threekit-Delivery-Id is required"}, status_code=400)
        body = await request.body()
        topic = request.headers.get("x-threekit-topic", "")[:100] or None
        stored = await run_in_threadpool(hints.add, delivery_id, topic, _hint(body))
        return JSONResponse({"received": True, "duplicate": not stored})

    return [Route("/threekit/{token}", receive, methods=["POST"])]


@dg.sensor(job=configurator_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Threekit webhook deliveries received since the last tick: run the configurator assets for "
                       "today's partition, which re-read Threekit (a delivery is only a hint).")
def threekit_webhook_sensor(context: dg.SensorEvaluationContext):
    seen = int(context.cursor or 0)
    hints = Hints(hints_path())
    try:
        rows = hints.after(seen)
    finally:
        hints.close()
    if not rows:
        return dg.SkipReason("no Threekit delivery since the last tick")
    last = rows[-1][0]
    context.update_cursor(str(last))
    topics = sorted({topic for _, _, topic, _ in rows if topic})
    return dg.RunRequest(run_key=f"threekit-webhooks:{last}", partition_key=datetime.now(UTC).date().isoformat(),
                         tags={"catalog-ops/threekit-topics": ",".join(topics)[:200],
                               "catalog-ops/threekit-deliveries": str(len(rows))})
