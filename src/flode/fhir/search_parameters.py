"""The search-parameter registry, built once from the official R4 SearchParameter definitions.

https://hl7.org/fhir/R4/searchparameter-registry.html lists 1 378 parameters; many serve
several resource types with one union expression (`AllergyIntolerance.code | Condition.code`).
The registry holds one `SearchParameter` per (resource type, code) whose expression keeps only
that type's branches, compiled once (see `flode.fhir.fhirpath`). Spec errata are patched in
`_fix_expression` alone; what cannot be evaluated is listed in `unsupported`, never dropped
silently. Membership of the Patient compartment comes from its CompartmentDefinition
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

from flode.fhir.definitions import Definitions
from flode.fhir.fhirpath import CompiledExpression, Node, Unsupported, compile_expression

__all__ = ["SearchParamType", "SearchParameter", "SearchParameters"]

SearchParamType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]

# https://hl7.org/fhir/R4/search.html#modifiers, by parameter type (`:[type]` for references
# is written "type"). SearchParameter.modifier, where given, takes precedence.
_MODIFIERS: Mapping[str, tuple[str, ...]] = {
    "string": ("missing", "exact", "contains"),
    "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
    "reference": ("missing", "type", "identifier", "above", "below"),
    "uri": ("missing", "above", "below"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "composite": (),
    "special": (),
}
# Official parameters without an expression (after `_fix_expression`) and why.
_NO_EXPRESSION: Mapping[str, str] = {
    "http://hl7.org/fhir/SearchParameter/Resource-content": (
        "_content searches the whole resource text; it needs a full-text index, not a path"
    ),
    "http://hl7.org/fhir/SearchParameter/Resource-query": (
        "_query names a custom query; it indexes no value"
    ),
}


@dataclass(frozen=True)
class SearchParameter:
    """One search parameter of one resource type."""

    code: str
    type: SearchParamType
    url: str
    base: str
    expression: str | None
    targets: tuple[str, ...] = ()
    # Composite parameters: (component parameter code, expression relative to the composite).
    components: tuple[tuple[str, str], ...] = ()
    modifiers: tuple[str, ...] = ()
    multiple_or: bool = True
    multiple_and: bool = True
    compiled: CompiledExpression | None = field(default=None, repr=False, compare=False)
    # (component code, type of the composite's value) -> compiled component expression.
    compiled_components: Mapping[tuple[str, str], CompiledExpression] = field(
        default_factory=dict, repr=False, compare=False
    )

    def evaluate(self, resource: Mapping[str, Any]) -> list[Node]:
        """The values this parameter indexes in `resource`; none when it is unsupported."""
        return self.compiled.evaluate(resource) if self.compiled is not None else []

    def evaluate_component(self, code: str, value: Node) -> list[Node]:
        """A composite's component `code` evaluated on one value `evaluate` returned."""
        compiled = self.compiled_components.get((code, value[0]))
        return compiled.evaluate(value[1]) if compiled is not None else []


