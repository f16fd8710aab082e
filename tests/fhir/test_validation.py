from __future__ import annotations

from typing import Any

import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.json import Decimal, loads
from flode.fhir.validation import MAX_DEPTH, Validator

VALIDATOR = Validator(Definitions.load())

CODING = {"system": "http://loinc.org", "code": "29463-7"}
OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"coding": [CODING]}}


def problems(resource: Any) -> list[tuple[str, str]]:
    """(code, expression) of every issue; all issues are errors."""
    issues = VALIDATOR.validate(resource)
    assert all(issue.severity == "error" for issue in issues)
    return [(issue.code, ", ".join(issue.expression)) for issue in issues]


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def observation(**elements: Any) -> dict[str, Any]:
    return {**OBSERVATION, **elements}


def with_extension(**extension: Any) -> dict[str, Any]:
    return patient(extension=[{"url": "http://example.org/x", **extension}])


# resourceType


def test_accepts_a_resource_with_only_its_type() -> None:
    assert problems({"resourceType": "Patient"}) == []


def test_requires_a_resource_type() -> None:
    assert problems({"id": "a"}) == [("required", "resourceType")]


def test_rejects_an_unknown_resource_type() -> None:
    assert problems({"resourceType": "Patiant"}) == [("invalid", "resourceType")]


@pytest.mark.parametrize("abstract", ["Resource", "DomainResource", "MetadataResource"])
def test_rejects_abstract_resource_types(abstract: str) -> None:
    assert problems({"resourceType": abstract}) == [("invalid", "resourceType")]


def test_rejects_a_resource_type_that_is_not_a_string() -> None:
    assert problems({"resourceType": ["Patient"]}) == [("invalid", "resourceType")]


def test_rejects_a_resource_that_is_not_a_json_object() -> None:
    assert problems(["Patient"]) == [("invalid", "")]


# Unknown elements


def test_rejects_an_unknown_element_with_its_location() -> None:
    resource = patient(name=[{"family": "Chalmers"}, {"family": "Windsor", "nickname": "Jim"}])
    issues = VALIDATOR.validate(resource)
    assert [(i.code, i.expression) for i in issues] == [
        ("structure", ("Patient.name[1].nickname",))
    ]
    assert "nickname" in issues[0].diagnostics


def test_rejects_an_unknown_element_at_the_root() -> None:
    assert problems(patient(nickname="Jim")) == [("structure", "Patient.nickname")]


def test_rejects_a_misspelt_choice_type() -> None:
    assert problems(observation(valueFoo="x")) == [("structure", "Observation.valueFoo")]


def test_rejects_a_choice_element_by_its_bare_or_declared_name() -> None:
    assert problems(observation(value="x")) == [("structure", "Observation.value")]
    assert problems(observation(**{"value[x]": "x"})) == [("structure", "Observation.value[x]")]


def test_rejects_a_resource_type_inside_an_element() -> None:
    resource = patient(name=[{"resourceType": "HumanName", "family": "Chalmers"}])
    assert problems(resource) == [("structure", "Patient.name[0].resourceType")]


def test_reports_every_problem_in_document_order() -> None:
    resource = patient(a=1, gender=True, name=[{"b": 2}], birthDate="1974-13-01")
    assert problems(resource) == [
        ("structure", "Patient.a"),
        ("value", "Patient.gender"),
        ("structure", "Patient.name[0].b"),
        ("value", "Patient.birthDate"),
    ]


# JSON types, arrays and single values


def test_rejects_a_single_object_where_the_element_repeats() -> None:
    assert problems(patient(name={"family": "Chalmers"})) == [("structure", "Patient.name")]


def test_rejects_a_single_primitive_where_the_element_repeats() -> None:
    resource = patient(name=[{"given": "Peter"}])
    assert problems(resource) == [("structure", "Patient.name[0].given")]


def test_rejects_an_array_where_the_element_does_not_repeat() -> None:
    resource = patient(maritalStatus=[{"text": "married"}])
    assert problems(resource) == [("structure", "Patient.maritalStatus")]


