"""What the catalog wants to tell people on day D, as outbox rows: planned in SQL, keyed for dedupe.

Every candidate message is an *item* (what, which record, for whom). Items are grouped per
recipient and kind: up to `digest_above` go out one by one, more become one digest listing them, so
ten thousand findings make one email per owner, not ten thousand. Each row's dedupe key names what,
which record and which window; the outbox ignores a key it already holds, so re-running a
partition plans nothing new.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from assets.outbox import Planned
from assets.rules import QualityRules

# Items for day D. Recipients are owner addresses from the rules file (the people directory says
# how to reach them). `item_key` is the dedupe key of the item on its own.
ITEMS_SQL = """
CREATE OR REPLACE TEMP TABLE notification_items AS
WITH report AS (SELECT * FROM catalog_quality_report WHERE report_date = $day),
today AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day),
yesterday AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day - 1),
moved AS (  -- products whose workflow stage changed on D (or that appeared on D)
    SELECT t.product_id, t.sku, t.label, t.category_root, t.workflow_stage
    FROM today t LEFT JOIN yesterday y USING (product_id)
    WHERE y.product_id IS NULL OR y.workflow_stage IS DISTINCT FROM t.workflow_stage
),
escalations AS (
    SELECT r.*, e.level, e.after_days FROM report r JOIN cfg_escalation e
        ON r.severity = 'error' AND r.state <> 'resolved' AND r.report_date - r.first_seen >= e.after_days
)
SELECT 'finding' AS kind, owner AS recipient, product_id AS record_id, sku,
       rule || ': ' || coalesce(detail, '') AS line,
       'finding/' || rule || '/' || product_id || '/' || CAST(first_seen AS VARCHAR) AS item_key, 1 AS level
FROM report WHERE state = 'new' AND severity IN ('error', 'warning')
UNION ALL
SELECT 'ready_for_approval', coalesce(o.owner, $default_owner), m.product_id, m.sku,
       coalesce(m.label, '') || ' is ready for approval',
       'ready-for-approval/' || m.product_id || '/' || CAST($day AS VARCHAR), 1
FROM moved m LEFT JOIN cfg_owner o ON o.kind = 'category' AND o.key = m.category_root
WHERE m.workflow_stage = $approval_stage
UNION ALL
SELECT 'published', p.recipient, m.product_id, m.sku,
       coalesce(m.label, '') || ' is now ' || m.workflow_stage,
       'published/' || m.product_id || '/' || m.workflow_stage, 1
FROM moved m CROSS JOIN (SELECT unnest($published_to) AS recipient) p
WHERE list_contains($published_stages, m.workflow_stage)
UNION ALL
SELECT 'escalation', e.manager, e.product_id, e.sku,
       e.rule || ' open since ' || CAST(e.first_seen AS VARCHAR) || ' (owner ' || e.owner || ', level '
           || CAST(e.level AS VARCHAR) || ')',
       'escalation/' || e.rule || '/' || e.product_id || '/' || CAST(e.first_seen AS VARCHAR) || '/L'
           || CAST(e.level AS VARCHAR), e.level
FROM (SELECT es.*, c.manager FROM escalations es JOIN cfg_chain c ON c.person = es.owner AND c.level = es.level) e
"""

# Milestones per category root: what the day's import brought and where the category stands.
MILESTONES_SQL = """
CREATE OR REPLACE TEMP TABLE notification_milestones AS
WITH today AS (SELECT * FROM catalog_snapshot WHERE snapshot_date = $day),
imported AS (
    SELECT t.category_root, count(*) AS changed
    FROM plytix_product_changes c JOIN today t ON t.product_id = c.id
    WHERE c.partition_date = $day GROUP BY ALL
),
stages AS (
    SELECT category_root,
           count(*) FILTER (WHERE list_contains($enrichment_stages, workflow_stage)) AS in_enrichment,
           count(*) AS products
    FROM today GROUP BY ALL
),
ready AS (
    SELECT category_root, count(*) AS launch_ready FROM catalog_quality_report
    WHERE report_date = $day AND rule = 'launch_ready' AND state <> 'resolved' GROUP BY ALL
)
SELECT i.category_root, coalesce(o.owner, $default_owner) AS recipient, i.changed, s.in_enrichment,
       coalesce(r.launch_ready, 0) AS launch_ready, s.products
