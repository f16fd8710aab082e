from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flode.fhir.definitions import Definitions

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = (REPO / ".." / "shared" / "fhir-r4").resolve()
BUNDLED = REPO / "src" / "flode" / "fhir" / "definitions"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason="the official definitions (../shared/fhir-r4) are not here"
)

DEFINITIONS = Definitions.load()


def test_knows_the_146_concrete_resource_types() -> None:
    assert len(DEFINITIONS.resource_types) == 146
    assert {"Patient", "Observation", "Bundle", "Parameters"} <= DEFINITIONS.resource_types
    assert not {"Resource", "DomainResource", "MetadataResource"} & DEFINITIONS.resource_types


@needs_official
def test_takes_the_resource_types_from_the_official_definitions() -> None:
    bundle = json.loads((OFFICIAL / "profiles-resources.json").read_text(encoding="utf-8"))
    definitions = [entry["resource"] for entry in bundle["entry"]]
    concrete = {
        sd["type"]
        for sd in definitions
        if sd["resourceType"] == "StructureDefinition"
        and sd["kind"] == "resource"
        and not sd["abstract"]
        and sd["fhirVersion"] == "4.0.1"
    }
    assert len(concrete) == 146
    assert concrete == DEFINITIONS.resource_types


def test_leaves_out_the_r4b_subscription_status_the_distribution_adds() -> None:
    assert "SubscriptionStatus" not in DEFINITIONS.resource_types
    assert "SubscriptionStatus" not in DEFINITIONS.nodes


def test_is_loaded_once_per_process() -> None:
    assert Definitions.load() is DEFINITIONS


def test_describes_every_resource_and_complex_datatype_as_a_node() -> None:
    assert DEFINITIONS.resource_types <= DEFINITIONS.nodes.keys()
    assert DEFINITIONS.datatypes <= DEFINITIONS.nodes.keys()
    assert {"HumanName", "Quantity", "Extension", "Narrative"} <= DEFINITIONS.datatypes


def test_an_element_is_an_array_exactly_when_its_max_is_not_one() -> None:
    name = DEFINITIONS.element("Patient.name")
    birth_date = DEFINITIONS.element("Patient.birthDate")
    assert (name.min, name.max, name.is_array, name.types) == (0, "*", True, ("HumanName",))
    assert (birth_date.max, birth_date.is_array, birth_date.types) == ("1", False, ("date",))


def test_knows_required_elements() -> None:
    assert DEFINITIONS.element("Observation.status").min == 1
    assert DEFINITIONS.element("Observation.code").min == 1
    assert DEFINITIONS.element("Observation.subject").min == 0


def test_expands_a_choice_element_into_one_json_property_per_type() -> None:
    value = DEFINITIONS.element("Observation.value[x]")
    assert value.is_choice
    assert {"Quantity", "string"} <= set(value.types)
    properties = DEFINITIONS.nodes["Observation"].properties
    assert properties["valueQuantity"].type == "Quantity"
    assert properties["valueQuantity"].element is value
    assert properties["valueString"].type == "string"
    assert not {"value[x]", "value"} & properties.keys()


def test_describes_backbone_elements_as_nodes_keyed_by_their_path() -> None:
    contact = DEFINITIONS.element("Patient.contact")
    assert contact.types == ("BackboneElement",)
    assert contact.node == "Patient.contact"
    assert "relationship" in DEFINITIONS.nodes["Patient.contact"].properties
    assert "modifierExtension" in DEFINITIONS.nodes["Patient.contact"].properties
    assert DEFINITIONS.element("Timing.repeat").node == "Timing.repeat"


def test_follows_content_references() -> None:
    item = DEFINITIONS.element("Questionnaire.item.item")
    assert item.content_reference == "#Questionnaire.item"
    assert item.node == "Questionnaire.item"
    assert DEFINITIONS.element("Questionnaire.item.item.linkId").min == 1


def test_types_resource_ids_as_id_and_element_ids_as_string_attributes() -> None:
    resource_id = DEFINITIONS.element("Patient.id")
    element_id = DEFINITIONS.element("Patient.contact.id")
    assert (resource_id.types, resource_id.attribute) == (("id",), False)
    assert (element_id.types, element_id.attribute) == (("string",), True)
    assert DEFINITIONS.element("Extension.url").attribute


def test_names_simple_quantity_choices_after_quantity() -> None:
    assert DEFINITIONS.constraints["SimpleQuantity"] == "Quantity"
    dose = DEFINITIONS.element("Dosage.doseAndRate.dose[x]")
    assert dose.types == ("Range", "SimpleQuantity")
    assert DEFINITIONS.nodes["Dosage.doseAndRate"].properties["doseQuantity"].type == (
        "SimpleQuantity"
    )
    assert DEFINITIONS.element("SimpleQuantity.comparator").max == "0"


def test_keeps_summary_and_modifier_flags() -> None:
    assert DEFINITIONS.element("Patient.active").summary
    assert DEFINITIONS.element("Patient.active").modifier
    assert not DEFINITIONS.element("Patient.photo").summary


def test_primitives_carry_their_json_type_and_spec_regex() -> None:
    primitives = DEFINITIONS.primitives
    assert primitives["boolean"].json_kind == "boolean"
    assert {primitives[n].json_kind for n in ("integer", "positiveInt", "decimal")} == {"number"}
    assert {primitives[n].json_kind for n in ("string", "code", "date", "uri")} == {"string"}
    assert primitives["id"].regex == r"[A-Za-z0-9\-\.]{1,64}"
    assert primitives["xhtml"].regex is None
    assert len(primitives) == 20


def test_looks_elements_up_through_complex_datatypes() -> None:
    family = DEFINITIONS.element("Patient.name.family")
    assert (family.path, family.types) == ("HumanName.family", ("string",))
    assert DEFINITIONS.element("Observation.component.code").min == 1


def test_an_unknown_path_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        DEFINITIONS.element("Patient.nickname")
    with pytest.raises(KeyError):
        DEFINITIONS.element("Patient.birthDate.year")
    with pytest.raises(KeyError):
        DEFINITIONS.element("Observation.value[x].value")


@needs_official
def test_the_bundled_files_are_what_the_generator_makes_of_the_official_ones(
    tmp_path: Path,
) -> None:
    generator = REPO / "tools" / "generate_definitions.py"
    subprocess.run(
        [sys.executable, str(generator), str(OFFICIAL), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.name for p in tmp_path.glob("*.json.gz"))
    assert generated == sorted(p.name for p in BUNDLED.glob("*.json.gz"))
    for name in generated:
        assert (tmp_path / name).read_bytes() == (BUNDLED / name).read_bytes(), name
