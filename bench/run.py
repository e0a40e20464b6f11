"""`make bench`: transforms vs a pandas baseline, incremental re-builds, the actions (10,000 Planner
tasks and notifications, then samples at the contracts' rate limits), ingest vs a bare HTTP loop.

Prints a Markdown table and writes bench/results.json. Every figure is the median of REPS runs with
min and max (the actions run once each: their second pass is the repetition that matters); ratios
are computed pair by pair (run i against run i) and their median reported.
`BENCH_FULL=1` adds 1M products to the transforms and 100k to ingest. Nothing here is asserted:
tests never time anything, and a shared machine makes absolute seconds noisy, ratios less so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message=".*currently in beta.*")  # backfill_policy, on purpose (pyproject)

from bench import webhook_load  # noqa: E402
from bench.actions import actions  # noqa: E402
from bench.ingest import bare_loop, project_extraction, set_plytix_rate  # noqa: E402
from bench.world_tables import extraction_tables  # noqa: E402
from tests.conftest import start_sandbox, stop_sandbox  # noqa: E402  (the tests' way to start a sandbox)

FULL = os.environ.get("BENCH_FULL") == "1"
REPS = int(os.environ.get("BENCH_REPS", "3"))
DAY = "2026-11-22"
WORK = ROOT / "bench-results" / "work"
RESULTS = ROOT / "bench" / "results.json"
CHANGED = 100
RATE_PER_10S = 200  # the sandbox's Plytix limit for the throttled run: 20 requests/s
ACTION_ITEMS = int(os.environ.get("BENCH_ACTION_ITEMS", "10000"))  # Planner tasks, and notifications
# Samples at the contracts' 10 requests/s (4 requests per new task, 2 per notification): about 40 s each.
LIMITED_TASKS, LIMITED_NOTIFICATIONS = 100, 200


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def child(*args: str) -> dict:
    """One measured run in a fresh process (its own peak RSS)."""
    done = subprocess.run([sys.executable, "-m", "bench.transforms", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "DAGSTER_HOME": ""})
    if done.returncode:
        raise SystemExit(f"bench.transforms {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_copy(source: Path) -> str:
    """Every SQL run starts from the extraction tables alone, as a first build of the day would."""
    target = WORK / "run.duckdb"
    target.unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return str(target)


def transforms(products: int, check: bool) -> dict:
    started = time.perf_counter()
    source = extraction_tables(WORK, products)
    print(f"  extraction tables for {products:,} products ready ({time.perf_counter() - started:.0f} s)", flush=True)
    sql_runs, pandas_runs = [], []
    files = (str(WORK / "sql-findings.json"), str(WORK / "pandas-findings.json"))
    for rep in range(REPS):
        write = check and rep == 0  # the findings of the first pair, compared below
        sql_runs.append(child("sql", fresh_copy(source), DAY, *([files[0]] if write else [])))
        pandas_runs.append(child("pandas", str(source), DAY, *([files[1]] if write else [])))
        print(f"  rep {rep + 1}: SQL {sql_runs[-1]['seconds']} s, pandas {pandas_runs[-1]['seconds']} s", flush=True)
    result = {
        "products": products, "images": products * 3,
        "sql_seconds": spread([r["seconds"] for r in sql_runs]),
        "sql_peak_rss_mib": spread([r["peak_rss_mib"] for r in sql_runs]),
        "sql_steps_seconds": {k: spread([r[k] for r in sql_runs])
                              for k in ("catalog_snapshot_s", "product_images_s", "catalog_quality_report_s")},
        "pandas_seconds": spread([r["seconds"] for r in pandas_runs]),
        "pandas_peak_rss_mib": spread([r["peak_rss_mib"] for r in pandas_runs]),
        "speed_ratio_pandas_over_sql": spread([p["seconds"] / s["seconds"] for s, p in zip(sql_runs, pandas_runs, strict=True)]),
        "memory_ratio_pandas_over_sql": spread([p["peak_rss_mib"] / s["peak_rss_mib"]
                                                for s, p in zip(sql_runs, pandas_runs, strict=True)]),
        "findings": sql_runs[0]["findings"],
    }
    if check:
        sql = {tuple(x) for x in json.loads(Path(files[0]).read_text())}
        baseline = {tuple(x) for x in json.loads(Path(files[1]).read_text())}
        result["same_findings_as_baseline"] = sql == baseline
        result["findings_only_in_sql"], result["findings_only_in_baseline"] = len(sql - baseline), len(baseline - sql)
        if sql != baseline:
            print(f"  WARNING: findings differ ({len(sql - baseline)} only in SQL, {len(baseline - sql)} only in "
                  "pandas): the speed comparison is not like for like", flush=True)
    return result


def incremental(products: int) -> dict:
    source = extraction_tables(WORK, products)
    runs = [child("incremental", fresh_copy(source), DAY, str(CHANGED)) for _ in range(REPS)]
    return {"products": products, "changed": CHANGED, "seconds": spread([r["seconds"] for r in runs]),
            "findings_after_change": runs[0]["findings"]}


def ingest(products: int) -> dict:
    started = time.perf_counter()
    proc, url = start_sandbox(products=products)
    print(f"  sandbox with {products:,} products up ({time.perf_counter() - started:.0f} s)", flush=True)
    try:
        project_runs, bare_runs = [], []
        for rep in range(REPS):
            project_runs.append(project_extraction(url, None))
            bare_runs.append(bare_loop(url, project_runs[-1].pop("_searches")))
            print(f"  rep {rep + 1}: project {project_runs[-1]['products_per_s']}/s, "
                  f"bare loop {bare_runs[-1]['products_per_s']}/s", flush=True)
        set_plytix_rate(url, RATE_PER_10S)
        allowed = RATE_PER_10S / 10
        throttled = [project_extraction(url, allowed) for _ in range(REPS)]
        for run in throttled:
            run.pop("_searches")
    finally:
        stop_sandbox(proc)
    return {
        "products": products,
        "project_products_per_s": spread([r["products_per_s"] for r in project_runs]),
        "bare_products_per_s": spread([r["products_per_s"] for r in bare_runs]),
        "ratio_to_limit": spread([p["products_per_s"] / b["products_per_s"] for p, b in zip(project_runs, bare_runs, strict=True)]),
        "project_cpu_us_per_product": spread([r["cpu_us_per_product"] for r in project_runs]),
        "bare_cpu_us_per_product": spread([r["cpu_us_per_product"] for r in bare_runs]),
        "requests": project_runs[0]["requests"], "failures": sum(r["failures"] for r in project_runs),
        "products_read": project_runs[0]["products"],
        "throttled": {
            "allowed_requests_per_s": allowed,
            "requests_per_s": spread([r["requests_per_s"] for r in throttled]),
            "share_of_allowed_rate": spread([r["requests_per_s"] / allowed for r in throttled]),
            "products_per_s": spread([r["products_per_s"] for r in throttled]),
            "responses_429": sum(r["responses_429"] for r in throttled),
            "failures": sum(r["failures"] for r in throttled),
            "products_read": [r["products"] for r in throttled],
        },
    }


def exponent(small: dict, large: dict) -> float:
    return round(math.log(large["sql_seconds"]["median"] / small["sql_seconds"]["median"])
                 / math.log(large["products"] / small["products"]), 3)


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def transforms_table(results: dict) -> list[str]:
    lines = ["", "| transforms (snapshot + join + report) | products | project SQL s | SQL peak RSS MiB | pandas s "
             "| pandas peak RSS MiB | pandas/SQL time | pandas/SQL memory |", "|---|---|---|---|---|---|---|---|"]
    for t in results["transforms"]:
        lines.append(f"| | {t['products']:,} | {fmt(t['sql_seconds'])} | {fmt(t['sql_peak_rss_mib'], 0)} "
                     f"| {fmt(t['pandas_seconds'])} | {fmt(t['pandas_peak_rss_mib'], 0)} "
                     f"| {fmt(t['speed_ratio_pandas_over_sql'])} | {fmt(t['memory_ratio_pandas_over_sql'])} |")
    for span, value in results["growth_exponent"].items():
        lines.append(f"| growth exponent {span} | | {value} | | | | | |")
    return lines


def incremental_table(results: dict) -> list[str]:
    lines = ["", "| incremental (100 products changed, 3 assets re-built) | products | seconds |", "|---|---|---|"]
    for i in results["incremental"]:
        lines.append(f"| | {i['products']:,} | {fmt(i['seconds'])} |")
    lines.append(f"| ratio large/small | | {results['incremental_ratio']} |")
    return lines


def ingest_table(results: dict) -> list[str]:
    g = results["ingest"]
    th = g["throttled"]
    return ["", f"| Plytix ingest, {g['products']:,} products | products/s | CPU µs/product |", "|---|---|---|",
            f"| project extraction path | {fmt(g['project_products_per_s'], 0)} | "
            f"{fmt(g['project_cpu_us_per_product'], 0)} |",
            f"| bare httpx loop (the limit) | {fmt(g['bare_products_per_s'], 0)} | "
            f"{fmt(g['bare_cpu_us_per_product'], 0)} |",
            f"| project / limit | {fmt(g['ratio_to_limit'])} | |",
            f"| rate-limited at {th['allowed_requests_per_s']:g} req/s: share of allowed rate | "
            f"{fmt(th['share_of_allowed_rate'])} ({fmt(th['requests_per_s'])} req/s) | |",
            f"| failures unthrottled / throttled (429s seen) | {g['failures']} / {th['failures']} "
            f"({th['responses_429']}) | |"]


def table(results: dict) -> str:
    lines = [f"Machine: {results['machine']}; load average {results['load_at_start']} at start, "
             f"{results.get('load_at_end', '?')} at the end; median of {REPS} (min–max); ratios pair by pair."]
    for section, render in (("transforms", transforms_table), ("incremental", incremental_table),
                            ("actions", lambda r: actions_table(r["actions"])), ("ingest", ingest_table),
                            ("webhooks", lambda r: ["", webhook_load.table(r["webhooks"])])):
        if section in results:
            lines += render(results)
    return "\n".join(lines)


def actions_table(a: dict) -> list[str]:
    """One pass each, so no spread: the second pass over the same items is the repetition that matters."""
    rows = ["", "| actions (one pass; then the same items again) | items | seconds | items/s | requests/s let through "
            "| share of limit | client CPU s | sandbox writes | again: seconds, writes |", "|---|---|---|---|---|---|---|---|---|"]
    for name, key in (("Planner tasks, unlimited", "planner"), ("notifications, unlimited", "outbox"),
                      ("Planner tasks, at the 10/s limit", "planner_limited"),
                      ("notifications, at the 10/s limit", "outbox_limited")):
        run = a[key]
        first, second = run["first"], run["second"]
        share = f"{first['share_of_limit']:.2f}" if "limited" in key else "–"
        rows.append(f"| {name} | {run['items']:,} | {first['seconds']:.1f} | {first['items_per_s']:.1f} "
                    f"| {first['requests_per_s']:.1f} | {share} | {first['client_cpu_s']:.1f} "
                    f"| {first['sandbox_writes']:,} | {second['seconds']:.2f} s, {second['sandbox_writes']} |")
    return rows


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?") if Path("/proc/cpuinfo").exists() else "?"
    return f"{platform.machine()} {model}, nproc {os.cpu_count()}, Python {platform.python_version()} (shared)"


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min)"


def main() -> int:
    """`BENCH_ONLY=actions,ingest` runs some sections and writes bench-results/partial.json instead."""
    WORK.mkdir(parents=True, exist_ok=True)
    only = {x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}
    wanted = lambda section: not only or section in only  # noqa: E731
    sizes = [10_000, 100_000] + ([1_000_000] if FULL else [])
    results: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "full": FULL,
                     "repetitions": REPS, "machine": machine(), "load_at_start": load_average()}
    if wanted("transforms"):
        print("transforms", flush=True)
        results["transforms"] = [transforms(n, check=n == 10_000) for n in sizes]
        t = results["transforms"]
        results["growth_exponent"] = {f"{a['products']:,}→{b['products']:,}": exponent(a, b)
                                      for a, b in zip(t, t[1:], strict=False)}
    if wanted("incremental"):
        print("incremental", flush=True)
        results["incremental"] = [incremental(n) for n in sizes[-2:]]
        small, large = results["incremental"]
        results["incremental_ratio"] = round(large["seconds"]["median"] / small["seconds"]["median"], 2)
    if wanted("actions"):
        print("actions", flush=True)
        results["actions"] = actions(ACTION_ITEMS, LIMITED_TASKS, LIMITED_NOTIFICATIONS)
    if wanted("ingest"):
        print("ingest", flush=True)
        results["ingest"] = ingest(100_000 if FULL else 10_000)
    if wanted("webhooks"):
        print("webhooks", flush=True)
        results["webhooks"] = webhook_load.measure(REPS)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["load_at_end"] = load_average()
    target = WORK.parent / "partial.json" if only else RESULTS
    target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    print(f"\nwritten to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
