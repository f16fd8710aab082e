"""Structural validation of FHIR R4 JSON resources against the base specification.

Checks what https://hl7.org/fhir/R4/json.html and the StructureDefinitions say about shape:
known resource types and elements, JSON types, arrays exactly where max is not 1, cardinality,
one variant per choice element, primitive formats, primitive extensions (`_birthDate`) and
nested resources (`contained`, `Bundle.entry.resource`, ...). Terminology bindings and
invariants are out of scope.

Every problem is reported as an error Issue whose expression is its location in FHIRPath,
written with the JSON property names (`Patient.name[0].given[1]`,
`Observation.valueQuantity.value`, `Bundle.entry[0].resource.status`). Issue codes:

- structure: unknown or misplaced element, wrong JSON shape (object, array, single value),
  empty object or array, misused `null`, an element that may not appear, two variants of one
  choice element;
- required: a mandatory element (or `resourceType`) is missing;
- value: a primitive value of the wrong JSON type or format;
- invalid: not a JSON object, or an unknown resource type or one not allowed where it appears.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flode.fhir.definitions import Definitions, Node
from flode.fhir.errors import Issue
from flode.fhir.primitives import Check, checker

# Slot kinds: what a JSON property holds.
PRIMITIVE, COMPLEX, RESOURCE, FORBIDDEN = 0, 1, 2, 3
# Deeper documents are reported instead of recursed into, so bad input cannot exhaust the stack.
MAX_DEPTH = 128
# The node of a primitive's `_name` sibling (json.html#primitive): an Element (id, extension).
PRIMITIVE_ELEMENT = "Element"

Required = tuple[tuple[str, tuple[str, ...]], ...]


class Slot(NamedTuple):
    """A compiled JSON property: one type of one element."""

    kind: int
    # PRIMITIVE: the value check; COMPLEX: the compiled node; RESOURCE: the required type or None.
    target: Any
    array: bool
    # The choice element this property is a variant of (`value[x]`), else None.
    choice: str | None
    # Whether a `_name` sibling may carry the primitive's id and extensions.
    extensible: bool


class CompiledNode(NamedTuple):
    name: str
    slots: dict[str, Slot]
    # (element name, the JSON properties that satisfy it) for each element with min >= 1.
    required: Required


class Validator:
    """Validates resources against one set of definitions. Immutable once built."""

    __slots__ = ("_element", "_nodes", "_resource_types")

    def __init__(self, definitions: Definitions) -> None:
        checks = {name: checker(p) for name, p in definitions.primitives.items()}
        # Slots refer to compiled nodes directly, so the nodes are created before their slots.
        nodes = {
            name: CompiledNode(name, {}, _required(node))
            for name, node in definitions.nodes.items()
        }
        for name, node in definitions.nodes.items():
            nodes[name].slots.update(_slots(node, definitions, checks, nodes))
        self._element = CompiledNode(
            PRIMITIVE_ELEMENT,
            {
                "id": Slot(PRIMITIVE, checks["string"], False, None, False),
                "extension": Slot(COMPLEX, nodes["Extension"], True, None, False),
            },
            (),
        )
        self._nodes: dict[str, CompiledNode] = nodes
        self._resource_types: frozenset[str] = definitions.resource_types

    def validate(self, resource: Any) -> list[Issue]:
        """Every structural problem of one resource, in document order."""
        issues: list[Issue] = []
        if type(resource) is not dict:
            issues.append(_issue("invalid", "A resource must be a JSON object", ()))
        else:
            self._resource(resource, "", None, issues, 0)
        return issues

    def _resource(
        self, value: Any, path: str, expected: str | None, issues: list[Issue], depth: int
    ) -> None:
        """A whole resource: at the root (path "") or nested where an element holds one."""
        if type(value) is not dict:
            issues.append(_issue("structure", "A resource must be a JSON object", (path,)))
            return
        resource_type = value.get("resourceType")
        type_path = f"{path}.resourceType" if path else "resourceType"
        if resource_type is None:
            issues.append(_issue("required", "The resourceType is missing", (type_path,)))
        elif type(resource_type) is not str or resource_type not in self._resource_types:
            message = f"Unknown resource type {resource_type!r}"
            issues.append(_issue("invalid", message, (type_path,)))
        elif expected is not None and resource_type != expected:
            message = f"Expected a {expected} resource, not {resource_type}"
            issues.append(_issue("invalid", message, (type_path,)))
        else:
            node = self._nodes[resource_type]
            self._object(value, node, path or resource_type, issues, depth, resource=True)

    def _object(
        self,
        obj: dict[str, Any],
        node: CompiledNode,
        path: str,
        issues: list[Issue],
        depth: int,
        resource: bool = False,
    ) -> None:
        if not obj:
            issues.append(_issue("structure", "An object must not be empty", (path,)))
            return
        if depth > MAX_DEPTH:
            message = f"The document nests deeper than {MAX_DEPTH} objects"
            issues.append(_issue("structure", message, (path,)))
            return
        slots = node.slots
        choices: dict[str, str] | None = None
        for key, value in obj.items():
            slot = slots.get(key)
            if slot is None:
                if key[:1] == "_":
                    if choices is None:
                        choices = {}
                    self._primitive_extension(obj, node, key, value, path, issues, depth, choices)
                elif key != "resourceType" or not resource:
                    _unknown(node, key, path, issues, resource)
                continue
            kind, target, array, choice, _ = slot
            if choice is not None:
                if choices is None:
                    choices = {}
                if not _first_variant(choices, choice, key, path, issues):
                    continue
            if kind == PRIMITIVE:
                if array:
                    _primitive_array(obj, key, value, target, path, issues)
                else:
                    problem = target(value)
                    if problem is not None:
                        _bad_primitive(key, value, problem, f"{path}.{key}", issues)
            elif kind == COMPLEX:
                if not array:
                    if type(value) is dict:
                        self._object(value, target, f"{path}.{key}", issues, depth + 1)
                    else:
                        _not_object(key, value, f"{path}.{key}", issues)
                elif type(value) is list and value:
                    for i, item in enumerate(value):
                        if type(item) is dict:
                            self._object(item, target, f"{path}.{key}[{i}]", issues, depth + 1)
                        else:
                            _not_object(key, item, f"{path}.{key}[{i}]", issues)
                else:
                    _not_array(key, value, path, issues)
            elif kind == RESOURCE:
                if not array:
                    self._resource(value, f"{path}.{key}", target, issues, depth + 1)
                elif type(value) is list and value:
                    for i, item in enumerate(value):
                        self._resource(item, f"{path}.{key}[{i}]", target, issues, depth + 1)
                else:
                    _not_array(key, value, path, issues)
            else:
                _forbidden(node, key, path, issues)
        for name, keys in node.required:
            for key in keys:
                if key in obj:
                    break
            else:
                message = f"{node.name}.{name} is required"
                issues.append(_issue("required", message, (f"{path}.{name.removesuffix('[x]')}",)))

    def _primitive_extension(
        self,
        obj: dict[str, Any],
        node: CompiledNode,
        key: str,
        value: Any,
        path: str,
        issues: list[Issue],
        depth: int,
        choices: dict[str, str],
    ) -> None:
        """`_key`: the id and extensions of the primitive `key` (json.html#primitive)."""
        name = key[1:]
        slot = node.slots.get(name)
        if slot is None or slot.kind != PRIMITIVE or not slot.extensible:
            if slot is not None and slot.kind == FORBIDDEN:
                _forbidden(node, key, path, issues)
            else:
                _unknown(node, key, path, issues, resource=False)
            return
        if slot.choice is not None and not _first_variant(choices, slot.choice, key, path, issues):
            return
        if not slot.array:
            if type(value) is dict:
                self._object(value, self._element, f"{path}.{name}", issues, depth + 1)
            else:
                message = f"{key} must be an object with the id and extensions of {name}"
                issues.append(_issue("structure", message, (f"{path}.{name}",)))
            return
        if type(value) is not list or not value:
            _not_array(key, value, path, issues)
            return
        values = obj.get(name)
        if type(values) is list and len(values) != len(value):
            message = f"{key} has {len(value)} items but {name} has {len(values)}"
            issues.append(_issue("structure", message, (f"{path}.{name}",)))
        for i, item in enumerate(value):
            item_path = f"{path}.{name}[{i}]"
            if item is None:
                # With values present, their side reports a position that has neither.
                if type(values) is not list:
                    message = f"{name}[{i}] has neither a value nor an extension"
                    issues.append(_issue("structure", message, (item_path,)))
            elif type(item) is dict:
                self._object(item, self._element, item_path, issues, depth + 1)
            else:
                message = f"{key}[{i}] must be an object or null"
                issues.append(_issue("structure", message, (item_path,)))


def _primitive_array(
    obj: dict[str, Any], key: str, value: Any, check: Check, path: str, issues: list[Issue]
) -> None:
    if type(value) is not list or not value:
        _not_array(key, value, path, issues)
        return
    for i, item in enumerate(value):
        if item is None:
            # A null keeps values and their `_key` extensions aligned; it needs an extension in
            # the same position (json.html#primitive).
            extensions = obj.get("_" + key)
            if type(extensions) is not list or i >= len(extensions) or extensions[i] is None:
                message = f"{key}[{i}] is null and has no extension in _{key}"
                issues.append(_issue("structure", message, (f"{path}.{key}[{i}]",)))
        else:
            problem = check(item)
            if problem is not None:
                _bad_primitive(f"{key}[{i}]", item, problem, f"{path}.{key}[{i}]", issues)


def _issue(code: str, diagnostics: str, expression: tuple[str, ...]) -> Issue:
    return Issue("error", code, diagnostics, expression)


def _unknown(node: CompiledNode, key: str, path: str, issues: list[Issue], resource: bool) -> None:
    if key == "resourceType":
        message = "resourceType may only appear at the root of a resource"
    else:
        kind = "resource" if resource else "element"
        message = f"Unknown element {key!r} in {kind} {node.name}"
    issues.append(_issue("structure", message, (f"{path}.{key}",)))


def _forbidden(node: CompiledNode, key: str, path: str, issues: list[Issue]) -> None:
    message = f"{key} is not allowed in {node.name} (max 0)"
    issues.append(_issue("structure", message, (f"{path}.{key}",)))


def _first_variant(
    choices: dict[str, str], choice: str, key: str, path: str, issues: list[Issue]
) -> bool:
    """Record `key` as the variant of its choice element; False if another one came first."""
    variant = key.removeprefix("_")
    seen = choices.setdefault(choice, variant)
    if seen == variant:
        return True
    message = f"{choice} has more than one variant: {seen} and {variant}"
    issues.append(_issue("structure", message, (f"{path}.{variant}",)))
    return False


def _bad_primitive(key: str, value: Any, problem: str, path: str, issues: list[Issue]) -> None:
    if value is None:
        message = f"{key} is null; only items of a primitive array may be null"
        issues.append(_issue("structure", message, (path,)))
    elif type(value) is list:
        issues.append(_issue("structure", f"{key} must be a single value, not an array", (path,)))
    elif type(value) is dict:
        message = f"{key} must be a primitive value, not an object"
        issues.append(_issue("structure", message, (path,)))
    else:
        issues.append(_issue("value", problem, (path,)))


def _not_array(key: str, value: Any, path: str, issues: list[Issue]) -> None:
    shape = "a non-empty array" if type(value) is list else "an array"
    message = f"{key} must be {shape}"
    issues.append(_issue("structure", message, (f"{path}.{key}",)))


def _not_object(key: str, value: Any, path: str, issues: list[Issue]) -> None:
    if type(value) is list:
        message = f"{key} must be a single object, not an array"
    else:
        message = f"{key} must be an object"
    issues.append(_issue("structure", message, (path,)))


def _slots(
    node: Node,
    definitions: Definitions,
    checks: dict[str, Check],
    nodes: dict[str, CompiledNode],
) -> dict[str, Slot]:
    slots: dict[str, Slot] = {}
    for name, prop in node.properties.items():
        element = prop.element
        choice = element.name if element.is_choice else None
        array = element.is_array
        if element.max == "0":
            slots[name] = Slot(FORBIDDEN, None, False, choice, False)
        elif prop.type in checks:
            # Element.id, Extension.url and xhtml carry no extensions (json.html#primitive).
            extensible = not element.attribute and prop.type != "xhtml"
            slots[name] = Slot(PRIMITIVE, checks[prop.type], array, choice, extensible)
        elif prop.type == "Resource" or prop.type in definitions.resource_types:
            expected = None if prop.type == "Resource" else prop.type
            slots[name] = Slot(RESOURCE, expected, array, choice, False)
        else:
            slots[name] = Slot(COMPLEX, nodes[prop.node], array, choice, False)
    return slots


def _required(node: Node) -> Required:
    required = []
    for element in node.elements:
        if element.min >= 1:
            keys = tuple(
                key
                for name, prop in node.properties.items()
                if prop.element is element
                for key in (name, "_" + name)
            )
            required.append((element.name, keys))
    return tuple(required)
