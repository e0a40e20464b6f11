"""The sandbox's mutable state: the generated world in DuckDB, recorded writes, tokens and limits."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import duckdb

from sandbox.faults import FaultState
from sandbox.options import SandboxOptions
from sandbox.world import WorldGenerator

WRITES_SCHEMA = """
CREATE TABLE writes (seq BIGINT, service VARCHAR, method VARCHAR, path VARCHAR, status INTEGER,
    body JSON, recorded_at TIMESTAMP)
"""


class SandboxState:
    def __init__(self, options: SandboxOptions):
        self.options = options
        self.faults = FaultState()
        self.lock = threading.RLock()  # handlers run on the event loop; the lock guards admin calls
        self.service_state: dict[str, Any] = {}  # tokens, sessions and limiters, per service
        self.con: duckdb.DuckDBPyConnection
        self._clock_base: tuple[str, datetime, datetime] | None = None
        self.build()

    def build(self) -> None:
        """(Re)generate the world from the options: same seed, same world."""
        with self.lock:
            con = duckdb.connect()
            WorldGenerator(self.options).build(con)
            con.execute(WRITES_SCHEMA)
            self.con = con
            self.anchor = self.options.anchor()
            self.service_state.clear()
            self._write_seq = 0

    def reset(self) -> None:
        self.faults.clear()
        self.build()

    def now(self) -> datetime:
        """Naive UTC now (the sandbox's convention in DuckDB), on the `sandbox_clock` if one is set."""
        real = datetime.now(UTC).replace(tzinfo=None)
        setting = self.options.sandbox_clock
        if not setting:
            return real
        if self._clock_base is None or self._clock_base[0] != setting:
            start = datetime.fromisoformat(setting.replace("Z", "+00:00"))
            start = start.astimezone(UTC).replace(tzinfo=None) if start.tzinfo else start
            self._clock_base = (setting, start, real)
        _, start, set_at = self._clock_base
        return start + (real - set_at)

    def record_write(self, service: str, method: str, path: str, status: int, body: Any) -> None:
        self._write_seq += 1
        self.con.execute(
            "INSERT INTO writes VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._write_seq, service, method, path, status, json.dumps(body, default=str), self.now()],
        )

    def writes(self, service: str | None) -> list[dict]:
        rows = self.con.execute(
            "SELECT seq, service, method, path, status, body, recorded_at FROM writes "
            "WHERE ? IS NULL OR service = ? ORDER BY seq",
            [service, service],
        ).fetchall()
        return [
            {"seq": r[0], "service": r[1], "method": r[2], "path": r[3], "status": r[4],
             "body": json.loads(r[5]), "at": r[6].isoformat()}
            for r in rows
        ]

    def ground_truth(self) -> dict[str, list[str]]:
        rows = self.con.execute(
            "SELECT kind, list(record_id ORDER BY record_id) FROM ground_truth GROUP BY kind ORDER BY kind"
        ).fetchall()
        return {kind: ids for kind, ids in rows}

    def per_service(self, service: str, factory):
        """Lazily created per-service state (tokens, limiters), dropped on reset."""
        if service not in self.service_state:
            self.service_state[service] = factory()
        return self.service_state[service]
