"""An independent reading of FHIR R4 search (https://hl7.org/fhir/R4/search.html) over plain
JSON: which of a set of resources a query selects.

Written from the specification's rules for each parameter type and shares nothing with Flöde,
so that a disagreement between the two is a question for the specification. The parameters it
knows are in `parameters.py`, how values match in `matching.py`. Where the specification leaves
room (`ap`), a query's answer is a range: `must` (every such resource has to be found) ⊆ `may`
(nothing else may be).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .matching import (
    Unsupported,
    date_range,
    date_ranges,
    micros,
    quantity_compare,
    range_compare,
    reference_matches,
    reference_parts,
    select,
    split_escaped,
    split_prefix,
    string_matches,
    strings,
    token_matches,
    tokens,
)
from .parameters import PARAMETERS, Param

Resource = dict[str, Any]

RESULT_PARAMETERS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_type"}
)


@dataclass(frozen=True)
class Expected:
    must: frozenset[str]
    may: frozenset[str]


class Evaluator:
    def __init__(self, resources: Iterable[Resource], now: datetime | None = None) -> None:
        self.resources = list(resources)
        self.by_key = {(r["resourceType"], r["id"]): r for r in self.resources}
        self.now = micros(now or datetime.now(UTC))

    def lookup(self, kind: str, id: str) -> Resource | None:
        return self.by_key.get((kind, id))

    def search(self, resource_type: str, query: list[tuple[str, str]]) -> Expected:
        """Every resource of the type that meets every criterion (repeats are ANDed)."""
        must: set[str] = set()
        may: set[str] = set()
        for resource in self.resources:
            if resource["resourceType"] != resource_type:
                continue
            verdicts = [
                self.matches(resource, name, value)
                for name, value in query
                if name.partition(":")[0] not in RESULT_PARAMETERS
            ]
            if all(m for m, _ in verdicts):
                must.add(resource["id"])
            if all(m for _, m in verdicts):
                may.add(resource["id"])
        return Expected(frozenset(must), frozenset(may))

    def matches(self, resource: Resource, name: str, raw: str) -> tuple[bool, bool]:
        """(must, may) for one criterion; comma-separated values are ORed."""
        if name.startswith("_has:"):
            return self._has(resource, name, raw)
        head, dot, rest = name.partition(".")
        if dot:
            return self._chain(resource, head, rest, raw)
        code, _, modifier = name.partition(":")
        return self._plain(resource, code, modifier or None, raw)

    def _param(self, resource_type: str, code: str) -> Param:
        param = PARAMETERS.get((resource_type, code))
        if param is None:
            raise Unsupported(f"{resource_type}?{code}")
        return param

    def _plain(
        self, resource: Resource, code: str, modifier: str | None, raw: str
    ) -> tuple[bool, bool]:
        if code == "_id":
            found = resource["id"] in raw.split(",")
            return found, found
        param = self._param(resource["resourceType"], code)
        values = self.values(resource, param)
        if modifier == "missing":
            missing = not values
            wanted = raw == "true"
            return missing == wanted, missing == wanted
        if modifier == "not":
            found = any(
                token_matches(t, None, q)
                for q in split_escaped(raw, ",")
                for v in values
                for t in tokens(v)
            )
            return not found, not found
        must = may = False
        for query in split_escaped(raw, ","):
            for value in values:
                one_must, one_may = self._value_matches(param, value, modifier, query)
                must, may = must or one_must, may or one_may
        return must, may

    def values(self, resource: Resource, param: Param) -> list[Any]:
        found = [value for _, value in select(resource, param.path)]
        if param.type == "reference" and param.targets:
            found = [v for v in found if (p := reference_parts(v)) and p[0] in param.targets]
        return found

    def _value_matches(
        self, param: Param, value: Any, modifier: str | None, query: str
    ) -> tuple[bool, bool]:
        if param.type == "string":
            found = any(string_matches(s, modifier, query) for s in strings(value))
            return found, found
        if param.type == "token":
            found = any(token_matches(t, modifier, query) for t in tokens(value))
            return found, found
        if param.type == "date":
            if modifier is not None:
                raise Unsupported(f"date modifier {modifier}")
            prefix, text = split_prefix(query)
            search = date_range(text)
            now_gap = abs(self.now - search[0]) / 10
            verdicts = [range_compare(prefix, r, search, now_gap) for r in date_ranges(None, value)]
            return any(m for m, _ in verdicts), any(m for _, m in verdicts)
        if param.type == "quantity":
            return quantity_compare(value, query)
        if param.type == "reference":
            parts = reference_parts(value)
            found = parts is not None and reference_matches(parts, param, modifier, query)
            return found, found
        if param.type == "composite":
            return self._composite(param, value, query)
        raise Unsupported(param.type)

    def _composite(self, param: Param, element: Any, query: str) -> tuple[bool, bool]:
        """search.html#composite: every component matches within the same element."""
        parts = split_escaped(query, "$")
        must = may = True
        for (kind, path), part in zip(param.components, parts, strict=True):
            component = Param(kind, path)
            verdicts = [
                self._value_matches(component, v, None, part) for _, v in select(element, path)
            ]
            must = must and any(m for m, _ in verdicts)
            may = may and any(m for _, m in verdicts)
        return must, may

    def _chain(self, resource: Resource, link: str, rest: str, raw: str) -> tuple[bool, bool]:
        """search.html#chaining: a referenced resource matches the rest of the chain."""
        code, _, only = link.partition(":")
        param = self._param(resource["resourceType"], code)
        if param.type != "reference":
            raise Unsupported(f"chain through {code}")
        must = may = False
        for value in self.values(resource, param):
            parts = reference_parts(value)
            if parts is None or (only and parts[0] != only):
                continue
            target = self.lookup(*parts)
            following = rest.split(".")[0].split(":")[0]
            if target is None or (
                following != "_id" and (target["resourceType"], following) not in PARAMETERS
            ):
                continue  # the chain cannot continue through this target (search.html#chaining)
            one_must, one_may = self.matches(target, rest, raw)
            must, may = must or one_must, may or one_may
        return must, may

    def _has(self, resource: Resource, name: str, raw: str) -> tuple[bool, bool]:
        """search.html#has: `_has:Type:reference:criterion` — some resource of Type refers to
        this one through `reference` and meets the criterion."""
        _, kind, reference, inner = name.split(":", 3)
        param = self._param(kind, reference)
        must = may = False
        for other in self.resources:
            if other["resourceType"] != kind:
                continue
            refers = any(
                reference_parts(v) == (resource["resourceType"], resource["id"])
                for v in self.values(other, param)
            )
            if refers:
                one_must, one_may = self.matches(other, inner, raw)
                must, may = must or one_must, may or one_may
        return must, may
