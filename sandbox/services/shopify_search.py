"""Shopify's search syntax subset and keyset pagination over DuckDB (shopify.md §6).

Search: `field:value`, `:>` `:>=` `:<` `:<=`, `AND`/`OR` (a space is AND), `-`/`NOT` negation,
parentheses and `'`/`"` quotes. A field the connection does not know matches everything and adds a
warning under `extensions.search` (inferred). Paging: `first`/`last` required and ≤ 250, cursors are
opaque keysets `{"last_id", "last_value"}` (rows leaving a window shift nothing), and no connection
pages beyond `shopify_pagination_cap` objects.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import GraphQLError

MAX_PAGE_SIZE = 250
UNKNOWN_FIELD_WARNING = "Invalid search field for this query."
_TOKEN = re.compile(r"""\s*(\(|\)|(?:[^\s()"']|"[^"]*"|'[^']*')+)""")
_TERM = re.compile(r"^(?P<neg>-)?(?P<field>[A-Za-z_][A-Za-z0-9_.]*):(?P<op>>=|<=|>|<)?(?P<value>.*)$", re.S)


# ---------- search ----------
@dataclass(frozen=True)
class SearchField:
    """How one search field becomes SQL: `compile(op, value) -> (sql, params)` or None if the value is invalid."""

    compile: Callable[[str, str], tuple[str, list] | None]


def timestamp_field(column: str) -> SearchField:
    def compile_(op: str, value: str):
        parsed = parse_search_time(value)
        if parsed is None:
            return None
        instant, is_day = parsed
        if op == "=" and is_day:  # a bare date means that whole day
            return f"({column} >= ? AND {column} < ?)", [instant, instant + timedelta(days=1)]
        return f"{column} {op} ?", [instant]

    return SearchField(compile_)


def number_field(column: str) -> SearchField:
    def compile_(op: str, value: str):
        digits = value.rsplit("/", 1)[-1]  # a gid works as well as the number
        if not digits.isdigit():
            return None
        return f"{column} {op} ?", [int(digits)]

    return SearchField(compile_)


def enum_field(conditions: dict[str, str], column: str | None = None) -> SearchField:
    """Values mapped to SQL conditions; unmapped values compare upper-cased against `column`."""

    def compile_(op: str, value: str):
        key = value.lower()
        if key in conditions:
            return conditions[key], []
        if column is None:
            return "FALSE", []
        return f"{column} = ?", [value.upper()]

    return SearchField(compile_)


def tag_field(column: str, negate: bool = False) -> SearchField:
    def compile_(op: str, value: str):
        sql = f"list_contains(list_transform({column}, t -> lower(t)), ?)"
        return (f"NOT {sql}" if negate else sql), [value.lower()]

    return SearchField(compile_)


def bool_field(column: str) -> SearchField:
    def compile_(op: str, value: str):
        if value.lower() not in ("true", "false"):
            return None
        return f"{column} = ?", [value.lower() == "true"]

    return SearchField(compile_)


def parse_search_time(value: str) -> tuple[datetime, bool] | None:
    """(naive UTC instant, whether only a date was given)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.fromisoformat(value), True
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed, False


@dataclass
class CompiledSearch:
    sql: str = "TRUE"
    params: list = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)


def compile_search(query: str | None, fields: dict[str, SearchField],
                   free_text: Callable[[str], tuple[str, list]] | None = None) -> CompiledSearch:
    """The WHERE condition for a search string; unknown fields match everything, with a warning."""
    out = CompiledSearch()
    tokens = _TOKEN.findall(query or "")
    if not tokens:
        return out
    parser = _Parser(tokens, fields, free_text, out.warnings)
    sql, params = parser.parse_or()
    while parser.pos < len(tokens):  # stray closing parentheses: read on, as AND
        parser.pos += 1
        more_sql, more_params = parser.parse_or() if parser.pos < len(tokens) else ("TRUE", [])
        sql, params = f"({sql}) AND ({more_sql})", params + more_params
    out.sql, out.params = sql, params
    return out


class _Parser:
    def __init__(self, tokens, fields, free_text, warnings):
        self.tokens, self.fields, self.free_text, self.warnings = tokens, fields, free_text, warnings
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse_or(self):
        sql, params = self.parse_and()
        while self._peek() == "OR":
            self.pos += 1
            right_sql, right_params = self.parse_and()
            sql, params = f"({sql}) OR ({right_sql})", params + right_params
        return sql, params

    def parse_and(self):
        sql, params = self.parse_unary()
        while self._peek() not in (None, "OR", ")"):
            if self._peek() == "AND":
                self.pos += 1
                if self._peek() in (None, "OR", ")"):
                    break
            right_sql, right_params = self.parse_unary()
            sql, params = f"({sql}) AND ({right_sql})", params + right_params
        return sql, params

    def parse_unary(self):
        token = self._peek()
        if token is None:
            return "TRUE", []
        self.pos += 1
        if token == "NOT":
            sql, params = self.parse_unary()
            return f"NOT ({sql})", params
        if token == "(":
            sql, params = self.parse_or()
            if self._peek() == ")":
                self.pos += 1
            return sql, params
        return self.term(token)

    def term(self, token: str):
        match = _TERM.match(token)
        negate = token.startswith("-") and len(token) > 1
        if not match:
            text = _unquote(token[1:] if negate else token)
            sql, params = self.free_text(text) if self.free_text else ("TRUE", [])
        else:
            name, op, value = match["field"], match["op"] or "=", _unquote(match["value"])
            spec = self.fields.get(name)
            compiled = spec.compile(op, value) if spec else None
            if spec is None:
                self.warnings.append({"field": name, "message": UNKNOWN_FIELD_WARNING})
                return "TRUE", []
            if compiled is None:  # a value the field cannot take matches nothing (inferred)
                compiled = ("FALSE", [])
            sql, params = compiled
        return (f"NOT ({sql})", params) if negate else (sql, params)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.replace("'", "").replace('"', "")


# ---------- cursors ----------
def encode_cursor(last_id: int, last_value: Any = None, with_value: bool = True) -> str:
    payload: dict = {"last_id": last_id}
    if with_value:
        payload["last_value"] = _json_value(last_value)
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> dict:
    try:
        payload = json.loads(base64.b64decode(cursor, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor for current pagination sort.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("last_id"), int):
        raise GraphQLError("Invalid cursor for current pagination sort.")
    return payload


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal):
        return str(value)
    return value


def _sql_value(value: Any, kind: str) -> Any:
    try:
        if kind == "ts":
            return datetime.fromisoformat(str(value).replace("Z", ""))
        if kind == "num":
            return Decimal(str(value))
        if kind == "int":
            return int(value)
    except (ValueError, InvalidOperation, TypeError):
        raise GraphQLError("Invalid cursor for current pagination sort.") from None
    return str(value) if value is not None else None


# ---------- a page ----------
@dataclass(frozen=True)
class Listing:
    """One connection's rows: a FROM clause with its numeric id column and the sort keys it offers."""

    source: str  # FROM clause, aliased `t`
    sort_keys: dict[str, tuple[str, str]]  # sortKey enum -> (SQL expression, value kind: ts|int|num|str)
    default_sort: str = "ID"
    fields: dict[str, SearchField] = field(default_factory=dict)
    free_text: Callable[[str], tuple[str, list]] | None = None
    id_column: str = "t.id"


@dataclass
class Page:
    rows: list[dict]
    cursors: list[str]
    has_next: bool
    has_previous: bool
    warnings: list[dict]


def page_size(args: dict, field_name: str) -> tuple[int, bool]:
    """(n, backwards) from `first`/`last`, with Shopify's errors (§6)."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
            raise GraphQLError(f"Argument '{name}' on Field '{field_name}' has an invalid value ({value}). "
                               f"Expected a page size from 0 to {MAX_PAGE_SIZE}.")
    return (first, False) if first is not None else (last, True)


def fetch_page(con, listing: Listing, args: dict, field_name: str, cap: int,
               where: str = "TRUE", params: list | None = None) -> Page:
    """One page by keyset: `ORDER BY sort, id` (reversed for `reverse`/`last`), LIMIT n + 1."""
    n, backwards = page_size(args, field_name)
    sort_name = args.get("sortKey") or listing.default_sort
    sort_expr, kind = listing.sort_keys.get(sort_name, listing.sort_keys[listing.default_sort])
    with_value = sort_expr != listing.id_column
    search = compile_search(args.get("query"), listing.fields, listing.free_text)
    base_sql, base_params = f"({where}) AND ({search.sql})", [*(params or []), *search.params]
    descending = bool(args.get("reverse"))
    after, before = args.get("after"), args.get("before")
    conditions, cond_params = [base_sql], list(base_params)
    for cursor, forward in ((after, True), (before, False)):
        if cursor:
            sql, values = _keyset(listing, sort_expr, kind, decode_cursor(cursor), forward != descending)
            conditions.append(sql)
            cond_params += values
    start = after if not backwards else before
    position = 0
    if start:  # how many objects lie behind the cursor: the 25 000 cap counts them
        sql, values = _keyset(listing, sort_expr, kind, decode_cursor(start), (not backwards) == descending,
                              inclusive=True)
        position = con.execute(f"SELECT count(*) FROM {listing.source} WHERE {base_sql} AND {sql}",  # noqa: S608
                               [*base_params, *values]).fetchone()[0]
    if position >= cap:
        raise GraphQLError(f"Pagination limit of {cap} objects reached. Narrow the query.")
    limit = min(n, cap - position)
    read_descending = descending != backwards
    direction = "DESC" if read_descending else "ASC"
    cursor = con.execute(
        f"SELECT *, {sort_expr} AS _sort_value FROM {listing.source} WHERE {' AND '.join(conditions)} "  # noqa: S608
        f"ORDER BY {sort_expr} {direction}, {listing.id_column} {direction} LIMIT ?", [*cond_params, limit + 1])
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    cursors = [encode_cursor(r["id"], r["_sort_value"], with_value) for r in rows]
    has_next, has_previous = (bool(before), more) if backwards else (more, bool(after))
    return Page(rows, cursors, has_next, has_previous, search.warnings)


def _keyset(listing: Listing, sort_expr: str, kind: str, cursor: dict, greater: bool,
            inclusive: bool = False) -> tuple[str, list]:
    """Rows strictly after (`greater`) or before the cursor in (sort, id) order; `inclusive` adds the
    cursor's own row (used to count what lies behind it)."""
    op = ">" if greater else "<"
    id_op = op + ("=" if inclusive else "")
    idc = listing.id_column
    if sort_expr == idc:
        return f"{idc} {id_op} ?", [cursor["last_id"]]
    if "last_value" not in cursor:
        raise GraphQLError("Invalid cursor for current pagination sort.")
    value = _sql_value(cursor["last_value"], kind)
    if value is None:
        return f"({sort_expr} IS NULL AND {idc} {id_op} ?)", [cursor["last_id"]]
    return (f"({sort_expr} {op} ? OR ({sort_expr} = ? AND {idc} {id_op} ?))",
            [value, value, cursor["last_id"]])