def test_rejects_an_array_for_a_single_primitive() -> None:
    assert problems(patient(gender=["male"])) == [("structure", "Patient.gender")]


def test_rejects_a_primitive_where_an_object_is_expected() -> None:
    assert problems(patient(maritalStatus="M")) == [("structure", "Patient.maritalStatus")]
    assert problems(patient(name=["Peter"])) == [("structure", "Patient.name[0]")]


def test_rejects_an_object_where_a_primitive_is_expected() -> None:
    assert problems(patient(gender={"value": "male"})) == [("structure", "Patient.gender")]


def test_rejects_a_string_for_a_boolean() -> None:
    assert problems(patient(active="true")) == [("value", "Patient.active")]


def test_rejects_a_number_for_a_string() -> None:
    assert problems(patient(name=[{"family": 42}])) == [("value", "Patient.name[0].family")]


def test_rejects_a_string_for_a_decimal() -> None:
    resource = observation(valueQuantity={"value": "6.3"})
    assert problems(resource) == [("value", "Observation.valueQuantity.value")]


# Empty values and null (json.html: no empty strings, arrays or objects)


def test_rejects_an_empty_object() -> None:
    assert problems(patient(maritalStatus={})) == [("structure", "Patient.maritalStatus")]
    assert problems(patient(name=[{}])) == [("structure", "Patient.name[0]")]


def test_rejects_an_empty_array() -> None:
    assert problems(patient(name=[])) == [("structure", "Patient.name")]
    assert problems(patient(name=[{"given": []}])) == [("structure", "Patient.name[0].given")]


def test_rejects_an_empty_string() -> None:
    assert problems(patient(gender="")) == [("value", "Patient.gender")]
    assert problems(patient(name=[{"text": ""}])) == [("value", "Patient.name[0].text")]


def test_rejects_null_for_a_single_element() -> None:
    assert problems(patient(gender=None)) == [("structure", "Patient.gender")]
    assert problems(patient(maritalStatus=None)) == [("structure", "Patient.maritalStatus")]


def test_rejects_null_in_an_array_of_objects() -> None:
    assert problems(patient(name=[None])) == [("structure", "Patient.name[0]")]


# Cardinality


def test_reports_each_missing_required_element() -> None:
    assert problems({"resourceType": "Observation"}) == [
        ("required", "Observation.status"),
        ("required", "Observation.code"),
    ]


def test_reports_missing_required_elements_of_backbone_elements() -> None:
    resource = observation(component=[{"code": {"text": "a"}}, {"valueString": "b"}])
    assert problems(resource) == [("required", "Observation.component[1].code")]


def test_reports_a_missing_required_choice_element_by_its_name() -> None:
    resource = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert problems(resource) == [("required", "MedicationRequest.medication")]
    resource["medicationReference"] = {"reference": "Medication/1"}
    assert problems(resource) == []


def test_a_required_primitive_may_be_present_by_its_extension_alone() -> None:
    reason = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
    absent = {"extension": [{"url": reason, "valueCode": "unknown"}]}
    resource = {"resourceType": "Observation", "_status": absent, "code": {"text": "a"}}
    assert problems(resource) == []


def test_rejects_a_comparator_on_a_simple_quantity() -> None:
    dose = {"doseQuantity": {"value": 1, "comparator": "<", "unit": "tablet"}}
    resource = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/1"},
        "dosageInstruction": [{"doseAndRate": [dose]}],
    }
    path = "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity.comparator"
    assert problems(resource) == [("structure", path)]
    del dose["doseQuantity"]["comparator"]
    assert problems(resource) == []


def test_accepts_a_comparator_on_a_quantity() -> None:
    assert problems(observation(valueQuantity={"value": 5, "comparator": "<"})) == []


# Choice types


