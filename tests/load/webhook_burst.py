"""A bounded burst of signed Shopify webhooks against the real receiver (`catalog-ops webhooks`) in its
own process, from parallel keep-alive clients over loopback. Used by tests/load/test_webhook_load.py
(which asserts on what was stored) and bench/webhook_load.py (which reports latency and throughput).

The plan mixes new deliveries, exact replays of them (same Webhook-Id, body and signature, as Shopify
sends on a retry; shuffled, so a replay may even race its original) and bad signatures. Half of the
bad ones reuse a real delivery's Webhook-Id with a tampered body: a receiver that stored before
verifying would keep the forgery and answer the genuine delivery "already stored".
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from resources.shopify_webhooks import shopify_hmac
from sandbox.services.shopify_webhooks import template_bytes
from tests.conftest import free_port

SECRET = "load-test-webhook-secret"  # given to the receiver process; the sandbox's public one is not used
TOPIC = "orders/create"
ORDER_ID_BASE = 5_100_000_000_000
TRANSPORT_RETRIES = 3


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    body: bytes
    signature: str
    kind: str  # "new" | "replay" | "bad"


@dataclass
class Outcome:
    status: int = 0  # 0: never answered
    stored: bool | None = None
    seconds: float = 0.0  # of the attempt that was answered
    attempts: int = 0


@dataclass
class Burst:
    deliveries: list[Delivery]
    outcomes: list[Outcome]
    wall_seconds: float
    clients: int
    receiver_log: str = ""
    inbox: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # webhook_id -> (body, rows)

    def figures(self) -> dict:
        answered = [o.seconds * 1000 for o in self.outcomes if o.status]
        cuts = statistics.quantiles(answered, n=100, method="inclusive")
        kinds = [d.kind for d in self.deliveries]
        return {
            "sent": len(self.deliveries), "clients": self.clients,
            "new": kinds.count("new"), "replays": kinds.count("replay"), "bad_signatures": kinds.count("bad"),
            "answered_200": sum(o.status == 200 for o in self.outcomes),
            "answered_401": sum(o.status == 401 for o in self.outcomes),
            "stored": len(self.inbox), "transport_retries": sum(max(o.attempts - 1, 0) for o in self.outcomes),
            "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "max_ms": round(max(answered), 2),
            "seconds": round(self.wall_seconds, 2), "requests_per_s": round(len(self.deliveries) / self.wall_seconds),
        }


def plan(total: int, replay_share: float = 0.1, bad_share: float = 0.05, seed: int = 9) -> list[Delivery]:
    rng = random.Random(seed)
    bad_count, replay_count = round(total * bad_share), round(total * replay_share)
    order = json.loads(template_bytes("orders_create.json"))
    new = []
    for n in range(total - bad_count - replay_count):
        # One real order payload (12 KB) per delivery, each with its own id, so bodies can be told apart.
        body = json.dumps({**order, "id": ORDER_ID_BASE + n, "name": f"#L{n}"}).encode()
        new.append(Delivery(f"load-{n}", body, shopify_hmac(body, SECRET), "new"))
    replays = [replace(rng.choice(new), kind="replay") for _ in range(replay_count)]
    bad = []
    for n in range(bad_count):
        if n % 2:  # signed with a secret that is not the receiver's
            body = json.dumps({"id": n, "forged": True}).encode()
            bad.append(Delivery(f"forged-{n}", body, shopify_hmac(body, "not-the-secret"), "bad"))
        else:  # a genuine delivery's id and signature over a tampered body
            genuine = rng.choice(new)
            bad.append(Delivery(genuine.webhook_id, genuine.body.replace(b'"#L', b'"#X', 1), genuine.signature, "bad"))
    deliveries = new + replays + bad
    rng.shuffle(deliveries)
    return deliveries


@contextmanager
def receiver(inbox: Path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`catalog-ops webhooks` as production runs it, on a free loopback port; SIGTERM on the way out."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SHOPIFY_WEBHOOK_SECRET_PREVIOUS"}
    env["SHOPIFY_WEBHOOK_SECRET"] = SECRET
    # A file, not a pipe: the receiver logs a line per delivery and a full pipe would stall it.
    log = tempfile.NamedTemporaryFile(prefix="webhooks-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "webhooks", "--port", str(port),
                             "--inbox", str(inbox)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"webhook receiver did not start: {Path(log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, proc, Path(log.name)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def send(client: httpx.Client, delivery: Delivery, outcome: Outcome) -> None:
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": TOPIC,
               "X-Shopify-Webhook-Id": delivery.webhook_id, "X-Shopify-Hmac-Sha256": delivery.signature,
               "X-Shopify-Shop-Domain": "sandbox.myshopify.com", "X-Shopify-API-Version": "2026-01"}
    for _ in range(TRANSPORT_RETRIES + 1):
        outcome.attempts += 1
        started = time.perf_counter()
        try:
            answer = client.post("/webhooks/shopify", content=delivery.body, headers=headers)
        except httpx.TransportError:
            continue  # Shopify retries an unanswered delivery with the same Webhook-Id; so do we
        outcome.seconds = time.perf_counter() - started
        outcome.status = answer.status_code
        if answer.status_code == 200:
            outcome.stored = answer.json()["stored"]
        return


def read_inbox(path: Path) -> dict[str, tuple[bytes, int]]:
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT webhook_id, min(body), count(*) FROM shopify_webhooks GROUP BY webhook_id")
        return {webhook_id: (body, count) for webhook_id, body, count in rows}


def run_burst(total: int, clients: int = 8, workdir: Path | None = None) -> Burst:
    deliveries = plan(total)
    outcomes = [Outcome() for _ in deliveries]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        inbox = Path(tmp) / "inbox.sqlite3"
        with receiver(inbox) as (url, _, log):

            def worker(offset: int) -> None:
                with httpx.Client(base_url=url, timeout=30) as client:
                    for i in range(offset, len(deliveries), clients):
                        send(client, deliveries[i], outcomes[i])

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
        # Read after the receiver has shut down cleanly: what is there is what a restart would find.
        return Burst(deliveries, outcomes, wall, clients, log.read_text(errors="replace"), read_inbox(inbox))
