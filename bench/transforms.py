"""One measured transform run, in its own process so its peak RSS is its own.

    python -m bench.transforms sql WAREHOUSE DAY [FINDINGS_OUT]
    python -m bench.transforms pandas WAREHOUSE DAY [FINDINGS_OUT]
    python -m bench.transforms incremental WAREHOUSE DAY CHANGED

`sql` runs what the three assets run on a connection (build, summary and the checks that need no
HTTP; `matches_source_total` asks Plytix for its count and is left out), `pandas` the baseline,
`incremental` builds the day, changes CHANGED products and times the re-build of the same day.
Prints one JSON line: seconds per step and peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import date

import duckdb

from assets.checks import join_does_not_fan_out, report_not_empty, sku_unique
from assets.images import build_product_images, join_summary
from assets.quality import build_report, report_summary
from assets.rules import load_rules
from assets.snapshot import build_snapshot, snapshot_summary
from assets.warehouse import ensure_tables
from orchestration.settings import ProjectSettings, warehouse_config

# A new version of CHANGED products on the day: description gone, so each gains a finding.
CHANGE_SQL = """
INSERT INTO plytix_product_changes BY NAME
SELECT $day AS partition_date, id, sku, label, status,
       CAST($day AS TIMESTAMPTZ) + INTERVAL 10 HOUR AS modified, parent_id, num_variations, categories, thumbnail,
       json_merge_patch(attributes, '{"description": null}') AS attributes,
       CAST($day AS TIMESTAMPTZ) + INTERVAL 11 HOUR AS extracted_at
FROM (SELECT DISTINCT ON (id) * FROM plytix_product_changes ORDER BY id, modified DESC)
ORDER BY hash(id) LIMIT $changed
"""


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def build_day(warehouse: str, day: date, rules) -> dict[str, float]:
    """The three assets' work for one day, step by step, each on its own connection as the assets do."""
    days, seconds = [day], {}
    steps = {
        "catalog_snapshot_s": lambda con: (build_snapshot(con, day), snapshot_summary(con, day),
                                           sku_unique(con, days)),
        "product_images_s": lambda con: (build_product_images(con, day), join_summary(con, day),
                                         join_does_not_fan_out(con, days)),
        "catalog_quality_report_s": lambda con: (build_report(con, day, rules), report_summary(con, day),
                                                 report_not_empty(con, days)),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        with duckdb.connect(warehouse, config=warehouse_config()) as con:
            ensure_tables(con)
            step(con)
        seconds[name] = time.perf_counter() - start
    seconds["seconds"] = sum(seconds.values())
    return {k: round(v, 3) for k, v in seconds.items()}


def findings_of_sql(con, day: date) -> list[tuple[str, str]]:
    return con.execute("SELECT DISTINCT product_id, rule FROM catalog_quality_report WHERE report_date = ? "
                       "AND state <> 'resolved'", [day]).fetchall()


def main(argv: list[str]) -> dict:
    mode, warehouse, day = argv[0], argv[1], date.fromisoformat(argv[2])
    rules = load_rules(ProjectSettings().rules_path)
    result: dict = {}
    if mode == "pandas":
        from bench.pandas_baseline import run

        start = time.perf_counter()
        report = run(warehouse, day, rules)
        result = {"seconds": round(time.perf_counter() - start, 3), "findings": len(report)}
        pairs = list(zip(report["product_id"], report["rule"], strict=True))
    else:
        if mode == "sql":
            result = build_day(warehouse, day, rules)
        elif mode == "incremental":
            build_day(warehouse, day, rules)
            with duckdb.connect(warehouse) as con:
                con.execute(CHANGE_SQL, {"day": day, "changed": int(argv[3])})
            result = build_day(warehouse, day, rules)
        else:
            raise SystemExit(f"unknown mode {mode}")
        with duckdb.connect(warehouse, read_only=True) as con:
            pairs = findings_of_sql(con, day)
            if mode == "incremental":
                result["findings_new"] = con.execute(
                    "SELECT count(*) FROM catalog_quality_report WHERE report_date = ? AND state = 'new'",
                    [day]).fetchone()[0]
        result["findings"] = len(pairs)
    if len(argv) > 3 and mode != "incremental":
        with open(argv[3], "w") as out:
            json.dump(sorted(pairs), out)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