FROM imported i JOIN stages s USING (category_root) LEFT JOIN ready r USING (category_root)
LEFT JOIN cfg_owner o ON o.kind = 'category' AND o.key = i.category_root
WHERE i.changed >= $milestone_min AND i.category_root IS NOT NULL
"""

SUBJECTS = {
    "finding": "Catalog finding for {sku}: {line}",
    "ready_for_approval": "Ready for approval: {sku}",
    "published": "Approved and published: {sku}",
    "escalation": "Escalation: {sku} overdue",
}
DIGEST_SUBJECTS = {
    "finding": "{n} new catalog findings for you on {day}",
    "ready_for_approval": "{n} products ready for approval on {day}",
    "published": "{n} products approved or published on {day}",
    "escalation": "{n} overdue catalog problems escalated to you on {day}",
}
DIGEST_LINES = 50  # a digest lists this many products, then says how many more


def escalation_tables(rules: QualityRules) -> dict[str, pd.DataFrame]:
    """`cfg_escalation` (level, after_days) and `cfg_chain` (person, level, manager at that level)."""
    levels = [(level, days) for level, days in enumerate(rules.notifications.escalation_after_days, start=1)]
    chain = []
    for person in rules.people:
        manager, level = rules.people[person].manager, 1
        while manager and level <= len(levels):
            chain.append((person, level, manager))
            manager, level = rules.people[manager].manager if manager in rules.people else None, level + 1
    return {
        "cfg_escalation": pd.DataFrame(levels, columns=["level", "after_days"]).astype({"level": "int32", "after_days": "int32"}),
        "cfg_chain": pd.DataFrame(chain, columns=["person", "level", "manager"]).astype({"level": "int32"}),
    }


def plan_items(con, day: date, rules: QualityRules, stages: dict[str, list[str]]) -> None:
    """Fill the temp tables `notification_items` and `notification_milestones` for `day`."""
    from assets.quality import load_rule_tables  # the owners table the quality rules route by

    load_rule_tables(con, rules)
    for name, frame in escalation_tables(rules).items():
        con.register(f"{name}_frame", frame)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")  # noqa: S608 (fixed names)
        con.unregister(f"{name}_frame")
    common = {"day": day, "default_owner": rules.owners.default}
    con.execute(ITEMS_SQL, {**common, "approval_stage": rules.launch.stage,
                            "published_to": rules.notifications.published_to,
                            "published_stages": stages["published"]})
    con.execute(MILESTONES_SQL, {**common, "enrichment_stages": stages["enrichment"],
                                 "milestone_min": rules.notifications.milestone_min_products})


GROUPED_SQL = """
SELECT kind, recipient, record_id, sku, line, item_key, level, n FROM (
    SELECT *, row_number() OVER (PARTITION BY kind, recipient ORDER BY sku, item_key) AS rn,
           count(*) OVER (PARTITION BY kind, recipient) AS n
    FROM notification_items WHERE recipient IS NOT NULL
) WHERE rn <= greatest($digest_above, $digest_lines)
ORDER BY kind, recipient, rn
"""


def sms_number(phone: str) -> str:
    """E.164 (+4915...) as OpenText's SMS destinations take it: digits with the 00 prefix."""
    return "00" + phone.removeprefix("+")


def render(con, day: date, rules: QualityRules, report_link: str) -> list[Planned]:
    """Turn the day's items and milestones into outbox rows: one each, or one digest per recipient and kind."""
    digest_above = rules.notifications.digest_above
    rows = con.execute(GROUPED_SQL, {"digest_above": digest_above, "digest_lines": DIGEST_LINES}).fetchall()
    groups: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        groups.setdefault((row[0], row[1]), []).append(row)
    planned: list[Planned] = []
    for (kind, recipient), items in groups.items():
        total = items[0][7]
        if total <= digest_above:
            for _, _, record_id, sku, line, item_key, level, _ in items:
                subject = SUBJECTS[kind].format(sku=sku, line=line)[:200]
                body = f"{line}\n\nProduct {sku} ({record_id}).\nReport: {report_link}"
                planned += _channels(rules, kind, recipient, item_key, subject, body, record_id, day, level)
        else:
            listed = items[:DIGEST_LINES]
            more = total - len(listed)
            lines = "\n".join(f"- {sku}: {line}" for _, _, _, sku, line, _, _, _ in listed)
            body = (f"{lines}\n" + (f"... and {more} more.\n" if more else "") + f"\nReport: {report_link}")
            subject = DIGEST_SUBJECTS[kind].format(n=total, day=day)
            level = max(item[6] for item in items)
            planned += _channels(rules, kind, recipient, f"digest/{kind}/{recipient}/{day}", subject, body, None,
                                 day, level)
    for root, recipient, changed, in_enrichment, launch_ready, products in con.execute(
            "SELECT * FROM notification_milestones ORDER BY category_root").fetchall():
        subject = f"{root} catalog refresh on {day}: {changed} products imported"
        body = (f"Import completed: {changed} products changed in {root}.\n"
                f"Enrichment in progress: {in_enrichment} of {products} products.\n"
                f"Publishing ready: {launch_ready} products pass every launch rule.\n\nReport: {report_link}")
        planned += _channels(rules, "milestone", recipient, f"milestone/{root}/{day}", subject, body, None, day, 1)
    return planned


def _channels(rules: QualityRules, kind: str, recipient: str, key: str, subject: str, body: str,
              record_id: str | None, day: date, level: int) -> list[Planned]:
    """Email always; an SMS too for escalations from level 2 when the person has a phone number."""
    out = [Planned(f"{key}|email", kind, "email", recipient, recipient, subject, body, record_id, day)]
    person = rules.people.get(recipient)
    if kind == "escalation" and level >= 2 and person and person.phone:
        sms = f"Catalog escalation: {subject}"[:160]
        out.append(Planned(f"{key}|sms", kind, "sms", recipient, sms_number(person.phone), subject, sms,
                           record_id, day))
    return out
