"""The Shopify webhook receiver under a loopback burst: p50/p99 latency and throughput.

`python -m bench.webhook_load` on its own, or as the `webhooks` section of `make bench` (bench/run.py).
The burst is the load test's (tests/load/webhook_burst.py): the real `catalog-ops webhooks` process,
CLIENTS keep-alive clients, 85% new deliveries, 10% exact replays, 5% bad signatures, every insert
fsynced before its 200. Client and receiver share the machine's cores, so this measures the pair.
Median of REPS bursts with min and max; nothing here is asserted (the test asserts what was stored).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.load.webhook_burst import run_burst  # noqa: E402

DELIVERIES = 20_000
CLIENTS = 8
REPS = int(os.environ.get("BENCH_REPS", "3"))


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def measure(reps: int = REPS) -> dict:
    bursts = []
    for rep in range(reps):
        bursts.append(run_burst(DELIVERIES, clients=CLIENTS).figures())
        last = bursts[-1]
        print(f"  rep {rep + 1}: {last['requests_per_s']} req/s, p50 {last['p50_ms']} ms, p99 {last['p99_ms']} ms",
              flush=True)
    first = bursts[0]
    return {
        **{k: first[k] for k in ("sent", "clients", "new", "replays", "bad_signatures")},
        "every_request_answered": all(b["answered_200"] + b["answered_401"] == b["sent"] for b in bursts),
        "stored_each_new_delivery_once": all(b["stored"] == b["new"] for b in bursts),
        "transport_retries": sum(b["transport_retries"] for b in bursts),
        **{k: spread([b[k] for b in bursts]) for k in ("p50_ms", "p99_ms", "max_ms", "requests_per_s")},
    }


def table(result: dict) -> str:
    def fmt(s: dict) -> str:
        return f"{s['median']:g} ({s['min']:g}–{s['max']:g})"

    return "\n".join([
        f"| Shopify webhooks, {result['sent']:,} per burst ({result['new']:,} new, {result['replays']:,} replays, "
        f"{result['bad_signatures']:,} bad signatures), {result['clients']} clients | |", "|---|---|",
        f"| requests/s | {fmt(result['requests_per_s'])} |", f"| p50 latency ms | {fmt(result['p50_ms'])} |",
        f"| p99 latency ms | {fmt(result['p99_ms'])} |", f"| max latency ms | {fmt(result['max_ms'])} |",
        f"| every request answered / each new delivery stored once | {result['every_request_answered']} / "
        f"{result['stored_each_new_delivery_once']} |"])


def main() -> int:
    print("webhooks", flush=True)
    result = measure()
    print()
    print(table(result))
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
