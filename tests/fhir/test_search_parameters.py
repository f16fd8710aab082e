"""The search-parameter registry holds every official R4 definition, compiled for each type."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.fhirpath import Node, compile_fhirpathpy
from flode.fhir.json import loads
from flode.fhir.search_parameters import SearchParameters, _fix_expression

OFFICIAL = (Path(__file__).parents[2] / ".." / "shared" / "data" / "fhir-examples").resolve()
IN_REPO = Path(__file__).parents[1] / "data" / "fhir-examples"
SP = "http://hl7.org/fhir/SearchParameter/"

DEFINITIONS = Definitions.load()
REGISTRY = SearchParameters.load(DEFINITIONS)


def official_definitions() -> list[dict[str, Any]]:
    source = resources.files("flode.fhir") / "definitions" / "search-parameters.json.gz"
    bundle = json.loads(gzip.decompress(source.read_bytes()))
    return [entry["resource"] for entry in bundle["entry"]]


def test_all_1378_official_definitions_are_read() -> None:
    assert len(official_definitions()) == 1378


def test_every_official_definition_is_registered_for_each_of_its_base_types() -> None:
    domain_resources = {
        t for t in DEFINITIONS.resource_types if t not in {"Bundle", "Binary", "Parameters"}
    }
    expanded = {
        "Resource": DEFINITIONS.resource_types,
        "DomainResource": domain_resources,
    }
    for definition in official_definitions():
        for base in definition["base"]:
            for resource_type in expanded.get(base, {base}):
                param = REGISTRY.get(resource_type, definition["code"])
                assert param is not None, (resource_type, definition["code"])
                assert param.url == definition["url"]
                assert param.type == definition["type"]


def test_every_expression_that_can_be_evaluated_is_compiled_fast() -> None:
    paths = Counter(p.compiled.path if p.compiled else "unsupported" for p in REGISTRY)
    assert paths == {"fast": 2719, "unsupported": 292}


def test_only_parameters_without_an_expression_or_needing_the_whole_resource_are_unsupported() -> (
    None
):
    assert sorted({url for url, _ in REGISTRY.unsupported}) == [
        # Their coordinate components read %resource, but a component sees one element.
        SP + "MolecularSequence-chromosome-variant-coordinate",
        SP + "MolecularSequence-referenceseqid-variant-coordinate",
        SP + "Resource-content",
        SP + "Resource-query",
    ]
    assert all(reason for _, reason in REGISTRY.unsupported)


def test_every_component_of_a_composite_is_compiled_fast() -> None:
    paths = Counter(c.path for p in REGISTRY for c in p.compiled_components.values())
    assert set(paths) == {"fast"}


@pytest.mark.parametrize(
    ("deceased", "expected"),
    [
        ({}, [("boolean", False)]),
        ({"deceasedBoolean": False}, [("boolean", False)]),
        ({"deceasedBoolean": True}, [("boolean", True)]),
        ({"deceasedDateTime": "2020-01-01"}, [("boolean", True)]),
    ],
)
def test_patient_deceased_is_true_for_a_death_date_and_agrees_with_fhirpathpy(
    deceased: dict[str, Any], expected: list[Node]
) -> None:
    param = REGISTRY.for_type("Patient")["deceased"]
    assert param.compiled is not None
    assert param.compiled.path == "fast"
    patient = {"resourceType": "Patient", **deceased}
    assert param.evaluate(patient) == expected
    assert reference_evaluator("Patient", "deceased")(patient) == expected


def test_a_shared_expression_keeps_only_the_branches_of_its_type() -> None:
    assert REGISTRY.get("Condition", "code") is not None
    assert REGISTRY.for_type("Condition")["code"].expression == "Condition.code"
    assert REGISTRY.for_type("AllergyIntolerance")["code"].expression == (
        "AllergyIntolerance.code | AllergyIntolerance.reaction.substance"
    )


def test_resource_parameters_are_written_for_every_type() -> None:
    assert REGISTRY.for_type("Patient")["_id"].expression == "Patient.id"
    assert REGISTRY.for_type("Observation")["_tag"].expression == "Observation.meta.tag"


def test_every_type_has_the_common_parameters_and_narrative_types_have_text() -> None:
    common = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content"}
    assert common | {"_text"} <= set(REGISTRY.for_type("Patient"))
    assert common <= set(REGISTRY.for_type("Bundle"))
    assert "_text" not in REGISTRY.for_type("Bundle")


def test_an_unknown_type_or_code_has_no_parameter() -> None:
    assert REGISTRY.get("Patient", "no-such-code") is None
    assert REGISTRY.for_type("NoSuchType") == {}


def test_a_parameter_carries_its_definition() -> None:
    subject = REGISTRY.for_type("Observation")["subject"]
    assert subject.type == "reference"
    assert "Patient" in subject.targets
    assert "identifier" in subject.modifiers
    composite = REGISTRY.for_type("Observation")["combo-code-value-quantity"]
    assert composite.components == (
        ("combo-code", "code"),
        ("combo-value-quantity", "value.ofType(Quantity)"),
    )
    assert composite.multiple_or is False


def test_a_composite_evaluates_its_components_on_each_value() -> None:
    observation = loads((IN_REPO / "Observation-blood-pressure.json").read_bytes())
    composite = REGISTRY.for_type("Observation")["component-code-value-quantity"]
    pairs = [
        (
            [
                c["coding"][0]["code"]
                for _, c in composite.evaluate_component("component-code", node)
            ],
            [q["value"] for _, q in composite.evaluate_component("component-value-quantity", node)],
        )
        for node in composite.evaluate(observation)
    ]
    assert pairs == [(["8480-6"], [107]), (["8462-4"], [60])]


def test_the_patient_compartment_comes_from_its_definition() -> None:
    assert REGISTRY.compartment("Observation") == ("subject", "performer")
    assert REGISTRY.compartment("Patient") == ("link",)
    assert REGISTRY.compartment("Organization") == ()


@pytest.mark.parametrize(
    ("resource_type", "code", "resource", "expected"),
    [
        ("Patient", "birthdate", {"birthDate": "1970-01-01"}, ["date"]),
        ("Patient", "name", {"name": [{"family": "A"}]}, ["HumanName"]),
        ("Patient", "identifier", {"identifier": [{"value": "1"}]}, ["Identifier"]),
        ("Observation", "code", {"code": {"text": "x"}}, ["CodeableConcept"]),
        ("Observation", "subject", {"subject": {"reference": "Patient/1"}}, ["Reference"]),
        ("Observation", "value-quantity", {"valueQuantity": {"value": 1}}, ["Quantity"]),
        ("Encounter", "date", {"period": {"start": "2020"}}, ["Period"]),
        ("Condition", "onset-date", {"onsetDateTime": "2020"}, ["dateTime"]),
        ("Condition", "onset-date", {"onsetPeriod": {"start": "2020"}}, ["Period"]),
        ("Condition", "onset-date", {"onsetString": "as a child"}, []),
    ],
)
def test_values_carry_their_fhir_type(
    resource_type: str, code: str, resource: dict[str, Any], expected: list[str]
) -> None:
    param = REGISTRY.for_type(resource_type)[code]
    assert [t for t, _ in param.evaluate({"resourceType": resource_type, **resource})] == expected


def test_fix_expression_turns_as_on_collections_into_of_type() -> None:
    assert _fix_expression(
        "u", "(Observation.value as Quantity) | (Observation.value as SampledData)"
    ) == ("Observation.value.ofType(Quantity) | Observation.value.ofType(SampledData)")
    assert _fix_expression("u", "Condition.onset.as(Age) | Condition.onset.as(Range)") == (
        "Condition.onset.ofType(Age) | Condition.onset.ofType(Range)"
    )
    assert _fix_expression("u", "(Observation.value as CodeableConcept).text") == (
        "Observation.value.ofType(CodeableConcept).text"
    )


def test_fix_expression_gives_text_the_narrative_and_leaves_others_empty() -> None:
    assert _fix_expression(SP + "DomainResource-text", None) == "DomainResource.text.`div`"
    assert _fix_expression(SP + "Resource-content", None) is None


def test_fix_expression_adds_the_missing_type_to_insurance_plan_name() -> None:
    assert _fix_expression(SP + "InsurancePlan-name", "name | alias") == (
        "InsurancePlan.name | InsurancePlan.alias"
    )


def test_fix_expression_leaves_correct_expressions_alone() -> None:
    expression = "Patient.telecom.where(system='email')"
    assert _fix_expression(SP + "individual-email", expression) == expression


# The differential test: the fast path must find what fhirpathpy finds.


def examples(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


@cache
def reference_evaluator(resource_type: str, code: str) -> Any:
    param = REGISTRY.for_type(resource_type)[code]
    assert param.expression is not None
    return compile_fhirpathpy(DEFINITIONS, param.expression, resource_type).evaluate


def values(nodes: list[Node]) -> set[str]:
    return {json.dumps(value, sort_keys=True) for _, value in nodes}


def assert_fast_path_agrees_with_fhirpathpy(path: Path) -> None:
    resource = loads(path.read_bytes())
    resource_type = resource["resourceType"]
    compared = 0
    for code, param in REGISTRY.for_type(resource_type).items():
        if param.compiled is None or param.compiled.path != "fast":
            continue
        expected = reference_evaluator(resource_type, code)(resource)
        assert values(param.evaluate(resource)) == values(expected), code
        compared += 1
    assert compared > 0


@pytest.mark.parametrize("path", examples(IN_REPO), ids=lambda path: path.name)
def test_the_fast_path_agrees_with_fhirpathpy_on_an_in_repo_example(path: Path) -> None:
    assert_fast_path_agrees_with_fhirpathpy(path)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="the official examples are not here")
@pytest.mark.parametrize("path", examples(OFFICIAL), ids=lambda path: path.name)
def test_the_fast_path_agrees_with_fhirpathpy_on_an_official_example(path: Path) -> None:
    assert_fast_path_agrees_with_fhirpathpy(path)