@pytest.mark.parametrize(
    "variant",
    [
        {"valueString": "clear"},
        {"valueBoolean": False},
        {"valueInteger": 3},
        {"valueQuantity": {"value": Decimal("6.3"), "unit": "mmol/l"}},
        {"valueCodeableConcept": {"text": "positive"}},
        {"valuePeriod": {"start": "2013-04-02"}},
        {"valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1}},
    ],
)
def test_accepts_each_declared_type_of_a_choice_element(variant: dict[str, Any]) -> None:
    assert problems(observation(**variant)) == []


def test_rejects_a_type_the_choice_element_does_not_allow() -> None:
    assert problems(observation(valueUri="http://a")) == [("structure", "Observation.valueUri")]


def test_rejects_two_variants_of_one_choice_element() -> None:
    resource = observation(valueString="a", valueBoolean=True)
    issues = VALIDATOR.validate(resource)
    assert [(i.code, i.expression) for i in issues] == [
        ("structure", ("Observation.valueBoolean",))
    ]
    assert "valueString" in issues[0].diagnostics


def test_rejects_a_variant_next_to_the_extension_of_another() -> None:
    extension = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    resource = observation(valueString="a", _valueBoolean=extension)
    assert problems(resource) == [("structure", "Observation.valueBoolean")]


def test_accepts_a_variant_with_its_own_extension() -> None:
    extension = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert problems(observation(valueString="a", _valueString=extension)) == []


def test_names_constrained_variants_after_their_base_type() -> None:
    dose = {"doseSimpleQuantity": {"value": 1}}
    resource = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/1"},
        "dosage": [{"doseAndRate": [dose]}],
    }
    path = "MedicationStatement.dosage[0].doseAndRate[0].doseSimpleQuantity"
    assert problems(resource) == [("structure", path)]
    dose["doseQuantity"] = dose.pop("doseSimpleQuantity")
    assert problems(resource) == []


# Primitive formats (datatypes.html#primitive)

