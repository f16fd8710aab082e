"""Derive Flöde's bundled FHIR R4 definitions from the official definition files.

    python tools/generate_definitions.py ../shared/fhir-r4 src/flode/fhir/definitions

Reads profiles-types.json and profiles-resources.json (StructureDefinition snapshots) and
writes `elements.json.gz`, the compact element model `flode.fhir.definitions` loads:

    {
      "fhirVersion": "4.0.1",
      "resources": ["Account", ...],                    concrete resource types
      "datatypes": ["Address", ...],                    complex datatypes (and constraints)
      "constraints": {"SimpleQuantity": "Quantity"},    constrained datatypes and their base
      "primitives": {"date": ["string", "<regex>"]},    JSON kind and spec regex (or null)
      "nodes": {                                        object shapes, by type name or path
        "Patient": [[name, min, max, types, contentReference, flags], ...],
        "Patient.contact": [...],
        ...
      }
    }

An element's `types` are the spec's type codes (choice elements keep their `[x]` name and list
every allowed type); `BackboneElement`/`Element` mark an inline node keyed by the element's own
path, `contentReference` ("#Questionnaire.item") one keyed by the referenced path. `flags` holds
"S" (isSummary), "M" (isModifier) and "A" (an XML attribute: Element.id and Extension.url carry
no primitive extension in JSON).

The search parameters and the Patient compartment are copied verbatim (minified, gzipped) for
the search and access code. The runtime never reads the source directory.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

FHIR_VERSION = "4.0.1"
SYSTEM_TYPE_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXTENSION = "http://hl7.org/fhir/StructureDefinition/regex"
PROFILE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
COPIED = ("search-parameters.json", "compartmentdefinition-patient.json")

Json = dict[str, Any]


def type_code(element: Json, declared: Json) -> str:
    """The type code of one `ElementDefinition.type`, with the R4 errata patched.

    Resource.id is declared as a System.String with fhir-type `string`; the resource pages and
    https://hl7.org/fhir/R4/resource.html#id define it as an `id`. Quantity elements profiled
    on SimpleQuantity use that constraint (no comparator).
    """
    code: str = declared["code"]
    if code.startswith(SYSTEM_TYPE_PREFIX):
        if element.get("base", {}).get("path") == "Resource.id":
            return "id"
        fhir_types = [
            ext["valueUrl"]
            for ext in declared.get("extension", ())
            if ext["url"] == FHIR_TYPE_EXTENSION
        ]
        return fhir_types[0] if fhir_types else "string"
    for profile in declared.get("profile", ()):
        if code == "Quantity" and profile == PROFILE_PREFIX + "SimpleQuantity":
            return "SimpleQuantity"
    return code


def is_attribute(element: Json) -> bool:
    """Element.id and Extension.url are XML attributes, typed with a FHIRPath system type."""
    base_path = element.get("base", {}).get("path", element["path"])
    return base_path in ("Element.id", "Extension.url")


def node_entries(sd: Json) -> dict[str, list[list[Any]]]:
    """All object shapes one StructureDefinition declares: its root and its backbones."""
    sd_type: str = sd["type"]
    name: str = sd["id"]
    nodes: dict[str, list[list[Any]]] = {name: []}
    for element in sd["snapshot"]["element"]:
        path: str = element["path"]
        if path == sd_type:
            continue
        relative = name + path[len(sd_type) :]
        parent, _, element_name = relative.rpartition(".")
        types = [type_code(element, t) for t in element.get("type", ())]
        if types in (["BackboneElement"], ["Element"]):
            nodes[relative] = []
        reference = element.get("contentReference")
        if reference is not None:
            reference = "#" + name + reference[1 + len(sd_type) :]
        flags = "".join(
            flag
            for flag, present in (
                ("S", element.get("isSummary", False)),
                ("M", element.get("isModifier", False)),
                ("A", is_attribute(element)),
            )
            if present
        )
        entry = [element_name, element["min"], element["max"], types, reference, flags]
        nodes[parent].append(entry)
    return nodes


def primitive(sd: Json, by_id: dict[str, Json]) -> list[str | None]:
    """[JSON kind, regex] of a primitive type; the kind follows the base type chain."""
    root = sd
    while root["baseDefinition"] != PROFILE_PREFIX + "Element":
        root = by_id[root["baseDefinition"].removeprefix(PROFILE_PREFIX)]
    kinds = {"boolean": "boolean", "integer": "number", "decimal": "number"}
    kind = kinds.get(root["id"], "string")
    regex: str | None = None
    for element in sd["snapshot"]["element"]:
        if element["path"] == sd["type"] + ".value":
            for ext in element["type"][0].get("extension", ()):
                if ext["url"] == REGEX_EXTENSION:
                    regex = ext["valueString"]
    return [kind, regex]


def structure_definitions(source: Path, name: str) -> list[Json]:
    bundle = json.loads((source / name).read_text(encoding="utf-8"))
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "StructureDefinition"
    ]


def build(source: Path) -> Json:
    types = structure_definitions(source, "profiles-types.json")
    resources = structure_definitions(source, "profiles-resources.json")
    by_id = {sd["id"]: sd for sd in types}
    concrete_resources = sorted(
        sd["id"]
        for sd in resources
        # The distribution adds the R4B SubscriptionStatus (fhirVersion 4.3.0); R4 has none.
        if sd["kind"] == "resource" and not sd["abstract"] and sd["fhirVersion"] == FHIR_VERSION
    )
    datatypes = sorted(
        sd["id"] for sd in types if sd["kind"] == "complex-type" and not sd["abstract"]
    )
    nodes: dict[str, list[list[Any]]] = {}
    for sd in types + resources:
        if sd["id"] in datatypes or sd["id"] in concrete_resources:
            nodes.update(node_entries(sd))
    constraints = {
        sd["id"]: sd["type"]
        for sd in types
        if sd["kind"] == "complex-type" and sd.get("derivation") == "constraint"
    }
    primitives = {sd["id"]: primitive(sd, by_id) for sd in types if sd["kind"] == "primitive-type"}
    return {
        "fhirVersion": FHIR_VERSION,
        "resources": concrete_resources,
        "datatypes": datatypes,
        "constraints": dict(sorted(constraints.items())),
        "primitives": dict(sorted(primitives.items())),
        "nodes": dict(sorted(nodes.items())),
    }


def write_json_gz(path: Path, value: Any) -> None:
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    # mtime=0 keeps the output byte-identical between runs.
    path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source", type=Path, help="folder with the official R4 definition files")
    parser.add_argument("target", type=Path, help="package folder for the bundled files")
    args = parser.parse_args(argv)
    source: Path = args.source
    target: Path = args.target
    target.mkdir(parents=True, exist_ok=True)
    write_json_gz(target / "elements.json.gz", build(source))
    for name in COPIED:
        value = json.loads((source / name).read_text(encoding="utf-8"))
        write_json_gz(target / (name + ".gz"), value)
    for written in sorted(target.glob("*.json.gz")):
        print(f"{written}: {written.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
