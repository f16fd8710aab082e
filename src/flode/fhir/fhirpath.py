"""FHIRPath for search parameters: each expression compiled once into `(value) -> [Node]`.

A `Node` is `(type, value)`: the FHIR type name of a found element ("CodeableConcept",
"Reference", "date", "HumanName", ...; a backbone element is named by its node path, e.g.
"Observation.component") and its JSON value as parsed. Primitives are their JSON value alone
(a `_birthDate` extension sibling is ignored); decimals stay `flode.fhir.json.Decimal`.

Most search expressions are simple paths that `fhirpath_fast` compiles to closures over the
element model; the rest go to fhirpathpy (`fhirpath_fallback`), about a hundred times slower.
https://hl7.org/fhir/R4/fhirpath.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from flode.fhir.definitions import Definitions
from flode.fhir.fhirpath_fallback import Unsupported, compile_fallback
from flode.fhir.fhirpath_fast import NotFast, compile_fast, reference_type

__all__ = [
    "CompiledExpression",
    "Evaluator",
    "Node",
    "Unsupported",
    "compile_expression",
    "compile_fhirpathpy",
    "reference_type",
]

Node = tuple[str, Any]
Evaluator = Callable[[Any], list[Node]]
Path = Literal["fast", "fhirpathpy"]


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """An expression ready to evaluate; `types` and `roots` are known statically on the fast
    path only."""

    expression: str
    context: str
    path: Path
    evaluate: Evaluator
    types: frozenset[str] | None
    roots: frozenset[str] | None = None
    """The JSON properties of the context the expression starts from: on a value that has none
    of them it yields nothing. None when that is not known."""


def compile_expression(
    definitions: Definitions, expression: str, context: str
) -> CompiledExpression:
    """Compile `expression` for values of type `context` (a resource type or node name).

    Raises `Unsupported` when neither the fast path nor fhirpathpy can evaluate it.
    """
    try:
        evaluate, types, roots = compile_fast(definitions, expression, context)
    except NotFast:
        pass
    else:
        return CompiledExpression(expression, context, "fast", evaluate, types, roots)
    evaluate = compile_fallback(definitions, expression, context)
    return CompiledExpression(expression, context, "fhirpathpy", evaluate, None)


def compile_fhirpathpy(
    definitions: Definitions, expression: str, context: str
) -> CompiledExpression:
    """Compile with fhirpathpy even where the fast path applies (to check one against the other)."""
    evaluate = compile_fallback(definitions, expression, context)
    return CompiledExpression(expression, context, "fhirpathpy", evaluate, None)
