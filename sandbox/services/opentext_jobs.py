"""OpenText messaging jobs (opentext.md §4): submit validation, the job store and the status lifecycle.

Everything here is the contract's *inferred* sandbox behaviour, kept in one place: the 400 rules,
the `xsi-` job numbers, the delay before a job is final and the undeliverable-address rule.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

FIRST_JOB_NUMBER = 10_000_001  # `xsi-10000001` at each start (§4)
MAX_EMAIL_DESTINATIONS = 1000
EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
SMS_RE = re.compile(r"^[0-9]{8,16}$")
JOB_ID_RE = re.compile(r"^[a-z][a-z0-9]*-[0-9]+$")
# §4.3 step 3: the planted undeliverable addresses.
BOUNCE_DOMAIN = "@bounce.example"
DEAD_NUMBER_SUFFIX = "0000"
UNDELIVERABLE_GAMMA_CODE = 5000


class Invalid(ValueError):
    """A submission or status request the service refuses with 400 `invalid_request`."""


def stamp(value: datetime) -> str:
    """`2026-11-22T10:15:03.000Z`: milliseconds, UTC (naive values are UTC)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def undeliverable(channel: str, address: str) -> bool:
    if channel == "email":
        return address.lower().endswith(BOUNCE_DOMAIN)
    return address.endswith(DEAD_NUMBER_SUFFIX)


@dataclass
class Job:
    job_id: str
    channel: str  # "email" or "sms"
    entry_time: datetime  # naive UTC, the sandbox clock
    destinations: list[dict]  # {"ref"?: str, "email"|"sms": str}
    customer_reference: str | None = None
    billing_code: str | None = None

    def status(self, now: datetime, delay_s: float) -> dict:
        """The §4.3 status body as it stands at `now`: Submitted until `delay_s` has passed, then final."""
        final = now >= self.entry_time + timedelta(seconds=delay_s)
        body: dict[str, Any] = {"job_id": self.job_id}
        if self.billing_code is not None:
            body["billing_code_base64"] = b64(self.billing_code)
        if self.customer_reference is not None:
            body["customer_reference_base64"] = b64(self.customer_reference)
        body["entry_time"] = stamp(self.entry_time)
        body["job_state"] = ["Complete", "Posted"] if final else ["Submitted"]
        if self.channel == "email":
            body["html_open_tracking"] = {"total_open_count": 0, "distinct_open_count": 0}
            body["attachments"] = []
        body["deliveries"] = [self._delivery(d, final, delay_s) for d in self.destinations]
        return body

    def _delivery(self, destination: dict, final: bool, delay_s: float) -> dict:
        address = destination[self.channel]
        out: dict[str, Any] = {}
        if destination.get("ref") is not None:
            out["ref_base64"] = b64(destination["ref"])
        out[self.channel] = address
        failed = undeliverable(self.channel, address)
        attempts: list[dict] = []
        if final:
            first_attempt = stamp(self.entry_time + timedelta(seconds=delay_s / 2))
            attempts = [{"state": "Error" if failed else "Sent",
                         "gamma_code": UNDELIVERABLE_GAMMA_CODE if failed else 0, "first_attempt": first_attempt}]
        if self.channel == "email":
            events: dict = {"email_delivery_events": {"dsn": None, "html_open": [], "opt_out": None, "pull": []}}
        else:
            confirmed = final and not failed
            receipt = {"event_time": stamp(self.entry_time + timedelta(seconds=delay_s)), "status": "Confirmed"}
            events = {"sms_delivery_events": [receipt] if confirmed else []}
        out["delivery_attempts"] = attempts
        out["events"] = events
        return out


