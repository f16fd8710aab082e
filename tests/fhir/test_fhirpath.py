"""Search expressions compile once and yield (type, value) nodes, fast where the form is simple."""

from __future__ import annotations

from typing import Any

import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.fhirpath import (
    CompiledExpression,
    Node,
    Unsupported,
    compile_expression,
    compile_fhirpathpy,
    reference_type,
)
from flode.fhir.json import Decimal, loads

DEFINITIONS = Definitions.load()

OBSERVATION: dict[str, Any] = loads(
    b"""{
  "resourceType": "Observation",
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
  "subject": {"reference": "Patient/p1"},
  "performer": [
    {"reference": "Practitioner/d1"},
    {"reference": "https://example.org/fhir/Patient/p2/_history/3"},
    {"reference": "#contained"},
    {"reference": "urn:uuid:0b3d2b35-6c8c-4a0b-9b5a-3c2e4d9f1a01"}
  ],
  "effectiveDateTime": "2024-05-01",
  "_effectiveDateTime": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
  "valueQuantity": {"value": 72.50, "unit": "kg"},
  "component": [
    {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
    {"code": {"text": "note"}, "valueString": "irregular"}
  ],
  "extension": [{"url": "http://example.org/level", "valueInteger": 3}]
}"""
)


def compiled(expression: str, context: str = "Observation") -> CompiledExpression:
    return compile_expression(DEFINITIONS, expression, context)


def evaluate(expression: str, resource: Any = OBSERVATION, context: str = "Observation") -> Any:
    result = compiled(expression, context)
    assert result.path == "fast"
    return result.evaluate(resource)


def test_a_dotted_path_continues_through_arrays() -> None:
    assert evaluate("Observation.component.code.text") == [
        ("string", "systolic"),
        ("string", "note"),
    ]


def test_a_choice_element_yields_each_present_variant_with_its_type() -> None:
    assert evaluate("Observation.effective") == [("dateTime", "2024-05-01")]
    assert evaluate("Observation.component.value") == [
        ("Quantity", {"value": 120, "unit": "mm[Hg]"}),
        ("string", "irregular"),
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "Observation.value.ofType(Quantity)",
        "Observation.value.as(Quantity)",
        "(Observation.value as Quantity)",
    ],
)
def test_a_type_filter_selects_the_choice_variant(expression: str) -> None:
    assert evaluate(expression) == [("Quantity", {"value": 72.50, "unit": "kg"})]


def test_a_type_filter_keeps_subtypes() -> None:
    condition = {"resourceType": "Condition", "onsetAge": {"value": 40, "unit": "a"}}
    assert evaluate("Condition.onset.ofType(Quantity)", condition, "Condition") == [
        ("Age", {"value": 40, "unit": "a"})
    ]


def test_decimals_are_kept_as_parsed() -> None:
    [(_, quantity)] = evaluate("Observation.value.ofType(Quantity)")
    assert isinstance(quantity["value"], Decimal)
    assert quantity["value"].text == "72.50"


def test_a_primitive_is_its_value_without_its_extension_sibling() -> None:
    assert evaluate("Observation.effective.ofType(dateTime)") == [("dateTime", "2024-05-01")]


def test_a_primitive_array_skips_the_nulls_that_pair_with_extensions() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["Anna", None, "Maria"]}]}
    assert evaluate("Patient.name.given", patient, "Patient") == [
        ("string", "Anna"),
        ("string", "Maria"),
    ]


def test_a_union_concatenates_its_branches() -> None:
    assert evaluate("Observation.code | Observation.component.code") == [
        ("CodeableConcept", OBSERVATION["code"]),
        ("CodeableConcept", {"text": "systolic"}),
        ("CodeableConcept", {"text": "note"}),
    ]


def test_resolve_is_filters_references_by_the_type_they_name() -> None:
    assert evaluate("Observation.performer.where(resolve() is Patient)") == [
        ("Reference", {"reference": "https://example.org/fhir/Patient/p2/_history/3"})
    ]
    assert evaluate("Observation.subject.where(resolve() is Patient)") == [
        ("Reference", {"reference": "Patient/p1"})
    ]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "Patient"),
        ("Patient/p1/_history/2", "Patient"),
        ("http://example.org/fhir/Patient/p1", "Patient"),
        ("#p1", None),
        ("urn:uuid:0b3d2b35-6c8c-4a0b-9b5a-3c2e4d9f1a01", None),
        (None, None),
    ],
)
def test_reference_type_reads_literal_references(reference: str | None, expected: str) -> None:
    assert reference_type(reference) == expected


