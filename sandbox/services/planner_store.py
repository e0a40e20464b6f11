"""Planner's part of the world in DuckDB: plans, buckets, tasks with their details, and the Entra
people the routing rules name. Lists are served by keyset on the creation sequence, never by
loading a plan into Python.
"""

from __future__ import annotations

import json

SCHEMA = """
CREATE TABLE planner_plans (id VARCHAR PRIMARY KEY, title VARCHAR, owner VARCHAR, created_date_time VARCHAR,
    created_by JSON);
CREATE TABLE planner_buckets (seq BIGINT, id VARCHAR PRIMARY KEY, plan_id VARCHAR, bucket JSON, etag_n INTEGER);
CREATE TABLE planner_tasks (seq BIGINT, id VARCHAR PRIMARY KEY, plan_id VARCHAR, task JSON, etag_n INTEGER,
    details JSON, details_etag_n INTEGER);
CREATE TABLE planner_people (id VARCHAR PRIMARY KEY, mail VARCHAR, display_name VARCHAR, role VARCHAR,
    manager_id VARCHAR);
"""


class Stored:
    """One task row: the task and details documents and their etag counters."""

    def __init__(self, row: tuple):
        self.seq: int = row[0]
        self.task: dict = json.loads(row[1])
        self.n: int = row[2]
        self.details: dict = json.loads(row[3])
        self.details_n: int = row[4]


class PlannerStore:
    def __init__(self, state):
        self.state = state

    @property
    def con(self):
        return self.state.con  # looked up each time: a world rebuild replaces the connection

    # ---- plans and buckets ----
    def plan_exists(self, plan_id: str) -> bool:
        return self.con.execute("SELECT 1 FROM planner_plans WHERE id = ?", [plan_id]).fetchone() is not None

    def bucket_plan(self, bucket_id: str) -> str | None:
        row = self.con.execute("SELECT plan_id FROM planner_buckets WHERE id = ?", [bucket_id]).fetchone()
        return row[0] if row else None

    def buckets(self, plan_id: str, after: int, limit: int) -> list[tuple[int, dict, int]]:
        rows = self.con.execute(
            "SELECT seq, bucket, etag_n FROM planner_buckets WHERE plan_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            [plan_id, after, limit]).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    def insert_bucket(self, seq: int, bucket: dict) -> None:
        self.con.execute("INSERT INTO planner_buckets VALUES (?, ?, ?, ?, 1)",
                         [seq, bucket["id"], bucket["planId"], json.dumps(bucket)])

    def max_seq(self, table: str) -> int:
        assert table in ("planner_tasks", "planner_buckets")
        return self.con.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchone()[0]  # noqa: S608

    # ---- tasks ----
    def task(self, task_id: str) -> Stored | None:
        row = self.con.execute("SELECT seq, task, etag_n, details, details_etag_n FROM planner_tasks WHERE id = ?",
                               [task_id]).fetchone()
        return Stored(row) if row else None

    def tasks(self, plan_id: str, after: int, limit: int) -> list[tuple[int, dict, int]]:
        rows = self.con.execute(
            "SELECT seq, task, etag_n FROM planner_tasks WHERE plan_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            [plan_id, after, limit]).fetchall()
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    def insert_task(self, seq: int, task: dict, details: dict) -> None:
        self.con.execute("INSERT INTO planner_tasks VALUES (?, ?, ?, ?, 1, ?, 1)",
                         [seq, task["id"], task["planId"], json.dumps(task), json.dumps(details)])

    def save_task(self, task: dict, n: int) -> None:
        self.con.execute("UPDATE planner_tasks SET task = ?, etag_n = ? WHERE id = ?", [json.dumps(task), n, task["id"]])

    def save_details(self, task_id: str, details: dict, n: int) -> None:
        self.con.execute("UPDATE planner_tasks SET details = ?, details_etag_n = ? WHERE id = ?",
                         [json.dumps(details), n, task_id])

    def delete_task(self, task_id: str) -> None:
        self.con.execute("DELETE FROM planner_tasks WHERE id = ?", [task_id])

    # ---- people ----
    def people(self) -> list[dict]:
        rows = self.con.execute("SELECT id, mail, display_name, role, manager_id FROM planner_people "
                                "ORDER BY mail").fetchall()
        return [{"id": r[0], "mail": r[1], "displayName": r[2], "role": r[3], "managerId": r[4]} for r in rows]