class SearchParameters:
    """All search parameters by resource type and code; build once and pass it in."""

    def __init__(
        self,
        by_type: Mapping[str, Mapping[str, SearchParameter]],
        unsupported: list[tuple[str, str]],
        compartment: Mapping[str, tuple[str, ...]],
    ) -> None:
        self._by_type = by_type
        self._unsupported = unsupported
        self._compartment = compartment

    @staticmethod
    def load(definitions: Definitions) -> SearchParameters:
        """The registry for the bundled definitions (built once per process)."""
        if definitions is Definitions.load():
            return _bundled()
        return SearchParameters.build(definitions, _read("search-parameters.json.gz"))

    @staticmethod
    def build(definitions: Definitions, bundle: Mapping[str, Any]) -> SearchParameters:
        resources_ = [entry["resource"] for entry in bundle["entry"]]
        codes = {resource["url"]: resource["code"] for resource in resources_}
        by_type: dict[str, dict[str, SearchParameter]] = {}
        unsupported: dict[str, str] = {}
        for resource in resources_:
            for param, problem in _parameters(definitions, resource, codes):
                by_type.setdefault(param.base, {})[param.code] = param
                if problem is not None:
                    unsupported.setdefault(param.url, problem)
        compartment_definition = _read("compartmentdefinition-patient.json.gz")
        compartment = {
            entry["code"]: tuple(entry.get("param", ()))
            for entry in compartment_definition["resource"]
        }
        return SearchParameters(
            MappingProxyType({t: MappingProxyType(p) for t, p in sorted(by_type.items())}),
            sorted(unsupported.items()),
            MappingProxyType(compartment),
        )

    def for_type(self, resource_type: str) -> Mapping[str, SearchParameter]:
        return self._by_type.get(resource_type, MappingProxyType({}))

    def get(self, resource_type: str, code: str) -> SearchParameter | None:
        return self.for_type(resource_type).get(code)

    def __iter__(self) -> Iterator[SearchParameter]:
        for params in self._by_type.values():
            yield from params.values()

    @property
    def unsupported(self) -> list[tuple[str, str]]:
        """(url, reason) of every definition that cannot be evaluated (for some type)."""
        return list(self._unsupported)

    def compartment(self, resource_type: str) -> tuple[str, ...]:
        """The parameters whose Patient reference puts a `resource_type` into that compartment."""
        return self._compartment.get(resource_type, ())

    def with_custom(
        self, definitions: Definitions, custom: Sequence[Mapping[str, Any]]
    ) -> tuple[SearchParameters, list[tuple[str, str]]]:
        """This registry with custom SearchParameter resources added, and (url, reason) of those
        that cannot be used. A custom parameter takes its code on each of its base types; a
        usable one replaces a standard parameter of the same code there."""
        by_type = {t: dict(params) for t, params in self._by_type.items()}
        codes = {param.url: param.code for param in self}
        codes.update({r["url"]: r["code"] for r in custom if "url" in r and "code" in r})
        problems: dict[str, str] = {}
        for resource in custom:
            try:
                found = list(_parameters(definitions, resource, codes))
            except (KeyError, TypeError, ValueError) as exc:
                problems[str(resource.get("url"))] = f"not a usable SearchParameter ({exc})"
                continue
            for param, problem in found:
                if problem is not None:
                    problems.setdefault(param.url, problem)
                    continue
                by_type.setdefault(param.base, {})[param.code] = param
        registry = SearchParameters(
            MappingProxyType({t: MappingProxyType(p) for t, p in sorted(by_type.items())}),
            self._unsupported,
            self._compartment,
        )
        return registry, sorted(problems.items())


@cache
def _bundled() -> SearchParameters:
    return SearchParameters.build(Definitions.load(), _read("search-parameters.json.gz"))


@functools.cache
def patient_data_types() -> frozenset[str]:
    """The types whose resources can be in a Patient compartment: a Patient, the types its
    CompartmentDefinition lists with a parameter, and Provenance (Flöde's own Provenance names
    the patient of its target; flode.store.provenance)."""
    definition = _read("compartmentdefinition-patient.json.gz")
    listed = {e["code"] for e in definition["resource"] if e.get("param")}
    return frozenset({"Patient", "Provenance", *listed})


def _read(name: str) -> Any:
    source = resources.files("flode.fhir") / "definitions" / name
    return json.loads(gzip.decompress(source.read_bytes()))