def test_where_compares_a_single_valued_element_with_a_literal() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
    }
    assert evaluate("Patient.telecom.where(system='email')", patient, "Patient") == [
        ("ContactPoint", {"system": "email", "value": "a@b"})
    ]


def test_where_over_a_repeating_element_is_left_to_fhirpathpy() -> None:
    # FHIRPath `=` compares whole collections, which the fast path does not model.
    assert compiled("Observation.category.where(coding.code='vital-signs')").path == "fhirpathpy"


def test_exists_is_a_boolean() -> None:
    assert evaluate("Observation.value.exists()") == [("boolean", True)]
    assert evaluate("Observation.note.exists()") == [("boolean", False)]


def test_extensions_are_selected_by_url() -> None:
    expected = [("integer", 3)]
    assert evaluate("Observation.extension('http://example.org/level').value") == expected
    assert evaluate("Observation.extension.where(url='http://example.org/level').value") == expected


def test_a_contained_or_bundled_resource_is_typed_by_its_resource_type() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "entry": [{"resource": {"resourceType": "Composition", "id": "c"}}],
    }
    assert evaluate("Bundle.entry[0].resource", bundle, "Bundle") == [
        ("Composition", {"resourceType": "Composition", "id": "c"})
    ]


def test_an_expression_compiles_relative_to_a_backbone_element() -> None:
    component = OBSERVATION["component"][0]
    result = compiled("value.ofType(Quantity)", "Observation.component")
    assert result.path == "fast"
    assert result.types == frozenset({"Quantity"})
    assert result.evaluate(component) == [("Quantity", {"value": 120, "unit": "mm[Hg]"})]


PATIENTS: list[dict[str, Any]] = [
    {"resourceType": "Patient"},
    {"resourceType": "Patient", "active": False, "gender": "female", "deceasedBoolean": False},
    {"resourceType": "Patient", "active": True, "gender": "male", "deceasedBoolean": True},
    {"resourceType": "Patient", "gender": "other", "deceasedDateTime": "2020-01-01"},
    {"resourceType": "Patient", "name": [{"given": ["Anna"]}, {"given": ["Eva", "Maria"]}]},
    {"resourceType": "Patient", "name": [{"given": ["Anna"]}], "birthDate": "1970-01-01"},
]


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.deceased.exists() and Patient.deceased != false",
        "Patient.deceased = true",
        "Patient.deceased != true",
        "Patient.active = false",
        "Patient.gender = 'female'",
        "Patient.gender != 'female'",
        "Patient.gender = false",
        "Patient.name = false",
        "Patient.name.given = 'Anna'",
        "Patient.name.given.first() = 'Anna'",
        "Patient.birthDate.exists() and Patient.active.exists()",
        "Patient.active.exists() and (Patient.gender = 'male')",
        "Patient.gender = 'male' and Patient.active = true",
        "Patient.name.exists() and Patient.deceased.exists() and Patient.active = false",
    ],
)
def test_comparisons_with_literals_and_and_agree_with_fhirpathpy(expression: str) -> None:
    fast = compiled(expression, "Patient")
    slow = compile_fhirpathpy(DEFINITIONS, expression, "Patient")
    assert fast.path == "fast"
    assert fast.types == frozenset({"boolean"})
    for patient in PATIENTS:
        assert fast.evaluate(patient) == slow.evaluate(patient), patient


@pytest.mark.parametrize(
    "expression",
    [
        # A date compares with a string as a point in time, which the fast path does not model.
        "Patient.birthDate = '1970-01-01'",
        # FHIRPath `and` needs single booleans; a path through an array may yield several.
        "Patient.communication.preferred and Patient.active.exists()",
        "Patient.name.given + 'x'",
    ],
)
def test_other_forms_fall_back_to_fhirpathpy(expression: str) -> None:
    result = compiled(expression, "Patient")
    assert result.path == "fhirpathpy"
    assert result.types is None


def test_fhirpathpy_resolves_references_like_the_fast_path() -> None:
    expression = "Observation.performer.where(resolve() is Patient)"
    slow: list[Node] = compile_fhirpathpy(DEFINITIONS, expression, "Observation").evaluate(
        OBSERVATION
    )
    assert slow == evaluate(expression)


@pytest.mark.parametrize(
    "expression", ["Observation.code.frobnicate()", "Observation.code.where(", "Observation..x"]
)
def test_what_neither_path_evaluates_is_unsupported(expression: str) -> None:
    with pytest.raises(Unsupported):
        compiled(expression)
