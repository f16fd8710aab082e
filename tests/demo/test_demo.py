"""The demo region `make run` seeds on first start."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flode.access import facts
from flode.auth.demo import demo_users
from flode.demo import demo_personnummer, demo_resources
from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator
from flode.store.params import date as date_rows

PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
HSA_ID = "urn:oid:1.2.752.29.4.19"
# SE + the catalogue owner's organisation number (VGR: 232100-0131) + "-" + [A-Za-z0-9]+
VGR_HSA_ID = re.compile(r"SE2321000131-[A-Za-z0-9]+")
SHARED_TEST_PERSONNUMMER = (
    Path(__file__).parents[2] / "../shared/data/personnummer/testpersonnummer-sample.txt"
)

RESOURCES = demo_resources()


def of_type(resource_type: str) -> list[dict[str, Any]]:
    return [r for r in RESOURCES if r["resourceType"] == resource_type]


def luhn_is_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value // 10 + value % 10
    return total % 10 == 0


def personnummer_of(patient: dict[str, Any]) -> str:
    (identifier,) = [i for i in patient["identifier"] if i["system"] == PERSONNUMMER]
    value: str = identifier["value"]
    return value


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


def test_the_demo_is_the_same_on_every_call() -> None:
    first = demo_resources()
    first[0]["meta"] = {"versionId": "1"}
    first[-1]["subject"]["reference"] = "Patient/changed"

    assert demo_resources() == RESOURCES
    assert json.dumps(demo_resources()) == json.dumps(RESOURCES)


def test_there_are_twelve_patients_each_identified_by_a_valid_test_personnummer() -> None:
    patients = of_type("Patient")

    assert len(patients) == 12
    for patient in patients:
        personnummer = personnummer_of(patient)
        assert re.fullmatch(r"(18|19|20)[0-9]{10}", personnummer), personnummer
        assert luhn_is_valid(personnummer[2:]), personnummer
    assert [personnummer_of(p) for p in patients] == demo_personnummer()


def test_the_personnummer_are_from_skatteverkets_published_test_set() -> None:
    if not SHARED_TEST_PERSONNUMMER.exists():
        pytest.skip("the shared test data is not checked out next to the repository")
    published = set(SHARED_TEST_PERSONNUMMER.read_text(encoding="utf-8").split())

    assert set(demo_personnummer()) <= published


def test_gender_and_birth_date_agree_with_the_personnummer() -> None:
    for patient in of_type("Patient"):
        personnummer = personnummer_of(patient)
        born = date(int(personnummer[:4]), int(personnummer[4:6]), int(personnummer[6:8]))
        serial_third_digit = int(personnummer[10])

        assert patient["birthDate"] == born.isoformat()
        assert patient["gender"] == ("male" if serial_third_digit % 2 else "female")


def test_both_sexes_and_all_ages_are_represented() -> None:
    patients = of_type("Patient")

    assert Counter(p["gender"] for p in patients) == {"male": 6, "female": 6}
    assert {p["birthDate"][:3] for p in patients} >= {"194", "195", "197", "198", "199", "201"}


def test_ids_are_unique_fixed_and_client_assigned() -> None:
    keys = [(r["resourceType"], r["id"]) for r in RESOURCES]

    assert len(keys) == len(set(keys))
    assert len({r["id"] for r in RESOURCES}) == len(RESOURCES)
    for resource in RESOURCES:
        assert re.fullmatch(r"vgr-[a-z0-9\-]{1,60}", resource["id"]), resource["id"]
        assert "meta" not in resource


def test_every_reference_resolves_to_a_resource_earlier_in_the_list() -> None:
    seen: set[str] = set()
    for resource in RESOURCES:
        for path, value in walk(resource):
            if path.endswith(".reference"):
                assert value in seen, f"{resource['id']}{path} = {value}"
        seen.add(f"{resource['resourceType']}/{resource['id']}")


def test_every_care_unit_is_part_of_the_care_provider_and_carries_an_hsa_id() -> None:
    (provider,) = [o for o in of_type("Organization") if "partOf" not in o]
    units = [o for o in of_type("Organization") if "partOf" in o]

    assert provider["name"] == "Västra Götalandsregionen"
    assert 3 <= len(units) <= 4
    for organization in [provider, *units]:
        (hsa,) = [i["value"] for i in organization["identifier"] if i["system"] == HSA_ID]
        assert VGR_HSA_ID.fullmatch(hsa), hsa
        assert len(hsa) <= 31, hsa
    for unit in units:
        assert unit["partOf"]["reference"] == f"Organization/{provider['id']}"


def test_every_practitioner_has_an_hsa_id_and_a_role_at_a_care_unit() -> None:
    units = {f"Organization/{o['id']}" for o in of_type("Organization") if "partOf" in o}
    roles = of_type("PractitionerRole")

    for practitioner in of_type("Practitioner"):
        (hsa,) = [i["value"] for i in practitioner["identifier"] if i["system"] == HSA_ID]
        assert VGR_HSA_ID.fullmatch(hsa), hsa
        reference = f"Practitioner/{practitioner['id']}"
        assert any(r["practitioner"]["reference"] == reference for r in roles)
    assert all(r["organization"]["reference"] in units for r in roles)


def test_every_patient_has_encounters_conditions_and_observations() -> None:
    def count(resource_type: str, patient: str) -> int:
        return sum(r["subject"]["reference"] == patient for r in of_type(resource_type))

    for patient in of_type("Patient"):
        reference = f"Patient/{patient['id']}"
        assert 1 <= count("Encounter", reference) <= 3
        assert 1 <= count("Condition", reference) <= 2
        assert count("Observation", reference) >= 2


def test_every_patient_has_an_ongoing_episode_of_care_that_gives_a_unit_a_care_relationship() -> (
    None
):
    units = {f"Organization/{u['id']}" for u in of_type("Organization") if "partOf" in u}
    episodes = of_type("EpisodeOfCare")
    for patient in of_type("Patient"):
        reference = f"Patient/{patient['id']}"
        assert any(e["patient"]["reference"] == reference for e in episodes), reference
    for episode in episodes:
        assert episode["status"] == "active"
        assert "end" not in episode["period"]
        assert episode["managingOrganization"]["reference"] in units
        # The access rules read the relationship from these rows (flode.access.facts).
        relation = facts.rows(episode)
        patient = episode["patient"]["reference"].removeprefix("Patient/")
        unit = episode["managingOrganization"]["reference"]
        assert relation[facts.TABLE] == [
            (facts.CARE_RELATION, patient, unit, date_rows.FIRST, date_rows.LAST)
        ]


def test_every_unit_with_patients_in_its_care_has_demo_staff_to_log_in_as() -> None:
    hsa = {f"Organization/{u['id']}": u["identifier"][0]["value"] for u in of_type("Organization")}
    staffed = {clinician.care_unit_hsa_id for clinician, _ in demo_users()}
    for episode in of_type("EpisodeOfCare"):
        assert hsa[episode["managingOrganization"]["reference"]] in staffed


def test_encounters_are_finished_or_in_progress_ambulatory_inpatient_or_emergency() -> None:
    for encounter in of_type("Encounter"):
        assert encounter["class"]["code"] in {"AMB", "IMP", "EMER"}
        assert encounter["status"] in {"finished", "in-progress"}
        assert ("end" in encounter["period"]) == (encounter["status"] == "finished")


def test_clinical_times_are_in_2025_or_2026_with_the_swedish_offset_of_the_day() -> None:
    stockholm = ZoneInfo("Europe/Stockholm")
    times = [
        value
        for resource in RESOURCES
        if resource["resourceType"] in {"Encounter", "Condition", "Observation"}
        for path, value in walk(resource)
        if path.endswith(("DateTime", "Date", ".start", ".end"))
    ]

    assert times
    for text in times:
        assert text[:4] in {"2025", "2026"}, text
        if "T" in text:
            moment = datetime.fromisoformat(text)
            assert moment.utcoffset() == moment.astimezone(stockholm).utcoffset(), text


def test_no_resource_holds_an_empty_string_object_or_array() -> None:
    for resource in RESOURCES:
        for path, value in walk(resource):
            assert value not in ("", [], {}, None), f"{resource['id']}{path}"


def test_every_demo_resource_is_valid_r4() -> None:
    validator = Validator(Definitions.load())

    problems = {r["id"]: validator.validate(r) for r in RESOURCES}

    assert {id_: issues for id_, issues in problems.items() if issues} == {}