def _fix_expression(url: str, expression: str | None) -> str | None:
    """The official expression with the R4 errata Flöde knows of patched."""
    if expression is None:
        if url == "http://hl7.org/fhir/SearchParameter/DomainResource-text":
            # _text has no expression in R4; it searches the narrative
            # (https://hl7.org/fhir/R4/search.html#text). `div` is a FHIRPath operator, so quoted.
            return "DomainResource.text.`div`"
        return None
    if (
        url == "http://hl7.org/fhir/SearchParameter/InsurancePlan-name"
        and expression == "name | alias"
    ):
        # The only R4 expression without its resource type: nothing would match the base.
        return "InsurancePlan.name | InsurancePlan.alias"
    # R4 writes `(X as T)` and `X.as(T)` on collections (`Observation.component.value as
    # Quantity`), where FHIRPath's `as` takes a single item and fails on more; R5 rewrote them
    # as `X.ofType(T)`, which is what they mean.
    expression = re.sub(r"\(([A-Za-z][\w.]*) as (\w+)\)", r"\1.ofType(\2)", expression)
    return re.sub(r"\.as\((\w+)\)", r".ofType(\1)", expression)


def _branches(expression: str) -> list[str]:
    """The top-level `|` branches of a union, outside parentheses and string literals."""
    branches, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == "|":
            branches.append(expression[start:i].strip())
            start = i + 1
    branches.append(expression[start:].strip())
    return branches


def _for_type(expression: str, base: str, resource_type: str) -> str | None:
    """The branches of `expression` that start at `base`, written for `resource_type`."""
    kept = []
    for branch in _branches(expression):
        match = re.match(r"\(*([A-Za-z]+)\b", branch)
        if match is not None and match.group(1) == base:
            kept.append(branch[: match.start(1)] + resource_type + branch[match.end(1) :])
    return " | ".join(kept) or None


def _resource_types(definitions: Definitions, base: str) -> list[str]:
    if base == "Resource":
        return sorted(definitions.resource_types)
    if base == "DomainResource":
        # Exactly the resources with narrative (all but Bundle, Binary, Parameters).
        return sorted(
            t for t in definitions.resource_types if "text" in definitions.nodes[t].properties
        )
    return [base]


def _parameters(
    definitions: Definitions, resource: Mapping[str, Any], codes: Mapping[str, str]
) -> Iterator[tuple[SearchParameter, str | None]]:
    url: str = resource["url"]
    kind: str = resource["type"]
    expression = _fix_expression(url, resource.get("expression"))
    components = tuple(
        (codes[component["definition"]], _fix_expression(url, component["expression"]) or "")
        for component in resource.get("component", ())
    )
    for base in resource["base"]:
        for resource_type in _resource_types(definitions, base):
            typed = None if expression is None else _for_type(expression, base, resource_type)
            compiled, compiled_components, problem = _compile(
                definitions, typed, resource_type, components
            )
            if expression is None:
                problem = _NO_EXPRESSION.get(url, f"{resource['code']} has no expression")
            param = SearchParameter(
                code=resource["code"],
                type=resource["type"],
                url=url,
                base=resource_type,
                expression=typed,
                targets=tuple(resource.get("target", ())),
                components=components,
                modifiers=tuple(resource.get("modifier", _MODIFIERS[kind])),
                multiple_or=resource.get("multipleOr", True),
                multiple_and=resource.get("multipleAnd", True),
                compiled=compiled,
                compiled_components=MappingProxyType(compiled_components),
            )
            yield param, problem


def _compile(
    definitions: Definitions,
    expression: str | None,
    resource_type: str,
    components: tuple[tuple[str, str], ...],
) -> tuple[CompiledExpression | None, dict[tuple[str, str], CompiledExpression], str | None]:
    if expression is None:
        return None, {}, f"no expression for {resource_type}"
    try:
        compiled = compile_expression(definitions, expression, resource_type)
    except Unsupported as exc:
        return None, {}, f"{resource_type}: {exc}"
    compiled_components: dict[tuple[str, str], CompiledExpression] = {}
    if components and compiled.types is None:
        return compiled, {}, f"{resource_type}: composite over values of unknown type"
    for code, component in components:
        for context in compiled.types or ():
            try:
                compiled_components[code, context] = compile_expression(
                    definitions, component, context
                )
            except Unsupported as exc:
                return compiled, compiled_components, f"{resource_type} component {code}: {exc}"
    return compiled, compiled_components, None
