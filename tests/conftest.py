"""Shared fixtures: one sandbox process per test session, over real loopback HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from orchestration.settings import SERVICE_ENV_PREFIXES

# Dagster's retry of a failed extraction waits 30 s in production; tests do not need to.
os.environ.setdefault("CATALOG_OPS_EXTRACTION_RETRY_DELAY_S", "0.2")

WORLD_NOW = "2026-11-22T12:00:00Z"
SANDBOX_PRODUCTS = 2000
# Generous server-side limits for the shared sandbox; tests that exercise limits lower them.
FAST_LIMITS = ["plytix_rate_per_10s=1000000", "plytix_rate_per_hour=10000000", "plytix_auth_rate_per_s=1000",
               "photoshelter_rate_per_s=100000", "photoshelter_auth_rate_per_min=100000",
               "opentext_rate_per_s=100000", "opentext_token_rate_per_min=100000", "planner_rate_per_s=100000"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sandbox:
    url: str
    admin: httpx.Client
    start_config: dict

    def configure(self, **changes) -> None:
        self.admin.post("/_sandbox/config", json=changes).raise_for_status()

    def fault(self, service: str, **spec) -> None:
        self.admin.post("/_sandbox/faults", json={"service": service, **spec}).raise_for_status()

    def writes(self, service: str) -> list[dict]:
        return self.admin.get("/_sandbox/writes", params={"service": service}).json()["writes"]

    def ground_truth(self) -> dict:
        return self.admin.get("/_sandbox/ground-truth").json()

    def health(self) -> dict:
        return self.admin.get("/_sandbox/health").json()

    def restore(self) -> None:
        """Undo a test's faults and option changes (the world itself is left as the test made it)."""
        self.admin.delete("/_sandbox/faults").raise_for_status()
        current = self.admin.get("/_sandbox/config").json()
        changed = {k: v for k, v in self.start_config.items() if current.get(k) != v}
        if changed:
            self.configure(**changed)


def start_sandbox(products: int = SANDBOX_PRODUCTS, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    sets = [f"world_now={WORLD_NOW}", *FAST_LIMITS, *(extra or [])]
    command = [sys.executable, "-m", "orchestration.cli", "sandbox", "--port", str(port), "--seed", "7",
               "--products", str(products)]
    for item in sets:
        command += ["--set", item]
    # stderr to a file, not a pipe: every injected dropped connection logs a traceback, and a pipe
    # nobody reads would fill up and block the sandbox mid-session.
    log = tempfile.NamedTemporaryFile(prefix="sandbox-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited: {open(log.name).read()[-2000:]}")  # noqa: SIM115
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("sandbox did not start within 120 s")


def stop_sandbox(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[Sandbox]:
    proc, url = start_sandbox()
    admin = httpx.Client(base_url=url, timeout=30)
    try:
        yield Sandbox(url, admin, admin.get("/_sandbox/config").json())
    finally:
        admin.close()
        stop_sandbox(proc)


@pytest.fixture
def sandbox(sandbox_process: Sandbox) -> Iterator[Sandbox]:
    """The session's sandbox, with faults and options restored after each test."""
    yield sandbox_process
    sandbox_process.restore()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch) -> Sandbox:
    """Point every client default at the session sandbox, as a customer's env vars would."""
    monkeypatch.setenv("SANDBOX_URL", sandbox.url)
    for name in list(os.environ):
        if name.startswith(SERVICE_ENV_PREFIXES):
            monkeypatch.delenv(name)
    return sandbox
