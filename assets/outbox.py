"""The notification outbox: plan once, send once, record only what the service accepted.

The rules come from opentext.md §7. A row is marked `submitting` (and committed) before its POST,
so a crash mid-send leaves a trace: on the next run such a row has no job id, its fate is unknown,
and it becomes `unknown` instead of being sent blindly again (OpenText has no lookup by reference).
A 200 records the job id and `accepted` in one statement. Accepted rows are polled, never resent.
Refusals the service guarantees created nothing (429, 503, connection refused) go back to
`pending` with a backoff (a 429 is first waited out and resent, a few times, within the pass);
permanent rejections fail with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd

from assets.audit import AuditLog
from resources.http import MalformedResponse
from resources.opentext import (
    MAX_SUBMIT_ATTEMPTS,
    DeliveryState,
    OpenTextClient,
    Recipient,
    SubmitOutcome,
    SubmitResult,
    backoff_s,
    reference_for,
)

POLL_EVERY = timedelta(minutes=1)
GIVE_UP_POLLING_AFTER = timedelta(hours=48)
OPEN_STATES = ("pending", "submitting", "accepted")
RATE_LIMIT_WAITS = 3  # per row and pass, on a 429 with a Retry-After of at most MAX_RATE_WAIT_S
MAX_RATE_WAIT_S = 60.0


@dataclass(frozen=True)
class Planned:
    dedupe_key: str  # what, which record, which window, and the channel: "finding/.../2026-11-22|email"
    kind: str
    channel: str  # "email" | "sms"
    recipient: str  # the person's key in the rules file (their address)
    destination: str  # the email address, or the SMS number as OpenText takes it (00 prefix)
    subject: str
    body: str
    record_id: str | None
    window_date: object  # date


def enqueue(con: duckdb.DuckDBPyConnection, planned: list[Planned], run_id: str) -> int:
    """Add planned notifications; a dedupe key the outbox already holds is left alone. Returns the
    number of new rows."""
    if not planned:
        return 0
    frame = pd.DataFrame([p.__dict__ for p in planned])
    frame["reference"] = [reference_for(p.dedupe_key) for p in planned]
    frame["planned_at"] = datetime.now(UTC)
    frame["planned_by_run"] = run_id
    frame["status"] = "pending"
    frame["attempts"] = 0
    con.register("planned_frame", frame)
    try:
        # (fetchall, not fetchone: DuckDB wants every result drained before `unregister`)
        before = con.execute("SELECT count(*) FROM notification_outbox").fetchall()[0][0]
        con.execute("INSERT OR IGNORE INTO notification_outbox BY NAME SELECT * FROM planned_frame").fetchall()
        return con.execute("SELECT count(*) FROM notification_outbox").fetchall()[0][0] - before
    finally:
        con.unregister("planned_frame")


def recover_interrupted(con: duckdb.DuckDBPyConnection) -> int:
    """`submitting` rows without a job id were cut off mid-send: the service may have the job."""
    return con.execute(
        "UPDATE notification_outbox SET status = 'unknown', finished_at = now(), last_error = "
        "'interrupted between submit and record; not resent (check OpenText before resending by hand)' "
        "WHERE status = 'submitting' AND job_id IS NULL RETURNING dedupe_key").fetchall().__len__()  # noqa: PLC2801


def send_pending(con: duckdb.DuckDBPyConnection, client: OpenTextClient, audit: AuditLog, now: datetime,
                 limit: int = 500, sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Submit due `pending` rows, oldest first. In a dry run, only audit what would be sent."""
    rows = con.execute(
        "SELECT dedupe_key, reference, channel, recipient, destination, subject, body, attempts "
        "FROM notification_outbox WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
        "ORDER BY planned_at, dedupe_key LIMIT ?", [now, limit]).fetchall()
    outcomes: dict[str, int] = {}
    for key, reference, channel, recipient, destination, subject, body, attempts in rows:
        audit.record("opentext", f"submit_{channel}", key, reference=reference, recipient=recipient)
        if audit.dry_run:
            outcomes["dry_run"] = outcomes.get("dry_run", 0) + 1
            continue
        con.execute("UPDATE notification_outbox SET status = 'submitting', attempts = attempts + 1, "
                    "submitted_at = ? WHERE dedupe_key = ?", [now, key])
        result = _submit(client, channel, reference, Recipient(recipient, destination), subject, body, sleep)
        outcome = result.outcome
        if outcome is SubmitOutcome.ACCEPTED:
            con.execute("UPDATE notification_outbox SET status = 'accepted', job_id = ?, accepted_at = ?, "
                        "last_error = NULL WHERE dedupe_key = ?", [result.job_id, now, key])
        elif outcome is SubmitOutcome.NOT_ACCEPTED and attempts + 1 < MAX_SUBMIT_ATTEMPTS:
            retry_at = now + timedelta(seconds=backoff_s(attempts + 1, result.retry_after_s))
            con.execute("UPDATE notification_outbox SET status = 'pending', next_attempt_at = ?, last_error = ? "
                        "WHERE dedupe_key = ?", [retry_at, result.detail[:500], key])
        else:
            status = "unknown" if outcome is SubmitOutcome.UNKNOWN else "failed"
            con.execute("UPDATE notification_outbox SET status = ?, finished_at = ?, last_error = ? "
                        "WHERE dedupe_key = ?", [status, now, result.detail[:500], key])
        outcomes[outcome.value] = outcomes.get(outcome.value, 0) + 1
    return outcomes


