"""`make demo`: the sandbox, the latest catalog partition materialised, and the Dagster UI.

Both servers run in their own process groups so one Ctrl-C here stops them in order: `dagster dev`
ignores SIGTERM, so it gets SIGINT and time to shut its daemon down, then the sandbox stops.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DAGSTER_YAML = """\
# Project-local instance for the demo: runs, event logs and schedules in SQLite under this folder.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
# A run whose process died (killed, out of memory) stays STARTED (this launcher cannot tell) and keeps
# its pool slot: every later warehouse step would wait for it. The daemon fails a run past
# max_runtime_seconds (or on Terminate in the UI), then frees its slots.
run_monitoring:
  enabled: true
  max_runtime_seconds: 43200
  free_slots_after_run_end_seconds: 60
"""


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise SystemExit(f"the sandbox did not answer on {url} within {seconds:.0f} s")


def _stop(proc: subprocess.Popen, sig: int, grace_s: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def dagster_home() -> Path:
    home = ROOT / ".dagster_home"
    home.mkdir(exist_ok=True)
    config = home / "dagster.yaml"
    # Ours (it starts with our first line) is brought up to date, so a checkout that pulled new instance
    # settings gets them; a file someone wrote themselves is left alone.
    current = config.read_text() if config.exists() else None
    if current is None or (current != DAGSTER_YAML and current.startswith(DAGSTER_YAML.splitlines()[0])):
        config.write_text(DAGSTER_YAML)
    return home


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _default_sigint() -> None:
    # Started from a script or `&`, SIGINT may arrive ignored, and children inherit that: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


WEBHOOK_PORT = 8787


def _register_webhooks(sandbox_url: str, seconds: float = 30) -> None:
    """Point the sandbox's Shopify webhooks at the local receiver once it answers."""
    address = f"http://127.0.0.1:{WEBHOOK_PORT}/webhooks/shopify"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{WEBHOOK_PORT}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.3)
    httpx.post(f"{sandbox_url}/_sandbox/webhooks", json={"service": "shopify", "address": address},
               timeout=10).raise_for_status()
    token = os.environ.get("THREEKIT_WEBHOOK_TOKEN", "sandbox-threekit-webhook-token")
    httpx.post(f"{sandbox_url}/_sandbox/webhooks", json={
        "service": "threekit", "address": f"http://127.0.0.1:{WEBHOOK_PORT}/threekit/{token}"}, timeout=10,
    ).raise_for_status()
    print(f"Shopify and Threekit webhooks from the sandbox go to the receiver on port {WEBHOOK_PORT}")


def run(sandbox_port: int = 8765, ui_port: int = 3000, products: int = 2000, seed: int = 7) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    for port in (sandbox_port, ui_port):
        if _port_in_use(port):
            print(f"port {port} is already in use on 127.0.0.1: stop what runs there (an earlier demo?)",
                  file=sys.stderr)
            return 1
    bin_dir = Path(sys.executable).parent
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home()), "SANDBOX_URL": sandbox_url}
    (ROOT / "var").mkdir(exist_ok=True)
    print(f"starting the sandbox on {sandbox_url} ({products} products, seed {seed})")
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "sandbox", "--port", str(sandbox_port), "--seed", str(seed),
         "--products", str(products)], cwd=ROOT, env=env, start_new_session=True, preexec_fn=_default_sigint)
    dagster = receiver = None
    try:
        _wait_healthy(sandbox_url, sandbox)
        # The Shopify webhook receiver, registered with the sandbox as a shop admin would register it.
        receiver = subprocess.Popen([sys.executable, "-m", "orchestration.cli", "webhooks", "--port", str(WEBHOOK_PORT)],
                                    cwd=ROOT, env=env, start_new_session=True, preexec_fn=_default_sigint)
        _register_webhooks(sandbox_url)
        print("materialising the catalog: every change up to the latest partition, then its snapshot, "
              "image join and quality report")
        if subprocess.run([sys.executable, "-m", "orchestration.materialize_latest"], cwd=ROOT, env=env).returncode:
            print("materialisation failed: the UI still opens so you can see why in the run's logs", file=sys.stderr)
        print(f"starting the Dagster UI on http://127.0.0.1:{ui_port} (Ctrl-C stops everything)")
        dagster = subprocess.Popen(
            [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(ui_port)],
            cwd=ROOT, env=env, start_new_session=True, preexec_fn=_default_sigint)
        while dagster.poll() is None and sandbox.poll() is None:
            time.sleep(0.5)
        return dagster.returncode or sandbox.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping the Dagster UI and the sandbox")
        return 0
    finally:
        if dagster is not None:
            _stop(dagster, signal.SIGINT, grace_s=30)
        if receiver is not None:
            _stop(receiver, signal.SIGTERM, grace_s=10)
        _stop(sandbox, signal.SIGTERM, grace_s=10)
