"""Query cost and the leaky bucket (shopify.md §7).

Cost rule (Shopify's table, gaps inferred): scalars and enums 0; an object 1 + its selection; a
connection 2 + n × (1 + node selection) with n = `first`/`last`; a list with `first` n × (1 +
selection), without one as a single object; a mutation 10. The actual cost walks the same document
over the data returned: n is the number of items, and a null object costs 1.
"""

from __future__ import annotations

import math
import time
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

MUTATION_COST = 10
_NOT_RUN = object()  # "no data": the walk computes the requested cost


class QueryCost:
    """Requested and actual cost of one operation of a validated document."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode,
                 variables: dict[str, Any]):
        self.schema, self.operation, self.variables = schema, operation, variables
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def requested(self) -> int:
        return self._root(_NOT_RUN)

    def actual(self, data: dict | None) -> int:
        return self._root(data if data is not None else {})

    def _root(self, data) -> int:
        if self.operation.operation != OperationType.QUERY:
            return MUTATION_COST
        root = self.schema.query_type
        fields = collect_fields(self.schema, self.fragments, self.variables, root, self.operation.selection_set)
        return sum(self._field(root, nodes, _pick(data, key)) for key, nodes in fields.items())

    # ---- one field ----
    def _field(self, parent: GraphQLObjectType, nodes: list[FieldNode], value) -> int:
        name = nodes[0].name.value
        field_def = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}.get(name) or parent.fields.get(name)
        if field_def is None or is_leaf_type(get_named_type(field_def.type)):
            return 0
        named = get_named_type(field_def.type)
        try:
            args = get_argument_values(field_def, nodes[0], self.variables)
        except GraphQLError:
            args = {}
        if value is None:
            return 1  # a null object (or list) costs 1
        if _is_connection(named):
            return self._connection(named, nodes, args, value)
        if is_list_type(get_nullable_type(field_def.type)):
            if args.get("first") is not None:
                if value is _NOT_RUN:
                    return args["first"] * (1 + self._selection(named, nodes, _NOT_RUN))
                return sum(1 + self._selection(named, nodes, item) for item in value or [])
            if value is _NOT_RUN:
                return 1 + self._selection(named, nodes, _NOT_RUN)
            return 1 + max((self._selection(named, nodes, item) for item in value or []), default=0)
        return 1 + self._selection(named, nodes, value)

    def _connection(self, connection: GraphQLObjectType, nodes: list[FieldNode], args: dict, value) -> int:
        """2 + n × (1 + node selection), node selection read through both `nodes` and `edges { node }`."""
        per_node, items = 0, 0
        for key, sub_nodes in collect_sub_fields(self.schema, self.fragments, self.variables, connection,
                                                 nodes).items():
            field_name = sub_nodes[0].name.value
            sub_value = _pick(value, key)
            if field_name == "nodes":
                node_type = get_named_type(connection.fields["nodes"].type)
                per_node, items = self._items(node_type, sub_nodes, sub_value, per_node, items, None)
            elif field_name == "edges":
                edge_type = get_named_type(connection.fields["edges"].type)
                for edge_key, edge_nodes in collect_sub_fields(self.schema, self.fragments, self.variables,
                                                               edge_type, sub_nodes).items():
                    if edge_nodes[0].name.value == "node":
                        node_type = get_named_type(edge_type.fields["node"].type)
                        per_node, items = self._items(node_type, edge_nodes, sub_value, per_node, items, edge_key)
        if value is _NOT_RUN:
            n = args.get("first") if args.get("first") is not None else args.get("last") or 0
            return 2 + n * (1 + per_node)
        return 2 + items + per_node

    def _items(self, node_type, nodes, value, per_node: int, items: int, edge_key: str | None) -> tuple[int, int]:
        if value is _NOT_RUN:
            return per_node + self._selection(node_type, nodes, _NOT_RUN), items
        values = [(_pick(v, edge_key) if edge_key else v) for v in value or []]
        return per_node + sum(self._selection(node_type, nodes, v) for v in values if v is not None), \
            max(items, len(values))

    def _selection(self, parent, nodes: list[FieldNode], value) -> int:
        """The selection's cost; on an interface or union, the costliest of the types it names."""
        if not any(node.selection_set for node in nodes):
            return 0
        best = 0
        for runtime in self._runtime_types(parent, nodes):
            fields = collect_sub_fields(self.schema, self.fragments, self.variables, runtime, nodes)
            best = max(best, sum(self._field(runtime, sub, _pick(value, key)) for key, sub in fields.items()))
        return best

    def _runtime_types(self, parent, nodes: list[FieldNode]) -> list[GraphQLObjectType]:
        if not is_abstract_type(parent):
            return [parent]
        possible = self.schema.get_possible_types(parent)
        named = set()
        for node in nodes:
            named |= self._conditions(node.selection_set, set())
        chosen = [t for t in possible if t.name in named]
        return chosen or possible[:1]

    def _conditions(self, selection_set: SelectionSetNode | None, seen: set[str]) -> set[str]:
        names: set[str] = set()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, InlineFragmentNode):
                if selection.type_condition:
                    names.add(selection.type_condition.name.value)
                names |= self._conditions(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                fragment = self.fragments.get(selection.name.value)
                if fragment:
                    names.add(fragment.type_condition.name.value)
                    names |= self._conditions(fragment.selection_set, seen)
        return names


def _is_connection(named) -> bool:
    return isinstance(named, GraphQLObjectType) and named.name.endswith("Connection") and "pageInfo" in named.fields


def _pick(value, key: str):
    if value is _NOT_RUN:
        return _NOT_RUN
    return value.get(key) if isinstance(value, dict) else None


class CostBucket:
    """One leaky bucket per token: refill, refuse above the single-query max or above what is
    available (nothing charged), else charge the requested cost and refund requested − actual."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.size = self.rate = 0.0
        self.available = 0.0
        self.at: float | None = None
        self.counts = {"executed": 0, "throttled": 0, "max_cost_exceeded": 0}

    def refill(self, size: float, rate: float) -> None:
        now = self.clock()
        if self.at is None or (size, rate) != (self.size, self.rate):
            self.available = size  # a new bucket (or a new plan) starts full
        else:
            self.available = min(size, self.available + rate * (now - self.at))
        self.size, self.rate, self.at = size, rate, now

    def take(self, requested: int, max_cost: int) -> str:
        """"ok" (charged), "max_cost_exceeded" or "throttled"; call `refill` first."""
        if requested > max_cost:
            self.counts["max_cost_exceeded"] += 1
            return "max_cost_exceeded"
        if requested > self.available:
            self.counts["throttled"] += 1
            return "throttled"
        self.available -= requested
        self.counts["executed"] += 1
        return "ok"

    def refund(self, amount: float) -> None:
        self.available = min(self.size, self.available + max(0.0, amount))

    def retry_after_s(self, requested: int) -> int:
        return max(1, math.ceil((requested - self.available) / self.rate))

    def status(self) -> dict:
        return {"maximumAvailable": float(self.size), "currentlyAvailable": int(self.available),
                "restoreRate": float(self.rate)}
