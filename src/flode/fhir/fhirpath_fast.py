"""The fast path: the simple FHIRPath forms most search parameters use, compiled to closures.

Each expression is compiled against the element model, so the type of every step is known
before any resource is seen. A choice element is expanded into its JSON properties at compile
time (`Observation.value` is `valueQuantity`, `valueString`, ...) and a type filter
(`ofType(Quantity)`, `as Quantity`, `.as(Quantity)`) keeps the variants of that type, so
`Observation.value.ofType(Quantity)` evaluates as one dictionary look-up of `valueQuantity`.

Supported (https://hl7.org/fhirpath/N1/): member paths, also through arrays; `|` unions;
parentheses; `ofType(T)`, `as(T)`, `as T`; `exists()`; `first()` and `[n]`;
`where(resolve() is T)` on references; `where(a.b = 'literal')` over single-valued elements;
`extension('url')`; a path `=` or `!=` a boolean literal, or a string literal when the path
yields strings; `and` between booleans. Anything else raises `NotFast` and is left to
fhirpathpy.

Unions are not de-duplicated: every caller indexes values, and duplicates index alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flode.fhir.definitions import Definitions, Node, Property

Nodes = list[tuple[str, Any]]
Evaluator = Callable[[Any], Nodes]
Values = Callable[[Any], list[Any]]

# FHIR's type hierarchy below the base types, as far as search expressions filter on it
# (https://hl7.org/fhir/R4/datatypes.html): specialised quantities and derived primitives.
SUPERTYPES: Mapping[str, str] = {
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
    "canonical": "uri",
    "oid": "uri",
    "url": "uri",
    "uuid": "uri",
    "code": "string",
    "id": "string",
    "markdown": "string",
    "positiveInt": "integer",
    "unsignedInt": "integer",
}

# Primitives whose JSON string compares with a string literal as it is written (dates and times
# compare as points in time, which the fast path does not model).
STRINGS = frozenset({"string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid"})

# A literal reference `[base/]Type/id[/_history/vid]`, https://hl7.org/fhir/R4/references.html
_REFERENCE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*|`[A-Za-z_][A-Za-z0-9_]*`)"
    r"|(?P<symbol>!=|[.()|\[\]=]))"
)


class NotFast(Exception):
    """The expression uses a form the fast path does not compile."""


def reference_type(reference: object) -> str | None:
    """The resource type a literal reference points to; None for `#id`, URNs and the like."""
    if not isinstance(reference, str):
        return None
    match = _REFERENCE.search(reference)
    return match.group(1) if match else None


def is_subtype(type_name: str, of: str) -> bool:
    current: str | None = type_name
    while current is not None:
        if current == of:
            return True
        current = SUPERTYPES.get(current)
    return False


def compile_fast(
    definitions: Definitions, expression: str, context: str
) -> tuple[Evaluator, frozenset[str], frozenset[str] | None]:
    """Compile `expression` evaluated on a `context` value (a resource type or node name).

    Returns the evaluator, the types it can yield and the JSON properties of the context it
    starts from (it yields nothing for a value that has none of them; None when it may yield
    something regardless), all known from the element model alone.
    """
    parser = _Parser(definitions, _tokens(expression), context)
    alternatives = parser.expression()
    if parser.position != len(parser.tokens):
        raise NotFast(f"unexpected {parser.tokens[parser.position][1]!r}")
    roots: frozenset[str] | None = frozenset()
    for alternative in alternatives:
        roots = None if roots is None or alternative.roots is None else roots | alternative.roots
    return _evaluator(alternatives), frozenset(a.type for a in alternatives), roots


@dataclass(frozen=True, slots=True)
class _Alternative:
    """One statically typed way through the expression: `values(context)` all have `type`."""

    type: str
    values: Values
    # Known to yield exactly one item (a boolean from `exists()`, `=` or `and`), or none.
    single: bool = False
    # The properties of the context value it reads first: it yields nothing when the value has
    # none of them. None when unknown (the context itself, `exists()`, comparisons).
    roots: frozenset[str] | None = None


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.lastgroup is None:
            raise NotFast(f"cannot read {expression[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind).strip("`") if kind == "name" else match.group(kind)))
        position = match.end()
    return tokens


def _itself(value: Any) -> list[Any]:
    return [value]


class _Parser:
    """Recursive descent over the supported subset, compiling while it parses."""

    def __init__(self, definitions: Definitions, tokens: list[tuple[str, str]], context: str):
        self.definitions = definitions
        self.tokens = tokens
        self.position = 0
        self.context = context

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def accept(self, text: str) -> bool:
        if self.peek() == text:
            self.position += 1
            return True
        return False

    def expect(self, kind: str) -> str:
        if self.position >= len(self.tokens) or self.tokens[self.position][0] != kind:
            raise NotFast(f"expected a {kind}")
        self.position += 1
        return self.tokens[self.position - 1][1]

    def expression(self) -> list[_Alternative]:
        """`and` binds loosest of what the fast path knows (fhirpath.html#operator-precedence)."""
        alternatives = self.equality()
        while self.accept("and"):
            alternatives = _and(alternatives, self.equality())
        return alternatives

    def equality(self) -> list[_Alternative]:
        alternatives = self.union()
        for operator in ("=", "!="):
            if self.accept(operator):
                return [self.compare(alternatives, negate=operator == "!=")]
        return alternatives

    def compare(self, alternatives: list[_Alternative], *, negate: bool) -> _Alternative:
        literal: str | bool
        if self.accept("true") or self.accept("false"):
            literal = self.tokens[self.position - 1][1] == "true"
        else:
            literal = _literal(self.expect("string"))
            if any(a.type not in STRINGS for a in alternatives):
                raise NotFast("a string literal compared with values that are not strings")
        return _equality(alternatives, literal, negate=negate)

    def union(self) -> list[_Alternative]:
        alternatives = self.chain()
        while self.accept("|"):
            alternatives = alternatives + self.chain()
        return alternatives

    def chain(self) -> list[_Alternative]:
        alternatives = self.primary()
        while True:
            if self.accept("."):
                alternatives = self.invocation(alternatives)
            elif self.accept("["):
                index = int(self.expect("number"))
                if not self.accept("]"):
                    raise NotFast("expected ]")
                alternatives = _index(alternatives, index)
            elif self.accept("as"):
                alternatives = self.of_type(alternatives, self.expect("name"))
            else:
                return alternatives

    def primary(self) -> list[_Alternative]:
        if self.accept("("):
            alternatives = self.expression()
            if not self.accept(")"):
                raise NotFast("expected )")
            return alternatives
        name = self.expect("name")
        start = [_Alternative(self.context, _itself)]
        if name == self.context:
            return start
        return self.member(start, name)

    def invocation(self, alternatives: list[_Alternative]) -> list[_Alternative]:
        name = self.expect("name")
        if not self.accept("("):
            return self.member(alternatives, name)
        if name in ("ofType", "as"):
            result = self.of_type(alternatives, self.expect("name"))
        elif name == "exists":
            result = _exists(alternatives)
        elif name == "first":
            result = _index(alternatives, 0)
        elif name == "where":
            result = self.where(alternatives)
        elif name == "extension":
            url = _literal(self.expect("string"))
            result = [_filter(a, _equals(("url",), url)) for a in self.member(alternatives, name)]
        else:
            raise NotFast(f"function {name}()")
        if not self.accept(")"):
            raise NotFast("expected )")
        return result

    def member(self, alternatives: list[_Alternative], name: str) -> list[_Alternative]:
        result: list[_Alternative] = []
        for alternative in alternatives:
            first = alternative.values is _itself
            for prop in _properties(self.node(alternative.type), name):
                result.append(
                    _Alternative(
                        node_type(self.definitions, prop),
                        _step(alternative.values, prop.name),
                        roots=frozenset({prop.name}) if first else alternative.roots,
                    )
                )
        if not result:
            raise NotFast(f"no element {name} in {[a.type for a in alternatives]}")
        return result

    def node(self, type_name: str) -> Node:
        node = self.definitions.nodes.get(type_name)
        if node is None:
            raise NotFast(f"no element model for {type_name}")
        return node

    def of_type(self, alternatives: list[_Alternative], type_name: str) -> list[_Alternative]:
        known = self.definitions.nodes.keys() | self.definitions.primitives.keys()
        if any(alternative.type not in known for alternative in alternatives):
            raise NotFast("type filter on a value of unknown type")
        return [a for a in alternatives if is_subtype(a.type, type_name)]

    def where(self, alternatives: list[_Alternative]) -> list[_Alternative]:
        if self.accept("resolve"):
            if not (self.accept("(") and self.accept(")") and self.accept("is")):
                raise NotFast("expected resolve() is Type")
            target = self.expect("name")
            if any(a.type != "Reference" for a in alternatives):
                raise NotFast("resolve() on a non-Reference")
            return [_filter(a, _resolves_to(target)) for a in alternatives]
        path = [self.expect("name")]
        while self.accept("."):
            path.append(self.expect("name"))
        if not self.accept("="):
            raise NotFast("expected =")
        literal = _literal(self.expect("string"))
        result = []
        for alternative in alternatives:
            type_name = alternative.type
            for name in path:
                prop = self.node(type_name).properties.get(name)
                if prop is None or prop.element.is_array or prop.element.is_choice:
                    # FHIRPath `=` compares whole collections; only singletons are simple.
                    raise NotFast(f"where() over {name}")
                type_name = node_type(self.definitions, prop)
            result.append(_filter(alternative, _equals(tuple(path), literal)))
        return result


def node_type(definitions: Definitions, prop: Property) -> str:
    """A value's type name: a backbone node's path, else the datatype (constraints lifted)."""
    if prop.element.node is not None:
        return prop.element.node
    return definitions.constraints.get(prop.type, prop.type)


def _properties(node: Node, name: str) -> list[Property]:
    prop = node.properties.get(name)
    if prop is not None and prop.element.name == name:
        return [prop]
    choice = name + "[x]"
    return [p for p in node.properties.values() if p.element.name == choice]


def _literal(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _step(previous: Values, key: str) -> Values:
    if previous is _itself:

        def first(value: Any) -> list[Any]:
            found = value.get(key) if isinstance(value, dict) else None
            if found is None:
                return []
            if isinstance(found, list):
                return [item for item in found if item is not None]
            return [found]

        return first

    def step(value: Any) -> list[Any]:
        result: list[Any] = []
        for item in previous(value):
            found = item.get(key) if isinstance(item, dict) else None
            if found is None:
                continue
            if isinstance(found, list):
                result.extend(entry for entry in found if entry is not None)
            else:
                result.append(found)
        return result

    return step


def _filter(alternative: _Alternative, keep: Callable[[Any], bool]) -> _Alternative:
    previous = alternative.values

    def values(value: Any) -> list[Any]:
        return [item for item in previous(value) if keep(item)]

    return _Alternative(alternative.type, values, roots=alternative.roots)


def _equals(path: tuple[str, ...], literal: str) -> Callable[[Any], bool]:
    def keep(item: Any) -> bool:
        for key in path:
            item = item.get(key) if isinstance(item, dict) else None
        return bool(item == literal)

    return keep


def _resolves_to(target: str) -> Callable[[Any], bool]:
    def keep(item: Any) -> bool:
        return isinstance(item, dict) and reference_type(item.get("reference")) == target

    return keep


def _index(alternatives: list[_Alternative], index: int) -> list[_Alternative]:
    if len(alternatives) != 1:
        raise NotFast("index over values of several types")
    previous = alternatives[0].values

    def values(value: Any) -> list[Any]:
        return previous(value)[index : index + 1]

    return [_Alternative(alternatives[0].type, values, roots=alternatives[0].roots)]


def _exists(alternatives: list[_Alternative]) -> list[_Alternative]:
    all_values = tuple(alternative.values for alternative in alternatives)

    def values(value: Any) -> list[Any]:
        return [any(bool(each(value)) for each in all_values)]

    return [_Alternative("boolean", values, single=True)]


def _equality(
    alternatives: list[_Alternative], literal: str | bool, *, negate: bool
) -> _Alternative:
    """`path = literal` (or `!=`) by FHIRPath's rules (fhirpath.html#equality): empty when the
    path yields nothing; unequal when it yields several items or one of another type."""
    all_values = tuple(alternative.values for alternative in alternatives)
    kind = bool if isinstance(literal, bool) else str

    def values(value: Any) -> list[Any]:
        found = [item for each in all_values for item in each(value)]
        if not found:
            return []
        equal = len(found) == 1 and type(found[0]) is kind and found[0] == literal
        return [equal != negate]

    return _Alternative("boolean", values, single=True)


def _and(left: list[_Alternative], right: list[_Alternative]) -> list[_Alternative]:
    """Three-valued `and` (fhirpath.html#boolean-logic): false if either side is false, true if
    both are true, else empty."""
    if not all(len(side) == 1 and side[0].single for side in (left, right)):
        raise NotFast("`and` over values that are not single booleans")
    first, second = left[0].values, right[0].values

    def values(value: Any) -> list[Any]:
        a = _boolean(first(value))
        if a is False:
            return [False]
        b = _boolean(second(value))
        if b is False:
            return [False]
        return [True] if a is True and b is True else []

    return [_Alternative("boolean", values, single=True)]


def _boolean(found: list[Any]) -> bool | None:
    """A singleton boolean as FHIRPath reads one; None for empty (or anything else)."""
    return found[0] if len(found) == 1 and isinstance(found[0], bool) else None


def _evaluator(alternatives: list[_Alternative]) -> Evaluator:
    if any(alternative.type == "Resource" for alternative in alternatives):
        # A contained or bundled resource: its own resourceType names its type.
        return _resource_evaluator(alternatives)
    if len(alternatives) == 1:
        type_name, values = alternatives[0].type, alternatives[0].values

        def single(value: Any) -> Nodes:
            return [(type_name, item) for item in values(value)]

        return single
    typed = tuple((alternative.type, alternative.values) for alternative in alternatives)

    def union(value: Any) -> Nodes:
        return [(type_name, item) for type_name, values in typed for item in values(value)]

    return union


def _resource_evaluator(alternatives: list[_Alternative]) -> Evaluator:
    typed = tuple((alternative.type, alternative.values) for alternative in alternatives)

    def resources(value: Any) -> Nodes:
        return [
            (_resource_type(item) if type_name == "Resource" else type_name, item)
            for type_name, values in typed
            for item in values(value)
        ]

    return resources


def _resource_type(value: Any) -> str:
    found = value.get("resourceType") if isinstance(value, dict) else None
    return found if isinstance(found, str) else "Resource"