VALID_PRIMITIVES = [
    ("Boolean", True),
    ("Boolean", False),
    ("Integer", 0),
    ("Integer", -2147483648),
    ("Integer", 2147483647),
    ("PositiveInt", 1),
    ("PositiveInt", 2147483647),
    ("UnsignedInt", 0),
    ("Decimal", Decimal("1.50")),
    ("Decimal", Decimal("-0.001")),
    ("Decimal", Decimal("6.02e23")),
    ("Decimal", 3),
    ("String", "Peter James"),
    ("String", "two\nlines\tand a tab"),
    ("String", "Ärlig,\u00a0non-breaking"),
    ("String", "😀 "),
    ("Markdown", "# Title\n\n* item"),
    ("Code", "final"),
    ("Code", "a b"),
    ("Id", "a-Z.9"),
    ("Id", "x" * 64),
    ("Uri", "urn:oid:1.2.3"),
    ("Uri", "http://example.org/fhir"),
    ("Url", "https://example.org/a?b=c"),
    ("Canonical", "http://hl7.org/fhir/ValueSet/example|4.0.1"),
    ("Oid", "urn:oid:2.16.840.1.113883"),
    ("Uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
    ("Base64Binary", "aGVsbG8="),
    ("Base64Binary", "aGVs\nbG8g\r\nd29y bGQ="),
    ("Date", "2019"),
    ("Date", "2019-02"),
    ("Date", "2019-02-28"),
    ("Date", "2020-02-29"),
    ("DateTime", "2019"),
    ("DateTime", "2019-02-28"),
    ("DateTime", "2015-02-07T13:28:17-05:00"),
    ("DateTime", "2017-01-01T00:00:00.000Z"),
    ("Instant", "2015-02-07T13:28:17.239+02:00"),
    ("Time", "23:59:59"),
    ("Time", "10:30:00.5"),
]

INVALID_PRIMITIVES = [
    ("Boolean", "true"),
    ("Boolean", 1),
    ("Integer", Decimal("1.0")),
    ("Integer", 2147483648),
    ("Integer", True),
    ("Integer", "1"),
    ("PositiveInt", 0),
    ("UnsignedInt", -1),
    ("Decimal", "1.5"),
    ("Decimal", True),
    ("Decimal", float("nan")),
    ("String", ""),
    ("String", "bell\x07"),
    ("Markdown", ""),
    ("Code", " leading"),
    ("Code", "trailing "),
    ("Code", "two  spaces"),
    ("Id", "a_b"),
    ("Id", "x" * 65),
    ("Uri", "has space"),
    ("Uri", ""),
    ("Url", "http://a b"),
    ("Oid", "1.2.3"),
    ("Uuid", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"),
    ("Uuid", "c757873d-ec9a-4326-a141-556f43239520"),
    ("Base64Binary", "abc"),
    ("Base64Binary", "ab*c"),
    ("Base64Binary", "aG\nVsbG8="),
    ("Date", "2019-13-01"),
    ("Date", "2019-02-30"),
    ("Date", "2019-02-29"),
    ("Date", "2019-1-01"),
    ("Date", "19"),
    ("Date", "2019-02-28T10:00:00Z"),
    ("Date", 2019),
    ("DateTime", "2019-02-28T10:00"),
    ("DateTime", "2019-02-28T10:00:00"),
    ("DateTime", "2019-02-28 10:00:00Z"),
    ("DateTime", "2019-04-31T10:00:00Z"),
    ("Instant", "2019-02-28"),
    ("Instant", "2019-02-28T10:00:00"),
    ("Time", "24:00:00"),
    ("Time", "10:30"),
]


@pytest.mark.parametrize(("type_name", "value"), VALID_PRIMITIVES)
def test_accepts_a_valid_primitive_value(type_name: str, value: Any) -> None:
    assert problems(with_extension(**{f"value{type_name}": value})) == []


@pytest.mark.parametrize(("type_name", "value"), INVALID_PRIMITIVES)
def test_rejects_an_invalid_primitive_value(type_name: str, value: Any) -> None:
    resource = with_extension(**{f"value{type_name}": value})
    assert problems(resource) == [("value", f"Patient.extension[0].value{type_name}")]


def test_checks_every_item_of_a_primitive_array() -> None:
    resource = patient(name=[{"given": ["Peter", "", "James", 7]}])
    assert problems(resource) == [
        ("value", "Patient.name[0].given[1]"),
        ("value", "Patient.name[0].given[3]"),
    ]


def test_resource_ids_follow_the_id_format() -> None:
    assert problems(patient(id="a-Z.9")) == []
    assert problems(patient(id="a_b")) == [("value", "Patient.id")]
    assert problems(patient(id="x" * 65)) == [("value", "Patient.id")]


def test_element_ids_are_any_string() -> None:
    assert problems(patient(name=[{"id": "name #1", "family": "Chalmers"}])) == []


def test_decimals_keep_the_number_as_written() -> None:
    resource = loads(
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "a"},'
        b' "valueQuantity": {"value": 6.30}}'
    )
    assert problems(resource) == []
    assert resource["valueQuantity"]["value"].text == "6.30"


def test_rejects_a_decimal_number_in_an_integer_element() -> None:
    resource = loads(b'{"resourceType": "Patient", "multipleBirthInteger": 2.0}')
    assert problems(resource) == [("value", "Patient.multipleBirthInteger")]


def test_rejects_a_boolean_in_a_decimal_element() -> None:
    resource = observation(valueQuantity={"value": False})
    assert problems(resource) == [("value", "Observation.valueQuantity.value")]


# Narrative


def test_accepts_narrative_in_a_div() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter</p></div>'
    assert problems(patient(text={"status": "generated", "div": div})) == []


def test_rejects_narrative_that_is_not_a_div() -> None:
    resource = patient(text={"status": "generated", "div": "<p>Peter</p>"})
    assert problems(resource) == [("value", "Patient.text.div")]
    resource = patient(text={"status": "generated", "div": 1})
    assert problems(resource) == [("value", "Patient.text.div")]


def test_narrative_requires_its_status_and_div() -> None:
    assert problems(patient(text={"div": "<div>Peter</div>"})) == [
        ("required", "Patient.text.status")
    ]


def test_narrative_carries_no_extensions_on_its_div() -> None:
    text = {"status": "generated", "div": "<div>x</div>", "_div": {"id": "a"}}
    assert problems(patient(text=text)) == [("structure", "Patient.text._div")]


# Extensions


def test_accepts_extensions_of_every_kind_of_value() -> None:
    resource = patient(
        extension=[
            {"url": "http://example.org/a", "valueCodeableConcept": {"text": "a"}},
            {"url": "http://example.org/b", "valueReference": {"reference": "Patient/1"}},
            {"url": "http://example.org/c", "extension": [{"url": "d", "valueString": "e"}]},
        ],
        modifierExtension=[{"url": "http://example.org/f", "valueBoolean": True}],
    )
    assert problems(resource) == []


def test_an_extension_requires_its_url() -> None:
    assert problems(patient(extension=[{"valueString": "a"}])) == [
        ("required", "Patient.extension[0].url")
    ]
    assert problems(patient(modifierExtension=[{"valueString": "a"}])) == [
        ("required", "Patient.modifierExtension[0].url")
    ]


def test_an_extension_value_must_be_one_of_the_allowed_types() -> None:
    resource = with_extension(valueXhtml="<div/>")
    assert problems(resource) == [("structure", "Patient.extension[0].valueXhtml")]


def test_extensions_are_validated_inside_complex_elements() -> None:
    resource = patient(name=[{"extension": [{"url": "http://example.org/a", "valueDate": "x"}]}])
    assert problems(resource) == [("value", "Patient.name[0].extension[0].valueDate")]


def test_an_extension_url_carries_no_extensions() -> None:
    resource = with_extension(valueString="a", _url={"id": "b"})
    assert problems(resource) == [("structure", "Patient.extension[0]._url")]


# Primitive extensions (json.html#primitive)

BIRTH_TIME = {
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1974-12-25T14:35:45-05:00",
        }
    ]
}
SYLLABLES = {"extension": [{"url": "http://example.org/syllables", "valueInteger": 2}]}


