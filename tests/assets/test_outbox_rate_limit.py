"""The outbox under OpenText's rate limit: a burst larger than the limit is sent in one delivery pass,
each notification once, instead of spending its attempts on 429s and failing (found by `make bench`:
300 notifications at 10/s left 83 failed). And a job status that cannot be read is noted on its row
without stopping the other jobs' polls."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime

import duckdb

from assets.audit import AuditLog
from assets.outbox import MAX_SUBMIT_ATTEMPTS, POLL_EVERY, Planned, enqueue, poll_accepted, send_pending
from assets.warehouse import ensure_tables
from resources.opentext import OpenTextClient, TokenCache

RATE_PER_S = 5
BURST = 8 * RATE_PER_S  # well past the bucket: the old outbox sent RATE_PER_S and deferred the rest


def planned(n: int) -> list[Planned]:
    day = date(2026, 11, 22)
    return [Planned(dedupe_key=f"test/rate/{i}|email", kind="finding", channel="email",
                    recipient="data-steward@example.com", destination="data-steward@example.com",
                    subject=f"Finding {i}", body="text", record_id=str(i), window_date=day) for i in range(n)]


def test_a_burst_past_the_rate_limit_is_sent_in_one_pass_each_notification_once(sandbox, tmp_path):
    sandbox.configure(opentext_rate_per_s=RATE_PER_S, opentext_token_rate_per_min=100000)
    client = OpenTextClient(f"{sandbox.url}/opentext-auth", f"{sandbox.url}/opentext", "sandbox-tenant",
                            "sandbox-ot-client", "sandbox-ot-secret", token_cache=TokenCache())
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # real waits (the bucket refills in real time), recorded
        waited.append(seconds)
        time.sleep(seconds)

    before = len(sandbox.writes("opentext"))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_tables(con)
        enqueue(con, planned(BURST), "run-1")
        outcomes = send_pending(con, client, AuditLog(con, "run-1", "test", False), datetime.now(UTC), sleep=sleep)
        rows = con.execute("SELECT status, attempts, reference FROM notification_outbox").fetchall()
    client.close()

    assert outcomes == {"accepted": BURST}
    assert Counter(status for status, _, _ in rows) == {"accepted": BURST}
    assert all(attempts == 1 < MAX_SUBMIT_ATTEMPTS for _, attempts, _ in rows)
    assert waited, "the limit was met and waited out"
    sent = [w for w in sandbox.writes("opentext")[before:] if w["status"] < 300]
    assert Counter(w["body"]["customer_reference"] for w in sent) == Counter(r for _, _, r in rows)


def test_an_unreadable_job_status_is_noted_and_the_other_jobs_are_still_polled(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("CATALOG_OPS_HTTP_RETRY_DELAY_SCALE", "0")  # the injected faults need no real waiting
    client = OpenTextClient(f"{sandbox.url}/opentext-auth", f"{sandbox.url}/opentext", "sandbox-tenant",
                            "sandbox-ot-client", "sandbox-ot-secret", token_cache=TokenCache(), max_attempts=2)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_tables(con)
        enqueue(con, planned(3), "run-1")
        assert send_pending(con, client, AuditLog(con, "run-1", "test", False), datetime.now(UTC)) == {"accepted": 3}
        # Both attempts at the first status poll get a truncated body; the other two polls are answered.
        sandbox.fault("opentext", path_contains="/status", script=["malformed", "malformed"])
        outcomes = poll_accepted(con, client, datetime.now(UTC) + POLL_EVERY)
        rows = con.execute("SELECT status, last_error FROM notification_outbox "
                           "ORDER BY accepted_at, dedupe_key").fetchall()
    client.close()

    assert outcomes.pop("unreadable_status") == 1 and sum(outcomes.values()) == 2
    (first_status, first_error), *others = rows
    assert first_status == "accepted", "still open: polled again next time, never resent"
    assert "opentext GET /mra/v1/outbound/emails/status" in first_error
    assert all(error is None for _, error in others)