def _submit(client: OpenTextClient, channel: str, reference: str, to: Recipient, subject: str, body: str,
            sleep: Callable[[float], None]) -> SubmitResult:
    """One row's submit. A 429 created nothing: wait as told and send the same row again. Moving on
    to the next row instead only met the same limit, and a burst of a few hundred rows spent every
    row's attempts in seconds (the bench's 300 notifications at 10/s: 83 failed)."""
    waits = 0
    while True:
        result = (client.submit_email(reference, [to], subject, body) if channel == "email"
                  else client.submit_sms(reference, [to], body))
        wait = result.retry_after_s
        if result.status != 429 or wait is None or wait > MAX_RATE_WAIT_S or waits == RATE_LIMIT_WAITS:
            return result
        sleep(wait)
        waits += 1


def poll_accepted(con: duckdb.DuckDBPyConnection, client: OpenTextClient, now: datetime,
                  limit: int = 500) -> dict[str, int]:
    """Ask OpenText how accepted jobs went, oldest first, each at most once a minute."""
    rows = con.execute(
        "SELECT dedupe_key, channel, job_id, reference, accepted_at FROM notification_outbox "
        "WHERE status = 'accepted' AND (last_polled_at IS NULL OR last_polled_at <= ?) "
        "ORDER BY accepted_at, dedupe_key LIMIT ?", [now - POLL_EVERY, limit]).fetchall()
    outcomes: dict[str, int] = {}
    for key, channel, job_id, reference, accepted_at in rows:
        try:
            status = client.job_status(channel, job_id, reference)
        except MalformedResponse as error:  # one unreadable status must not stop the other jobs' polls
            con.execute("UPDATE notification_outbox SET last_polled_at = ?, last_error = ? WHERE dedupe_key = ?",
                        [now, str(error)[:1000], key])
            outcomes["unreadable_status"] = outcomes.get("unreadable_status", 0) + 1
            continue
        if status.state is DeliveryState.PENDING:
            final = "unconfirmed" if now - accepted_at > GIVE_UP_POLLING_AFTER else None
            con.execute("UPDATE notification_outbox SET last_polled_at = ?, status = coalesce(?, status), "
                        "finished_at = CASE WHEN ? IS NULL THEN NULL ELSE ? END WHERE dedupe_key = ?",
                        [now, final, final, now, key])
            state = final or "still_pending"
        else:
            error = "; ".join(f"{f.recipient_id or f.address}: {f.state} (gamma {f.gamma_code})"
                              for f in status.failures) or None
            con.execute("UPDATE notification_outbox SET status = ?, last_polled_at = ?, finished_at = ?, "
                        "last_error = ? WHERE dedupe_key = ?", [status.state.value, now, now, error, key])
            state = status.state.value
        outcomes[state] = outcomes.get(state, 0) + 1
    return outcomes


def outbox_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return dict(con.execute("SELECT status, count(*) FROM notification_outbox GROUP BY status").fetchall())
