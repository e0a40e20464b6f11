"""The Shopify Admin schema (2026-01) and document validation in Shopify's own words (shopify.md §8).

The shipped SDL is 3.3 MB; graphql-core needs about 3 s to parse and build it, and tests start
several sandbox processes. So it is built once per process, on the first Shopify request, and the
built schema is cached next to the OS temp files as introspection JSON (keyed by the SDL's hash and
the graphql-core version), which loads in well under a second. The cached schema prints exactly
like the one built from the SDL, deprecated arguments included.

Validation runs graphql-core's standard rules, with the two whose wording Shopify's server library
(graphql-ruby) is known for replaced: unknown fields and unknown arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import graphql
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    ValidationRule,
    specified_rules,
)
from graphql.validation import FieldsOnCorrectTypeRule, KnownArgumentNamesRule

SDL_NAME = "admin-2026-01.graphql"
# The contract's Shopify folder (the Admin SDL and the webhook templates), copied verbatim from
# ../shared/contracts/shopify into the repo so a clone is self-contained; the variable points elsewhere
# (e.g. at a newer API version's SDL).
CONTRACT_ENV = "CATALOG_OPS_SHOPIFY_CONTRACT_DIR"
CONTRACT_DIR = Path(os.environ.get(CONTRACT_ENV) or Path(__file__).resolve().parents[1] / "contracts" / "shopify")

_lock = threading.Lock()
_schema: GraphQLSchema | None = None


def sdl_path() -> Path:
    path = CONTRACT_DIR / SDL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the Shopify Admin schema is not at {path}; set {CONTRACT_ENV} to the contract's "
                                "shopify folder")
    return path


def admin_schema() -> GraphQLSchema:
    """The Admin schema, built once per process (from the disk cache when it is there)."""
    global _schema
    with _lock:
        if _schema is None:
            _schema = _load(sdl_path())
        return _schema


def _load(path: Path) -> GraphQLSchema:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw + graphql.version.encode()).hexdigest()[:20]
    cache = Path(tempfile.gettempdir()) / "catalog-ops" / f"shopify-admin-schema-{digest}.json"
    try:
        return graphql.build_client_schema(json.loads(cache.read_bytes()), assume_valid=True)
    except (OSError, ValueError, TypeError, KeyError):
        pass  # no cache yet, or a damaged one: rebuild it
    schema = graphql.build_ast_schema(graphql.parse(raw.decode(), no_location=True), assume_valid_sdl=True)
    introspection = graphql.introspection_from_schema(
        schema, descriptions=True, specified_by_url=True, directive_is_repeatable=True,
        schema_description=True, input_value_deprecation=True)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(introspection, separators=(",", ":")))
        os.replace(partial, cache)  # atomic: a concurrent reader sees all of it or nothing
    except OSError:
        pass  # a read-only temp dir only costs the next process the full build
    return schema


# ---------- graphql-ruby's wording for the two errors Shopify users meet most ----------
def ruby_path(node, ancestors) -> list[str]:
    """The static-validation path graphql-ruby reports: `["query Name", "orders", "nodes", "x"]`."""
    path: list[str] = []
    for ancestor in [*ancestors, node]:
        if isinstance(ancestor, OperationDefinitionNode):
            name = f" {ancestor.name.value}" if ancestor.name else ""
            path.append(f"{ancestor.operation.value}{name}")
        elif isinstance(ancestor, FragmentDefinitionNode):
            path.append(f"fragment {ancestor.name.value}")
        elif isinstance(ancestor, InlineFragmentNode):
            path.append(f"... on {ancestor.type_condition.name.value}" if ancestor.type_condition else "...")
        elif isinstance(ancestor, FieldNode):
            path.append((ancestor.alias or ancestor.name).value)
    return path


class UndefinedFieldRule(ValidationRule):
    """`Field 'financialStatus' doesn't exist on type 'Order'` (code undefinedField), seen live."""

    def enter_field(self, node: FieldNode, _key, _parent, _path, ancestors):
        parent_type = self.context.get_parent_type()
        if parent_type is None or self.context.get_field_def() is not None:
            return None
        name = node.name.value
        self.report_error(GraphQLError(
            f"Field '{name}' doesn't exist on type '{parent_type.name}'", node,
            path=ruby_path(node, ancestors),
            extensions={"code": "undefinedField", "typeName": parent_type.name, "fieldName": name}))
        return graphql.SKIP


class ArgumentNotAcceptedRule(ValidationRule):
    """`Field 'orders' doesn't accept argument 'limit'` (code argumentNotAccepted; inferred from graphql-ruby,
    whose error also names the field and the kind of thing that refused it)."""

    def enter_argument(self, node, _key, _parent, _path, ancestors):
        owner = ancestors[-1] if ancestors else None
        if isinstance(owner, FieldNode):
            field_def = self.context.get_field_def()
            if field_def is None or self.context.get_argument() is not None:
                return None
            kind, name = "Field", owner.name.value
        elif isinstance(owner, graphql.DirectiveNode):
            directive = self.context.get_directive()
            if directive is None or node.name.value in directive.args:
                return None
            kind, name = "Directive", owner.name.value
        else:
            return None
        argument = node.name.value
        self.report_error(GraphQLError(
            f"{kind} '{name}' doesn't accept argument '{argument}'", node,
            path=[*ruby_path(owner, ancestors[:-1]), argument],
            extensions={"code": "argumentNotAccepted", "name": name, "typeName": kind, "argumentName": argument}))
        return graphql.SKIP


RULES = tuple(
    {FieldsOnCorrectTypeRule: UndefinedFieldRule, KnownArgumentNamesRule: ArgumentNotAcceptedRule}.get(rule, rule)
    for rule in specified_rules
)


@lru_cache(maxsize=256)
def checked_document(query: str) -> tuple[DocumentNode | None, tuple[dict, ...]]:
    """Parse and validate once per distinct document (clients page with the same text over and over).
    Returns the document, or None with the errors rendered as Shopify sends them."""
    try:
        document = graphql.parse(query)
    except GraphQLError as exc:
        return None, (_render(exc),)
    errors = graphql.validate(admin_schema(), document, RULES)
    if errors:
        return None, tuple(_render(e) for e in errors)
    return document, ()


def _render(error: GraphQLError) -> dict:
    """Each error has `locations`; only the graphql-ruby errors carry `path` and `extensions` (§8)."""
    out: dict = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = list(error.path)
    if error.extensions:
        out["extensions"] = dict(error.extensions)
    return out
