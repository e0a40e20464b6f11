"""All SQL with parameters: no `execute`/`executemany`/`sql`/`query` call in the shipped code builds its
statement at the call (an f-string with a field, `.format`, `.replace`, `%` or `+`) unless a reviewer
marked the call `# noqa: S608` (the project's convention: only fixed table or column names from
`assets.warehouse.TABLES` are spliced, never a value) or it is listed below with why it is safe.
Statements built elsewhere are ruff's S608's job, which `make test` runs over every file."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["assets", "orchestration", "resources", "sensors", "sandbox", "bench"]
METHODS = {"execute", "executemany", "sql", "query"}
# (file, enclosing function, how the statement starts; "*" for any): why splicing is safe there.
ALLOWED = {
    ("*", "*", "f\"ATTACH '{"):
        "every ATTACH attaches a staging file the project made itself (warehouse folder + fixed name), never input",
    ("assets/warehouse.py", "ensure_tables", "f\"CREATE TABLE IF NOT EXISTS {name} ({columns})\""):
        "names and column lists from the TABLES constant",
    ("assets/warehouse.py", "StagingArea.create", "f\"CREATE TABLE IF NOT EXISTS {table}"):
        "names and column lists from the TABLES and STAGING_TABLES constants",
    ("assets/warehouse.py", "replace_rows", "f\"INSERT INTO {table} BY NAME {select_sql}\""):
        "table checked against TABLES; select_sql is a constant of the caller, its values passed as params",
    ("assets/images.py", "build_product_images", "IMAGES_AS_OF_SQL.replace(\"$day\", f\"DATE '{day.isoformat()}'\")"):
        "a `date` object's isoformat (digits and dashes only) in a view, and DuckDB views take no parameters",
}


def calls(source: str, filename: str = "<string>"):
    """(function qualname, call node) for every SQL-ish method call in a module's source."""
    tree = ast.parse(source, filename)
    stack: list[str] = []

    def visit(node):
        named = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        if named:
            stack.append(node.name)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in METHODS
                and node.args):
            yield ".".join(stack), node
        for child in ast.iter_child_nodes(node):
            yield from visit(child)
        if named:
            stack.pop()

    yield from visit(tree)


def is_spliced(node: ast.expr) -> bool:
    """Built at the call from pieces: an f-string with a field, `+`/`%` with a non-constant side, or
    `.format`/`.format_map`/`.replace`/`.join`. A name or attribute is not: its value is built where it is
    assigned, which ruff's S608 (on in `make test`) checks wherever the text looks like SQL."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return not (isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {"format", "format_map", "replace", "join"} or is_spliced(node.func.value)
    return False


@functools.cache
def scan() -> list[tuple[str, str, str, int, bool]]:
    """(file, function, first line of the statement, line, marked `# noqa: S608`) of every spliced call."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for function, call in calls(source, str(path)):
                if is_spliced(call.args[0]):
                    snippet = (ast.get_source_segment(source, call.args[0]) or "").split("\n")[0]
                    marked = any("noqa: S608" in lines[n - 1] for n in range(call.lineno, (call.end_lineno or 0) + 1))
                    found.append((str(path.relative_to(ROOT)), function, snippet, call.lineno, marked))
    return found


def allowed_by(relative: str, function: str, snippet: str) -> list[tuple[str, str, str]]:
    return [key for key in ALLOWED if key[0] in ("*", relative) and key[1] in ("*", function)
            and snippet.startswith(key[2])]


def test_every_sql_statement_is_constant_or_reviewed():
    unreviewed = {(f, fn, snippet[:80]): f"line {line}" for f, fn, snippet, line, marked in scan()
                  if not marked and not allowed_by(f, fn, snippet)}
    assert unreviewed == {}


def test_the_scan_sees_what_it_must():
    """The scanner is not blind: it finds the project's calls, and flags a spliced value."""
    total = sum(1 for package in PACKAGES for path in (ROOT / package).rglob("*.py") for _ in calls(path.read_text()))
    assert total > 100 and len(scan()) > 10  # the warehouse's fixed-name statements, marked
    tree = ast.parse("def f(con, sku):\n    con.execute(f\"SELECT * FROM t WHERE sku = '{sku}'\")\n"
                     "    con.execute(\"SELECT * FROM t WHERE sku = '\" + sku + \"'\")\n"
                     "    con.execute(\"SELECT * FROM t WHERE sku = '%s'\" % sku)\n"
                     "    con.execute(\"SELECT * FROM t WHERE sku = ?\", [sku])\n")
    flagged = [is_spliced(node.args[0]) for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "execute"]
    assert flagged == [True, True, True, False]


def test_every_allowed_entry_is_still_needed():
    """An allow-list entry whose call is gone (or now marked) is removed, so the list stays short."""
    used = {key for f, fn, snippet, _, marked in scan() if not marked for key in allowed_by(f, fn, snippet)}
    assert set(ALLOWED) - used == set()
