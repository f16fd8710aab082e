"""`_summary` and `_elements` (https://hl7.org/fhir/R4/search.html#summary, #elements): parts
of a resource, marked SUBSETTED so no client mistakes them for the whole.

`_summary=true` keeps the elements the definitions mark `isSummary`, descending into backbone
elements; `text` keeps the narrative, `id`, `meta` and the mandatory top-level elements; `data`
drops the narrative. `_elements` keeps the named top-level elements and the mandatory ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from flode.fhir.definitions import Definitions

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def _keep(
    definitions: Definitions, resource: Mapping[str, Any], wanted: Collection[str]
) -> dict[str, Any]:
    """The top-level elements of `resource` named in `wanted` (`value` keeps `valueQuantity`;
    `_name`, a primitive's extensions, follows `name`) and the mandatory ones."""
    node = definitions.nodes.get(resource["resourceType"])
    out = {}
    for name, item in resource.items():
        prop = node.properties.get(name.removeprefix("_")) if node is not None else None
        element = prop.element.name.removesuffix("[x]") if prop is not None else name
        if name in _ALWAYS or element in wanted or (prop is not None and prop.element.min > 0):
            out[name] = item
    return out


def _summary(definitions: Definitions, node_name: str, value: Any) -> Any:
    node = definitions.nodes.get(node_name)
    if node is None or not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name == "resourceType":
            out[name] = item
            continue
        prop = node.properties.get(name[1:] if name.startswith("_") else name)
        if prop is None or not prop.element.summary:
            continue
        child = prop.element.node
        if child is None or name.startswith("_"):  # a datatype is summarised whole
            out[name] = item
        elif isinstance(item, list):
            out[name] = [_summary(definitions, child, i) for i in item]
        else:
            out[name] = _summary(definitions, child, item)
    return out


def summary(definitions: Definitions, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """The resource as `_summary=mode` asks (`true`, `text` or `data`; `false` is all of it)."""
    if mode == "false":
        return resource
    if mode == "true":
        out = _summary(definitions, resource["resourceType"], resource)
        out.pop("text", None)
        return _mark(out)
    if mode == "text":
        return _mark(_keep(definitions, resource, ("text",)))
    assert mode == "data"
    return _mark({k: v for k, v in resource.items() if k != "text"})


def elements(
    definitions: Definitions, resource: dict[str, Any], names: Collection[str]
) -> dict[str, Any]:
    """The resource with only the `names`d top-level elements (as `name` or `Type.name`) and
    the mandatory ones."""
    prefix = resource["resourceType"] + "."
    return _mark(_keep(definitions, resource, {n.removeprefix(prefix) for n in names}))
