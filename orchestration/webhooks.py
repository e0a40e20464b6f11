"""`catalog-ops webhooks`: the Shopify webhook receiver (an ASGI app) and its inbox.

shopify.md §9.3/§10: verify `X-Shopify-Hmac-Sha256` over the raw body bytes before parsing anything
(constant time, current and previous secret), 401 on a bad or missing signature, store the event,
answer 200 within 5 s, process asynchronously, dedupe by `X-Shopify-Webhook-Id` (kept >= 24 h).

The inbox is a SQLite file of its own (`CATALOG_OPS_WEBHOOK_INBOX_PATH`, default
`var/webhook_inbox.sqlite3`), not the DuckDB warehouse: the warehouse's single-writer lock is held by
runs for minutes, and a DuckDB file opened for writing by one process cannot be opened at all by
another, while this receiver, the sensor (in the daemon) and the runs marking events done are three
processes. SQLite in WAL mode lets them share one file, and `synchronous=FULL` makes the insert
durable (fsynced) before the 200 goes out. An insert is a few milliseconds, so the answer is fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from resources.shopify_webhooks import verify_shopify_hmac

log = logging.getLogger("catalog_ops.webhooks")
DEFAULT_INBOX = Path("var/webhook_inbox.sqlite3")
MAX_BODY_BYTES = 5 * 1024 * 1024
KEEP_DAYS = 7  # Shopify may resend a delivery for 4 h; ids are kept well beyond the 24 h §10 asks for
SCHEMA = """
CREATE TABLE IF NOT EXISTS shopify_webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the order events were stored in: the sensor's cursor
    webhook_id TEXT NOT NULL UNIQUE,        -- X-Shopify-Webhook-Id: one per delivery, the same on retries
    event_id TEXT, topic TEXT NOT NULL, shop_domain TEXT, api_version TEXT, triggered_at TEXT,
    received_at TEXT NOT NULL, body BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'received',  -- received | applied | already_seen | ignored | failed
    processed_at TEXT, run_id TEXT, error TEXT
)"""


def inbox_path() -> Path:
    return Path(os.environ.get("CATALOG_OPS_WEBHOOK_INBOX_PATH") or DEFAULT_INBOX)


def webhook_secrets() -> list[str]:
    """The app's secret and, during a rotation, the previous one (remove it an hour after rotating)."""
    from orchestration.settings import env_value  # (imports Dagster: not on the CLI's import path)

    return [s for s in (env_value("SHOPIFY_WEBHOOK_SECRET"), os.environ.get("SHOPIFY_WEBHOOK_SECRET_PREVIOUS")) if s]


@dataclass(frozen=True)
class InboxEvent:
    seq: int
    webhook_id: str
    topic: str
    body: bytes
    received_at: str


class Inbox:
    """The durable list of received deliveries, shared by the receiver, the sensor and the runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute(SCHEMA)

    def close(self) -> None:
        self._con.close()

    def add(self, webhook_id: str, topic: str, body: bytes, *, event_id: str | None = None,
            shop_domain: str | None = None, api_version: str | None = None, triggered_at: str | None = None) -> bool:
        """Store a delivery; False when its Webhook-Id is already stored (a retry or a duplicate)."""
        with self._lock:
            cursor = self._con.execute(
                "INSERT OR IGNORE INTO shopify_webhooks (webhook_id, event_id, topic, shop_domain, api_version, "
                "triggered_at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [webhook_id, event_id, topic, shop_domain, api_version, triggered_at,
                 datetime.now(UTC).isoformat(), body])
            return cursor.rowcount == 1

    def received_after(self, seq: int, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return self._con.execute("SELECT seq, topic FROM shopify_webhooks WHERE seq > ? ORDER BY seq LIMIT ?",
                                     [seq, limit]).fetchall()

    def events(self, first: int, last: int) -> list[InboxEvent]:
        with self._lock:
            rows = self._con.execute("SELECT seq, webhook_id, topic, body, received_at FROM shopify_webhooks "
                                     "WHERE seq BETWEEN ? AND ? ORDER BY seq", [first, last]).fetchall()
        return [InboxEvent(*row) for row in rows]

    def mark(self, outcomes: dict[int, tuple[str, str | None]], run_id: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.executemany("UPDATE shopify_webhooks SET status = ?, error = ?, processed_at = ?, run_id = ? "
                                  "WHERE seq = ?", [(s, e, now, run_id, seq) for seq, (s, e) in outcomes.items()])
            self._con.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._con.execute("SELECT status, count(*) FROM shopify_webhooks GROUP BY status").fetchall())

    def failed(self) -> list[tuple[int, str, str, str]]:
        """(seq, topic, error, received_at) of events a run could not apply."""
        with self._lock:
            return self._con.execute("SELECT seq, topic, coalesce(error, ''), received_at FROM shopify_webhooks "
                                     "WHERE status = 'failed' ORDER BY seq").fetchall()

    def waiting_since(self, older_than: datetime) -> tuple[int, int | None, str | None]:
        """How many events received before `older_than` no run has processed, the oldest's seq and time."""
        with self._lock:
            count, oldest, at = self._con.execute(
                "SELECT count(*), min(seq), min(received_at) FROM shopify_webhooks WHERE status = 'received' "
                "AND received_at < ?", [older_than.isoformat()]).fetchone()
        return count, oldest, at

    def prune(self, keep_days: int = KEEP_DAYS) -> int:
        cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).isoformat()
        with self._lock:
            return self._con.execute("DELETE FROM shopify_webhooks WHERE received_at < ? AND status <> 'received'",
                                     [cutoff]).rowcount


