"""A search request's parameters, parsed (https://hl7.org/fhir/R4/search.html).

Pure syntax: which parameter, modifier, chain and reverse chain a query names, and what result
parameters it asks for. Whether a parameter exists for a type, and what its values mean, is
decided when the query is compiled against the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flode.fhir.errors import bad_request

SUMMARY = ("true", "text", "data", "count", "false")
TOTAL = ("none", "estimate", "accurate")
# Result parameters (search.html#return), the types of a system search (`_type`) and the
# paging parameters Flöde's links carry: none of them is a criterion.
RESULT = frozenset(
    {
        "_type",
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_contained",
        "_containedType",
        "_offset",
        "_snapshot",
        "_results",
        "_format",
        "_pretty",
    }
)


@dataclass(frozen=True, slots=True)
class Link:
    """One step of a chain: a reference parameter, optionally restricted to a target type
    (`subject:Patient`)."""

    param: str
    target_type: str | None = None


@dataclass(frozen=True, slots=True)
class Criterion:
    """`[chain.]name[:modifier]=value[,value…]`: the values are ORed; criteria are ANDed."""

    name: str
    modifier: str | None
    value: str
    chain: tuple[Link, ...] = ()


@dataclass(frozen=True, slots=True)
class Has:
    """`_has:Type:reference:…=value`: resources that a `Type` resource refers to through its
    `reference` parameter, where that resource matches `inner` (search.html#has)."""

    resource_type: str
    reference: str
    inner: Criterion | Has


@dataclass(frozen=True, slots=True)
class Include:
    """`_include=Source:param[:Target]` or `_revinclude=…`; `*` for every reference parameter
    (`Source:*`) or every source type and parameter (`*`)."""

    source_type: str
    param: str
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    criteria: tuple[Criterion | Has, ...] = ()
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    count: int | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    contained: str | None = None
    types: tuple[str, ...] = ()


def criterion_name(criterion: Criterion | Has) -> str:
    """The parameter name as the client wrote it: `subject:Patient.name:exact`, `_has:…`."""
    if isinstance(criterion, Has):
        return f"_has:{criterion.resource_type}:{criterion.reference}:" + criterion_name(
            criterion.inner
        )
    chain = "".join(
        f"{link.param}{':' + link.target_type if link.target_type else ''}."
        for link in criterion.chain
    )
    modifier = f":{criterion.modifier}" if criterion.modifier else ""
    return f"{chain}{criterion.name}{modifier}"


def _criterion(name: str, value: str) -> Criterion:
    parts = name.split(".")
    chain = []
    for part in parts[:-1]:
        param, _, target = part.partition(":")
        if not param:
            raise bad_request(f"Malformed chained parameter '{name}'", name)
        chain.append(Link(param, target or None))
    last, _, modifier = parts[-1].partition(":")
    if not last:
        raise bad_request(f"Malformed parameter name '{name}'", name)
    return Criterion(last, modifier or None, value, tuple(chain))


def _has(name: str, value: str) -> Has:
    # _has:Type:reference:rest  (rest is a parameter, a chain or another _has)
    _, resource_type, reference, *rest = [*name.split(":", 3), "", ""][:4]
    if not resource_type or not reference or not rest[0]:
        raise bad_request(
            f"Malformed '{name}': use _has:Type:reference:parameter=value", name.split("=")[0]
        )
    inner_name = rest[0]
    inner = (
        _has(inner_name, value) if inner_name.startswith("_has:") else _criterion(inner_name, value)
    )
    return Has(resource_type, reference, inner)


def _include(value: str, *, reverse: bool, iterate: bool, name: str) -> Include:
    if value == "*":
        return Include("*", "*", None, iterate, reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad_request(f"Malformed {name} '{value}': use Type:parameter[:TargetType]", name)
    return Include(parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate, reverse)


def _count(value: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise bad_request(f"_count must be a non-negative integer, not '{value}'", "_count")
    return int(value)


def parse(params: Sequence[tuple[str, str]]) -> SearchQuery:
    """Parse a query. Malformed *result* parameters raise 400; everything else is syntax only."""
    criteria: list[Criterion | Has] = []
    sort: list[SortKey] = []
    includes: list[Include] = []
    count = summary = total = contained = None
    elements: list[str] = []
    types: list[str] = []
    for name, value in params:
        base, _, modifier = name.partition(":")
        if base in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise bad_request(f"Unknown modifier '{name}'", name)
            includes.append(
                _include(value, reverse=base == "_revinclude", iterate=bool(modifier), name=base)
            )
        elif name == "_sort":
            for key in value.split(","):
                key = key.strip()
                if not key or key == "-":
                    raise bad_request(f"Malformed _sort '{value}'", "_sort")
                sort.append(SortKey(key.lstrip("-"), key.startswith("-")))
        elif name == "_count":
            count = _count(value)
        elif name == "_summary":
            if value not in SUMMARY:
                raise bad_request(f"_summary must be one of {', '.join(SUMMARY)}", "_summary")
            summary = value
        elif name == "_total":
            if value not in TOTAL:
                raise bad_request(f"_total must be one of {', '.join(TOTAL)}", "_total")
            total = value
        elif name == "_elements":
            elements += [e.strip() for e in value.split(",") if e.strip()]
        elif name == "_contained":
            if value not in ("true", "false", "both"):
                raise bad_request("_contained must be true, false or both", "_contained")
            contained = value
        elif name == "_type":
            types += [t.strip() for t in value.split(",") if t.strip()]
        elif name in RESULT:
            continue  # paging and format: handled by the caller
        elif name.startswith("_has:"):
            criteria.append(_has(name, value))
        else:
            criteria.append(_criterion(name, value))
    return SearchQuery(
        tuple(criteria),
        tuple(sort),
        tuple(includes),
        count,
        summary,
        tuple(elements),
        total,
        contained,
        tuple(dict.fromkeys(types)),
    )