def test_accepts_the_id_and_extensions_of_a_primitive() -> None:
    assert problems(patient(birthDate="1974-12-25", _birthDate=BIRTH_TIME)) == []
    assert problems(patient(birthDate="1974-12-25", _birthDate={"id": "b"})) == []


def test_accepts_a_primitive_extension_without_a_value() -> None:
    assert problems(patient(_birthDate=BIRTH_TIME)) == []


def test_checks_the_extensions_of_a_primitive() -> None:
    resource = patient(_birthDate={"extension": [{"valueString": "a"}]})
    assert problems(resource) == [("required", "Patient.birthDate.extension[0].url")]


def test_rejects_anything_but_id_and_extension_in_a_primitive_extension() -> None:
    resource = patient(birthDate="1974-12-25", _birthDate={"value": "1974-12-25"})
    assert problems(resource) == [("structure", "Patient.birthDate.value")]


def test_rejects_a_primitive_extension_that_is_not_an_object() -> None:
    assert problems(patient(_birthDate=[BIRTH_TIME])) == [("structure", "Patient.birthDate")]
    assert problems(patient(_birthDate={})) == [("structure", "Patient.birthDate")]


def test_rejects_extensions_of_an_unknown_or_complex_element() -> None:
    assert problems(patient(_nickname=BIRTH_TIME)) == [("structure", "Patient._nickname")]
    assert problems(patient(_name=BIRTH_TIME)) == [("structure", "Patient._name")]


def test_aligns_repeating_primitives_and_their_extensions_with_nulls() -> None:
    name = {"given": ["Peter", None, "James"], "_given": [None, SYLLABLES, SYLLABLES]}
    assert problems(patient(name=[name])) == []


def test_accepts_extensions_of_a_repeating_primitive_without_values() -> None:
    assert problems(patient(name=[{"_given": [SYLLABLES, SYLLABLES]}])) == []


def test_rejects_a_null_value_without_an_extension() -> None:
    assert problems(patient(name=[{"given": [None, "James"]}])) == [
        ("structure", "Patient.name[0].given[0]")
    ]
    name = {"given": [None, "James"], "_given": [None, SYLLABLES]}
    assert problems(patient(name=[name])) == [("structure", "Patient.name[0].given[0]")]