def create_app(inbox: Inbox, secrets: list[str], max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """`POST /webhooks/shopify` (the address to subscribe) and `GET /healthz`."""

    async def shopify(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return JSONResponse({"error": "body too large"}, status_code=413)
        body = await request.body()  # the exact bytes Shopify signed: verified before anything parses them
        if len(body) > max_body_bytes:
            return JSONResponse({"error": "body too large"}, status_code=413)
        if not verify_shopify_hmac(body, request.headers.get("x-shopify-hmac-sha256"), secrets):
            log.warning("shopify webhook rejected: bad or missing signature (topic %s)",
                        request.headers.get("x-shopify-topic", "?"))
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        webhook_id, topic = request.headers.get("x-shopify-webhook-id"), request.headers.get("x-shopify-topic")
        if not webhook_id or not topic:
            return JSONResponse({"error": "X-Shopify-Webhook-Id and X-Shopify-Topic are required"}, status_code=400)
        stored = await run_in_threadpool(
            inbox.add, webhook_id, topic, body, event_id=request.headers.get("x-shopify-event-id"),
            shop_domain=request.headers.get("x-shopify-shop-domain"),
            api_version=request.headers.get("x-shopify-api-version"),
            triggered_at=request.headers.get("x-shopify-triggered-at"))
        log.info("shopify webhook %s %s %s", topic, webhook_id, "stored" if stored else "duplicate, already stored")
        return JSONResponse({"stored": stored})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "inbox": await run_in_threadpool(inbox.counts)})

    from sensors.threekit_sensors import threekit_webhook_routes  # Threekit's unsigned hints, on the same server

    return Starlette(routes=[Route("/webhooks/shopify", shopify, methods=["POST"]), Route("/healthz", health),
                             *threekit_webhook_routes()])


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(host: str, port: int, inbox: str | Path | None = None) -> int:
    import uvicorn

    if host not in LOOPBACK and not os.environ.get("SHOPIFY_WEBHOOK_SECRET"):
        # Unset means the sandbox's public secret: anyone could sign events. Only on loopback.
        log.error("refusing to listen on %s without SHOPIFY_WEBHOOK_SECRET (the sandbox's secret is public)", host)
        return 2
    store = Inbox(inbox or inbox_path())
    pruned = store.prune()
    log.info("webhook inbox %s (%d old events pruned); listening on http://%s:%d/webhooks/shopify",
             store.path, pruned, host, port)
    try:
        uvicorn.run(create_app(store, webhook_secrets()), host=host, port=port, log_level="warning")
    finally:
        store.close()
    return 0


def add_webhooks_command(commands) -> None:
    """The `webhooks` subcommand of `catalog-ops` (orchestration/cli.py)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "webhooks", help="receive Shopify webhooks into the inbox the webhook_inbox_sensor reads")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--inbox", help="the inbox file (default $CATALOG_OPS_WEBHOOK_INBOX_PATH or "
                                        f"{DEFAULT_INBOX})")
    parser.set_defaults(func=lambda args: serve(args.host, args.port, args.inbox))
