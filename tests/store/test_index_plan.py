"""The indexer plans each type's parameters once and leaves out those whose expression starts
from properties a resource does not have: it must index exactly what evaluating every
parameter of the type indexes, in the same order, and find the same Patient compartments."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flode.access import facts
from flode.fhir import json
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.indexer import FULL_TEXT, MODULES, ON_RESOURCE, Indexer
from flode.store.params import composite, reference

DATA = Path(__file__).resolve().parents[1] / "data"


def resources() -> Iterator[dict[str, Any]]:
    """Every resource of the test data: examples, Synthea Bundles and NDJSON lines."""
    for path in sorted(DATA.glob("fhir-examples/*.json")):
        yield from _with_entries(json.loads(path.read_bytes()))
    for path in sorted(DATA.glob("synthea/*.json.gz")):
        yield from _with_entries(json.loads(gzip.decompress(path.read_bytes())))
    for path in sorted(DATA.glob("ndjson/*.ndjson.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            yield json.loads(line)


def _with_entries(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield resource
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        if isinstance(entry.get("resource"), dict):
            yield entry["resource"]


def every_parameter(registry: SearchParameters, resource: dict[str, Any]) -> dict[str, Any]:
    """The index rows of every parameter of the type, each evaluated whatever the resource
    holds, and the access rows."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for code, param in registry.for_type(resource["resourceType"]).items():
        module = MODULES.get(param.type)
        if module is None or code in ON_RESOURCE or code in FULL_TEXT:
            continue
        if param.type == "composite":
            elements = []
            for node in param.evaluate(resource):
                components = []
                for component, _ in param.components:
                    definition = registry.get(param.base, component)
                    kind = definition.type if definition is not None else "token"
                    components.append((kind, param.evaluate_component(component, node)))
                elements.append(components)
            found = composite.rows(elements)
        else:
            found = module.rows(param.evaluate(resource))
        if found:
            rows = tables.setdefault(module.TABLE, [])
            rows.extend((code, *row) for row in dict.fromkeys(found))
    for table, rows in facts.rows(resource).items():
        tables.setdefault(table, []).extend(rows)
    return tables


def compartments(registry: SearchParameters, resource: dict[str, Any]) -> list[str]:
    found: dict[str, None] = {}
    if resource["resourceType"] == "Patient" and isinstance(resource.get("id"), str):
        found[resource["id"]] = None
    for code in registry.compartment(resource["resourceType"]):
        param = registry.get(resource["resourceType"], code)
        for target_type, target_id, *_ in reference.rows(param.evaluate(resource) if param else []):
            if target_type == "Patient" and target_id:
                found[target_id] = None
    return list(found)


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return Indexer(SearchParameters.load(Definitions.load()))


def test_the_plan_indexes_what_every_parameter_indexes(indexer: Indexer) -> None:
    count = 0
    for resource in resources():
        rows = indexer.rows(resource)
        assert rows.tables == every_parameter(indexer.registry, resource), resource.get("id")
        count += 1
    assert count > 1_000


def test_the_compartments_are_those_of_every_compartment_parameter(indexer: Indexer) -> None:
    for resource in resources():
        expected = compartments(indexer.registry, resource)
        if resource["resourceType"] == "Provenance":
            continue  # and the patients Flöde's own Provenance names (test_provenance)
        assert [id for _, id in indexer.rows(resource).compartments] == expected
        assert indexer.patients(resource) == expected


def test_a_new_registry_gets_new_plans() -> None:
    indexer = Indexer(SearchParameters.load(Definitions.load()))
    patient = {"resourceType": "Patient", "id": "p", "name": [{"family": "Berg"}]}
    assert ("family", "berg", "Berg") in indexer.rows(patient).tables["search_string"]
    registry = SearchParameters.load(Definitions.load())
    custom = {
        "resourceType": "SearchParameter",
        "url": "https://example.org/SearchParameter/nickname",
        "code": "nickname",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.given",
        "status": "active",
    }
    indexer.registry, _ = registry.with_custom(Definitions.load(), [custom])
    patient["name"] = [{"given": ["Åsa"]}]
    assert ("nickname", "asa", "Åsa") in indexer.rows(patient).tables["search_string"]
