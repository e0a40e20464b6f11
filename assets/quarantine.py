"""Malformed records: why one is set aside, how it is kept, and the alert when too many are.

Extraction never stops on one unreadable record: the record goes to `<source>_quarantine` with a
reason that names the field where one can be named, and the rest of the page is processed. A
record is malformed when the model refuses it, when reading it raises anything at all (a list where
an object belongs), or when the warehouse would refuse a value the model accepted (a lone surrogate
in a string, an integer beyond the column's range): such a row would otherwise fail the whole page.

A few quarantined records are a data-entry problem; many mean the source changed shape. Each
extraction asset carries the `quarantine_share_below_limit` check: ERROR severity, so the
`materialisation_alerts` sensor alerts the integration owners, but not blocking, so the records that
were fine still flow downstream. The limit is `CATALOG_OPS_QUARANTINE_ALERT_SHARE` (default 1 %).
"""

from __future__ import annotations

import functools
import json
import math
from datetime import date, datetime
from typing import Any

import dagster as dg
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from assets.warehouse import TABLES

CHECK_NAME = "quarantine_share_below_limit"
REASON_CHARS = 1_000
RECORD_CHARS = 100_000
_INTEGER = (-(2**31), 2**31 - 1)  # DuckDB INTEGER
_BIGINT = (-(2**63), 2**63 - 1)


class QuarantineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_OPS_", extra="ignore")

    # Share of a run's records quarantined above which the extraction's check fails and alerts.
    quarantine_alert_share: float = Field(0.01, ge=0, le=1)


class RecordProblem(ValueError):
    """A record the model accepted but the warehouse would refuse; the message names the fields."""


# ---------- the reason ----------
def reason_for(exc: BaseException) -> str:
    """One line per problem, naming the field (`categories.0: Input should be a valid string`)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}" for e in exc.errors())
    elif isinstance(exc, RecordProblem):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return printable(text)[:REASON_CHARS]


def printable(text: str) -> str:
    """`text` with lone surrogates written as `\\udXXX`: every other character is kept as it is."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ---------- the record, always as valid JSON ----------
def record_json(record: Any) -> str:
    """The record as strict JSON for the quarantine table's JSON column, whatever it holds. Too long a
    record is kept as `{"truncated": true, "length": ..., "head": ...}`, never as broken JSON."""
    try:
        text = json.dumps(_jsonable(record))
    except RecursionError:
        text = json.dumps({"unreadable": printable(repr(record)[:RECORD_CHARS])})
    if len(text) > RECORD_CHARS:
        # Half: quoting the head again may double its length (every `\` and `"` gets escaped).
        text = json.dumps({"truncated": True, "length": len(text), "head": text[:RECORD_CHARS // 2 - 100]})
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {printable(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return printable(str(value))


def quarantine_row(day: date, source: str, record: Any, reason: str, now: datetime) -> dict:
    """A row of `<source>_quarantine`: the record's id when it has one, the reason, the record itself."""
    record_id = (record.get("id") or record.get("image_id")) if isinstance(record, dict) else None
    return {"partition_date": day, "source": source,
            "record_id": None if record_id is None else printable(str(record_id))[:200],
            "reason": printable(reason)[:REASON_CHARS], "record": record_json(record), "quarantined_at": now}


# ---------- what the warehouse would refuse ----------
def check_storable(record: Any, row: dict | None = None, table: str | None = None) -> None:
    """Raise `RecordProblem` naming every string in `record` that is not valid Unicode and every value
    of `row` out of its `table` column's range; return quietly otherwise."""
    problems = [] if _all_text_encodable(record) else [
        f"{path or '(record)'}: text is not valid Unicode (a lone surrogate)" for path in _bad_text(record)]
    if row is not None and table is not None:
        for column, bounds in _integer_bounds(table).items():
            value = row.get(column)
            if isinstance(value, int) and not bounds[0] <= value <= bounds[1]:
                problems.append(f"{column}: {value} is out of range for {column_types(table)[column]}")
    if problems:
        raise RecordProblem("; ".join(problems))


def _all_text_encodable(record: Any) -> bool:
    """The fast path, one C-level pass: every string and key of a JSON record encodes as UTF-8. False
    also for what `json.dumps` cannot take, so `_bad_text`'s walk (which names the paths) decides."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError, RecursionError):
        return False
    return True


def _bad_text(value: Any, path: str = "") -> list[str]:
    if isinstance(value, str):
        return [] if _encodable(value) else [path]
    if isinstance(value, dict):
        found = [f"{path}.{printable(str(k))}".lstrip(".") for k in value if isinstance(k, str) and not _encodable(k)]
        for key, item in value.items():
            found += _bad_text(item, f"{path}.{printable(str(key))}".lstrip("."))
        return found
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _bad_text(item, f"{path}.{i}".lstrip("."))]
    return []


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _integer_bounds(table: str) -> dict[str, tuple[int, int]]:
    """`{column: (min, max)}` of a table's INTEGER and BIGINT columns (parsed once, not per record)."""
    bounds = {"INTEGER": _INTEGER, "BIGINT": _BIGINT}
    return {column: bounds[kind] for column, kind in column_types(table).items() if kind in bounds}


@functools.cache
def column_types(table: str) -> dict[str, str]:
    """`{column: SQL type}` of a warehouse table, from its declaration in `assets.warehouse.TABLES`."""
    columns = [c.strip() for c in " ".join(TABLES[table].split()).split(",") if c.strip()]
    return {c.split(" ", 1)[0]: c.split(" ", 1)[1].split(" ")[0] for c in columns}


# ---------- the alert ----------
def share_check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CHECK_NAME, asset=asset, blocking=False,
                             description="The share of the run's records set aside as malformed stays at or below "
                                         "CATALOG_OPS_QUARANTINE_ALERT_SHARE (default 1 %). Fails with ERROR, so "
                                         "the integration owners are alerted; downstream still runs.")


def share_check(asset: str, kept: int, quarantined: int, limit: float | None = None) -> dg.AssetCheckResult:
    limit = QuarantineSettings().quarantine_alert_share if limit is None else limit
    total = kept + quarantined
    share = quarantined / total if total else 0.0
    return dg.AssetCheckResult(
        check_name=CHECK_NAME, asset_key=asset, passed=share <= limit, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"quarantined": quarantined, "records": total, "quarantined_share": share, "alert_share": limit,
                  "see": dg.MetadataValue.md(f"`{asset.split('_')[0]}_quarantine` has each record and its reason")},
    )
