"""The FHIR R4 (4.0.1) structure definitions Flöde ships, as a compact element model.

The model is derived from the official StructureDefinition snapshots by
`tools/generate_definitions.py` and bundled as `definitions/elements.json.gz`. A *node* is
one object shape: a resource or complex datatype (keyed by its name) or a backbone element
(keyed by its path, e.g. `Patient.contact`). Each node lists its elements; choice elements
(`value[x]`) are also expanded into the JSON properties they allow (`valueQuantity`, ...), see
https://hl7.org/fhir/R4/formats.html#choice.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

JsonKind = Literal["string", "boolean", "number"]

# Type codes whose values are objects described by the element's own (backbone) node.
INLINE_TYPES = frozenset({"BackboneElement", "Element"})


@dataclass(frozen=True, slots=True)
class Primitive:
    """A primitive datatype: the JSON type it is written as and the spec's regex (if any)."""

    name: str
    json_kind: JsonKind
    regex: str | None


@dataclass(frozen=True, slots=True)
class Element:
    """One element of a node, as declared (a choice element keeps its `[x]` name)."""

    path: str
    name: str
    min: int
    max: str
    types: tuple[str, ...]
    content_reference: str | None = None
    summary: bool = False
    modifier: bool = False
    attribute: bool = False

    @property
    def is_array(self) -> bool:
        """FHIR JSON writes an element as an array exactly when its max is not 1."""
        return self.max != "1"

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def node(self) -> str | None:
        """The node describing this element's object value, when it is an inline object."""
        if self.content_reference is not None:
            return self.content_reference[1:]
        if len(self.types) == 1 and self.types[0] in INLINE_TYPES:
            return self.path
        return None


@dataclass(frozen=True, slots=True)
class Property:
    """One JSON property name a node allows, with the single type it carries.

    The type may be a constrained datatype (`SimpleQuantity`); a choice variant is still named
    after its base type (`doseQuantity`).
    """

    name: str
    element: Element
    type: str

    @property
    def node(self) -> str:
        """The node of the property's value: an inline node, or the type itself."""
        return self.element.node or self.type


@dataclass(frozen=True, slots=True)
class Node:
    """An object shape: its elements in definition order and the JSON properties they allow."""

    name: str
    elements: tuple[Element, ...]
    properties: Mapping[str, Property]


@dataclass(frozen=True, slots=True)
class Definitions:
    fhir_version: str
    resource_types: frozenset[str]
    datatypes: frozenset[str]
    # Constrained datatypes (SimpleQuantity, MoneyQuantity) and the type they constrain.
    constraints: Mapping[str, str]
    primitives: Mapping[str, Primitive]
    nodes: Mapping[str, Node]

    @staticmethod
    @cache
    def load() -> Definitions:
        """The bundled definitions, read from the package once per process."""
        source = resources.files("flode.fhir") / "definitions" / "elements.json.gz"
        return Definitions.from_json(json.loads(gzip.decompress(source.read_bytes())))

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Definitions:
        primitives = {
            name: Primitive(name, kind, regex) for name, (kind, regex) in data["primitives"].items()
        }
        constraints: dict[str, str] = data["constraints"]
        nodes = {name: _node(name, entries, constraints) for name, entries in data["nodes"].items()}
        return Definitions(
            fhir_version=data["fhirVersion"],
            resource_types=frozenset(data["resources"]),
            datatypes=frozenset(data["datatypes"]),
            constraints=MappingProxyType(constraints),
            primitives=MappingProxyType(primitives),
            nodes=MappingProxyType(nodes),
        )

    def element(self, path: str) -> Element:
        """The element at a path such as `Observation.value[x]` or `Questionnaire.item.item`.

        Paths continue into backbone elements, content references and single complex types,
        so `Questionnaire.item.item.linkId` and `Patient.name.family` resolve.
        """
        head, _, rest = path.partition(".")
        node = self.nodes[head]
        names = rest.split(".")
        for i, name in enumerate(names):
            element = next((e for e in node.elements if e.name == name), None)
            if element is None:
                raise KeyError(path)
            if i == len(names) - 1:
                return element
            child = element.node
            if child is None and len(element.types) == 1:
                child = element.types[0]
            if child is None or child not in self.nodes:
                raise KeyError(path)
            node = self.nodes[child]
        raise KeyError(path)


def _node(name: str, entries: list[list[Any]], constraints: Mapping[str, str]) -> Node:
    elements = tuple(_element(name, entry) for entry in entries)
    properties: dict[str, Property] = {}
    for element in elements:
        if element.is_choice:
            stem = element.name[:-3]
            for code in element.types:
                base = constraints.get(code, code)
                json_name = stem + base[0].upper() + base[1:]
                properties[json_name] = Property(json_name, element, code)
        else:
            code = element.types[0] if element.types else "BackboneElement"
            properties[element.name] = Property(element.name, element, code)
    return Node(name, elements, MappingProxyType(properties))


def _element(node: str, entry: list[Any]) -> Element:
    name, minimum, maximum, types, reference, flags = entry
    return Element(
        path=f"{node}.{name}",
        name=name,
        min=minimum,
        max=maximum,
        types=tuple(types),
        content_reference=reference,
        summary="S" in flags,
        modifier="M" in flags,
        attribute="A" in flags,
    )
