"""The slow path: fhirpathpy, for expressions the fast path does not compile.

fhirpathpy has no `resolve()` (it cannot read other resources); search expressions only ask
what type a reference points to (`where(resolve() is Patient)`), so `resolve()` here yields a
stand-in resource of the type the literal reference names, the same rule the fast path uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, ParseTreeWalker
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import FP_DateTime, FP_Quantity, FP_Time, FP_Type, ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from flode.fhir.definitions import Definitions
from flode.fhir.fhirpath_fast import Evaluator, Nodes, reference_type

_MODEL: dict[str, Any] = models["r4"]
_PATH_TYPES: Mapping[str, str] = _MODEL["path2Type"]
# Untyped fhirpathpy constructors, with their signatures.
_node_of: Callable[[Any, str | None], Any] = ResourceNode.create_node
_listener: Callable[[], Any] = ASTPathListener


class Unsupported(Exception):
    """fhirpathpy cannot evaluate the expression either."""


class _RaiseOnError(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, *args: Any) -> None:
        raise Unsupported(f"syntax error: {args[-1]}")


def _parse(expression: str) -> Any:
    """fhirpathpy's `parse`, but failing on syntax errors instead of skipping them."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaiseOnError())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_RaiseOnError())
    listener: Any = _listener()
    ParseTreeWalker().walk(listener, parser.expression())
    if parser.getCurrentToken().type != FHIRPathParser.EOF:
        raise Unsupported(f"unexpected text at {parser.getCurrentToken().text!r}")
    return listener.parentStack[0]


def _resolve(references: list[Any]) -> list[Any]:
    resolved = []
    for reference in references:
        if isinstance(reference, Mapping):
            target = reference_type(reference.get("reference"))
            if target is not None:
                resolved.append(_node_of({"resourceType": target}, None))
    return resolved


_OPTIONS: Mapping[str, Any] = {
    "userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}},
    "returnRawData": True,
}
_FUNCTIONS = frozenset(invocation_registry) | {"resolve"}


def compile_fallback(definitions: Definitions, expression: str, context: str) -> Evaluator:
    """Compile with fhirpathpy; raise `Unsupported` when it cannot parse or lacks a function."""
    parsed = _parse(expression)
    missing = sorted(set(_function_names(parsed)) - _FUNCTIONS)
    if missing:
        raise Unsupported(f"fhirpathpy lacks {', '.join(missing)}()")
    is_resource = context in definitions.resource_types
    if "%resource" in expression and not is_resource:
        # A composite's component is evaluated on one element, without the resource around it.
        raise Unsupported("%resource in an expression evaluated on an element")
    compiled: Callable[..., list[Any]] = fhirpathpy.compile(expression, _MODEL, dict(_OPTIONS))

    def evaluate(value: Any) -> Nodes:
        root = value if is_resource else _node_of(value, context)
        return [node for item in compiled(root, {}) if (node := _node(definitions, item))]

    return evaluate


def _function_names(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        if tree.get("type") == "Functn":
            identifier = tree["children"][0]
            yield identifier["terminalNodeText"][0]
        for child in tree.get("children", ()):
            yield from _function_names(child)


def _node(definitions: Definitions, item: Any) -> tuple[str, Any] | None:
    if isinstance(item, ResourceNode):
        data = item.data
        if data is None:
            return None
        return _type_of(definitions, item.path, data), data
    if isinstance(item, bool):
        return "boolean", item
    if isinstance(item, int):
        return "integer", item
    if isinstance(item, float | Decimal):
        return "decimal", item
    if isinstance(item, str):
        return "string", item
    if isinstance(item, FP_DateTime | FP_Time):
        return ("time" if isinstance(item, FP_Time) else "dateTime"), str(item)
    if isinstance(item, FP_Quantity):
        return "Quantity", {"value": item.value, "unit": item.unit}
    if isinstance(item, FP_Type):
        return "string", str(item)
    return None


def _type_of(definitions: Definitions, path: str | None, data: Any) -> str:
    """The type of a value fhirpathpy found: from its path in the model, else its JSON shape."""
    if path is not None:
        if path in definitions.nodes or path in definitions.primitives:
            return definitions.constraints.get(path, path)
        mapped = _PATH_TYPES.get(path, "")
        if mapped in definitions.nodes or mapped in definitions.primitives:
            return definitions.constraints.get(mapped, mapped)
        try:
            element = definitions.element(path)
        except KeyError:
            pass
        else:
            if element.node is not None:
                return element.node
            if len(element.types) == 1:
                return definitions.constraints.get(element.types[0], element.types[0])
    if isinstance(data, Mapping) and isinstance(data.get("resourceType"), str):
        return str(data["resourceType"])
    if isinstance(data, bool):
        return "boolean"
    if isinstance(data, int):
        return "integer"
    if isinstance(data, float):
        return "decimal"
    if isinstance(data, str):
        return "string"
    return "Element"