def test_rejects_a_null_extension_without_a_value() -> None:
    assert problems(patient(name=[{"_given": [None, SYLLABLES]}])) == [
        ("structure", "Patient.name[0].given[0]")
    ]


def test_rejects_extension_arrays_that_do_not_align_with_their_values() -> None:
    name = {"given": ["Peter", "James"], "_given": [SYLLABLES]}
    assert problems(patient(name=[name])) == [("structure", "Patient.name[0].given")]


def test_rejects_a_single_extension_object_for_a_repeating_primitive() -> None:
    name = {"given": ["Peter"], "_given": SYLLABLES}
    assert problems(patient(name=[name])) == [("structure", "Patient.name[0]._given")]


def test_rejects_extension_array_items_that_are_not_objects() -> None:
    name = {"given": ["Peter"], "_given": ["two"]}
    assert problems(patient(name=[name])) == [("structure", "Patient.name[0].given[0]")]


# Contained and nested resources


MEDICATION = {"resourceType": "Medication", "id": "med", "code": {"text": "aspirin"}}


def test_validates_contained_resources_as_resources() -> None:
    assert problems(patient(contained=[MEDICATION])) == []
    bad = {**MEDICATION, "strength": "100 mg"}
    assert problems(patient(contained=[MEDICATION, bad])) == [
        ("structure", "Patient.contained[1].strength")
    ]


def test_a_contained_resource_needs_a_known_resource_type() -> None:
    assert problems(patient(contained=[{"id": "a"}])) == [
        ("required", "Patient.contained[0].resourceType")
    ]
    assert problems(patient(contained=[{"resourceType": "Medicine"}])) == [
        ("invalid", "Patient.contained[0].resourceType")
    ]


def test_contained_is_an_array_of_objects() -> None:
    assert problems(patient(contained=MEDICATION)) == [("structure", "Patient.contained")]
    assert problems(patient(contained=["Medication"])) == [("structure", "Patient.contained[0]")]


def test_validates_the_resources_of_a_bundle() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": patient(birthDate="1974-12-25")},
            {"resource": patient(birthDate="1974-12-32")},
            {"resource": {**OBSERVATION, "status": None}},
        ],
    }
    assert problems(bundle) == [
        ("value", "Bundle.entry[1].resource.birthDate"),
        ("structure", "Bundle.entry[2].resource.status"),
    ]


def test_validates_resources_nested_in_nested_resources() -> None:
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "a"}}]}
    outer = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": inner}]}
    path = "Bundle.entry[0].resource.entry[0].resource.resourceType"
    assert problems(outer) == [("required", path)]


def test_an_element_of_a_specific_resource_type_accepts_only_that_type() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    entry = {"response": {"status": "200", "outcome": outcome}}
    bundle = {"resourceType": "Bundle", "type": "batch-response", "entry": [entry]}
    assert problems(bundle) == []
    entry["response"]["outcome"] = patient()
    assert problems(bundle) == [("invalid", "Bundle.entry[0].response.outcome.resourceType")]


def test_validates_resources_in_parameters() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "count", "valueInteger": 3},
            {"name": "patient", "resource": patient(gender=1)},
        ],
    }
    assert problems(parameters) == [("value", "Parameters.parameter[1].resource.gender")]


def test_follows_content_references_into_repeating_structures() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "1.1", "type": "string", "item": [{"type": "display"}]}],
            }
        ],
    }
    assert problems(questionnaire) == [("required", "Questionnaire.item[0].item[0].item[0].linkId")]


def test_reports_documents_nested_too_deep_instead_of_recursing() -> None:
    extension: dict[str, Any] = {"url": "http://example.org/a", "valueString": "b"}
    for _ in range(MAX_DEPTH + 10):
        extension = {"url": "http://example.org/a", "extension": [extension]}
    path = "Patient" + ".extension[0]" * (MAX_DEPTH + 1)
    assert problems(patient(extension=[extension])) == [("structure", path)]
