"""A real PostgreSQL server for the production-instance tests: Debian's server binaries, a throwaway
cluster in a temporary directory, on a free port, with a password (scram-sha-256) as in production.

`make test` installs the `postgresql` package when it is missing. PostgreSQL refuses to run as
root, so as root the cluster is owned and run by the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    db_name: str

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db_name}

    def connect(self):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=self.db_name)


def _server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql: `make test` installs them "
                    "(apt-get install postgresql)")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _server_bin()
    root = Path(tempfile.mkdtemp(prefix="catalog-ops-pg-"))
    data, log = root / "data", root / "server.log"
    password = secrets.token_urlsafe(16)
    (root / "pwfile").write_text(password + "\n")
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(root / "pwfile", owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120)
        if result.returncode:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {result.stderr[-2000:]}\n{server_log}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster", "--pwfile", str(root / "pwfile"),
        "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions")
    # fsync off: a test cluster, thrown away afterwards.
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    try:
        con = PostgresServer("127.0.0.1", port, "dagster", password, "postgres").connect()
        con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        con.cursor().execute("CREATE DATABASE catalog_ops_dagster")
        con.close()
        yield PostgresServer("127.0.0.1", port, "dagster", password, "catalog_ops_dagster")
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