@dataclass
class JobStore:
    """Jobs of this sandbox run; numbers rise from `xsi-10000001` and nothing is ever deduplicated."""

    jobs: dict[str, Job] = field(default_factory=dict)
    next_number: int = FIRST_JOB_NUMBER

    def create(self, channel: str, entry_time: datetime, destinations: list[dict],
               customer_reference: str | None, billing_code: str | None) -> Job:
        job = Job(f"xsi-{self.next_number}", channel, entry_time, destinations, customer_reference, billing_code)
        self.next_number += 1
        self.jobs[job.job_id] = job
        return job

    def find(self, channel: str, job_id: str | None) -> Job | None:
        """The job, or None when unknown or of the other channel (both are 404s)."""
        if not job_id or not JOB_ID_RE.match(job_id):
            raise Invalid("job_id: required, as <domain>-<number>")
        job = self.jobs.get(job_id)
        return job if job is not None and job.channel == channel else None


# ---------- submit validation ----------
@dataclass(frozen=True)
class Submission:
    """A validated submit, ready to become a job and a write-log entry."""

    channel: str
    destinations: list[dict]
    customer_reference: str | None
    billing_code: str | None
    subject: str | None
    text: str  # the decoded message text (email documents joined), for the write log


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"{where}: must be an object")
    return value


def _optional_string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{where}: must be a string")
    return value


def _destinations(body: dict, channel: str, pattern: re.Pattern, kind: str, limit: int | None) -> list[dict]:
    raw = body.get("destinations")
    if not isinstance(raw, list) or not raw:
        raise Invalid("destinations: at least one destination is required")
    if limit is not None and len(raw) > limit:
        raise Invalid(f"destinations: at most {limit} destinations per job, got {len(raw)}")
    out = []
    for i, destination in enumerate(raw):
        if not isinstance(destination, dict):
            raise Invalid(f"destinations[{i}]: must be an object")
        address = destination.get(channel)
        if not isinstance(address, str) or not pattern.match(address):
            raise Invalid(f"destinations[{i}].{channel}: invalid {kind} {address!r}")
        ref = _optional_string(destination.get("ref"), f"destinations[{i}].ref")
        out.append({"ref": ref, channel: address} if ref is not None else {channel: address})
    return out


def _references(options: dict) -> tuple[str | None, str | None]:
    return (_optional_string(options.get("customer_reference"), "options.customer_reference"),
            _optional_string(options.get("billing_code"), "options.billing_code"))


def _decode_document(document: Any, i: int) -> str:
    if not isinstance(document, dict):
        raise Invalid(f"body[{i}]: must be an object")
    data = document.get("data")
    if not isinstance(data, str) or not data:
        raise Invalid(f"body[{i}].data: required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"body[{i}].data: not valid base64") from None
    charset = document.get("charset") or "UTF-8"
    try:
        codecs.lookup(charset)
    except (LookupError, TypeError):
        raise Invalid(f"body[{i}].charset: unknown charset {charset!r}") from None
    return raw.decode(charset, errors="replace")


def validate_email(body: Any) -> Submission:
    """§4.1: destinations with valid addresses (at most 1000), a subject, base64 documents."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    destinations = _destinations(body, "email", EMAIL_RE, "address", MAX_EMAIL_DESTINATIONS)
    options = _object(body.get("options"), "options")
    email_options = _object(options.get("email_options"), "options.email_options")
    subject = email_options.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise Invalid("options.email_options.subject: required")
    documents = body.get("body")
    if not isinstance(documents, list) or not documents:
        raise Invalid("body: at least one document is required")
    text = "\n".join(_decode_document(document, i) for i, document in enumerate(documents))
    _object(body.get("reports"), "reports")
    customer_reference, billing_code = _references(options)
    return Submission("email", destinations, customer_reference, billing_code, subject, text)


def validate_sms(body: Any) -> Submission:
    """§4.2: destinations with `^[0-9]{8,16}$` numbers and a non-empty plain `sms_text`."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    destinations = _destinations(body, "sms", SMS_RE, "number", None)
    text = body.get("sms_text")
    if not isinstance(text, str) or not text.strip():
        raise Invalid("sms_text: required")
    options = _object(body.get("options"), "options")
    _object(body.get("reports"), "reports")
    customer_reference, billing_code = _references(options)
    return Submission("sms", destinations, customer_reference, billing_code, None, text)
