"""Protected identity (DOMAIN.md L13) without a server: who sees a protected patient
(`sees_protected`), what masking removes and keeps, and the fast path that leaves ordinary
resources as they are stored."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from flode.access.protected import (
    MASK_ALL,
    MASKED,
    MASKED_NAME,
    UNMASKED,
    Masking,
    labelled,
    mask,
    own_patient,
    sees_protected,
)
from flode.config import Config
from flode.context import RequestContext
from flode.store.records import Version

LABEL = {
    "system": "http://electronichealth.se/CodeSystem/SecurityLabel",
    "code": "sekretessmarkering",
}
UNIT = "SE2321000016-SKYD"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"


def patient(id: str = "p1", label: bool = True) -> dict[str, Any]:
    found: dict[str, Any] = {
        "resourceType": "Patient",
        "id": id,
        "meta": {"versionId": "1", "security": [LABEL]} if label else {"versionId": "1"},
        "extension": [
            {"url": BIRTH_PLACE, "valueAddress": {"city": "Kiruna"}},
            {"url": "http://example.org/other", "valueString": "kept"},
        ],
        "identifier": [
            {"system": "http://electronichealth.se/identifier/personnummer", "value": "1"}
        ],
        "name": [{"family": "Svensson"}],
        "telecom": [{"system": "phone", "value": "070"}],
        "gender": "female",
        "birthDate": "1980-01-01",
        "address": [{"city": "Göteborg"}],
        "photo": [{"url": "http://example.org/photo"}],
        "contact": [{"name": {"family": "Svensson"}}],
        "text": {"status": "generated", "div": "<div>Svensson</div>"},
    }
    return found


def ctx(**values: Any) -> RequestContext:
    return RequestContext(request_id="test", base_url="http://x/fhir", **values)


def test_masking_replaces_the_name_and_removes_the_demographics_but_keeps_the_identifier() -> None:
    masked = mask(patient())
    assert masked["name"] == [MASKED_NAME]
    for element in ("telecom", "address", "photo", "contact", "text"):
        assert element not in masked
    assert masked["extension"] == [{"url": "http://example.org/other", "valueString": "kept"}]
    assert masked["identifier"] == patient()["identifier"]
    assert (masked["gender"], masked["birthDate"]) == ("female", "1980-01-01")
    assert masked["meta"]["security"] == [LABEL, MASKED]
    assert masked["meta"]["versionId"] == "1"


def test_masking_leaves_the_resource_it_was_given_unchanged() -> None:
    original = patient()
    before = copy.deepcopy(original)
    mask(original)
    assert original == before


def test_masking_twice_gives_the_same_resource_with_one_masked_label() -> None:
    once = mask(patient())
    assert mask(once) == once


def test_a_resource_without_the_label_is_the_same_object_after_masking() -> None:
    ordinary = patient(label=False)
    assert mask(ordinary) is ordinary
    observation = {"resourceType": "Observation", "id": "o", "status": "final"}
    assert mask(observation) is observation


def test_the_label_counts_only_in_meta_security_of_its_code_systems() -> None:
    assert labelled(patient())
    hl7se = {
        "system": "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel",
        "code": "skyddadFolkbokforing",
    }
    assert labelled({"meta": {"security": [hl7se]}})
    assert labelled({"meta": {"security": [LABEL | {"code": "protected-information"}]}})
    assert not labelled({"meta": {"tag": [LABEL]}})
    assert not labelled({"meta": {"security": [LABEL | {"system": "http://example.org"}]}})
    assert not labelled({"meta": {"security": [LABEL | {"code": "other"}]}})
    assert not labelled({"meta": "nonsense"})


def test_a_contained_patient_is_masked_by_its_own_label_or_its_containers() -> None:
    bare = {k: v for k, v in patient("c").items() if k != "meta"}
    observation = {"resourceType": "Observation", "id": "o", "contained": [bare, patient("d")]}
    masked = mask(observation)
    assert masked["contained"][0] == bare  # neither labelled
    assert masked["contained"][1]["name"] == [MASKED_NAME]
    covered = mask(observation | {"meta": {"security": [LABEL]}})
    assert all(c["name"] == [MASKED_NAME] for c in covered["contained"])


def test_a_patient_in_a_stored_bundle_is_masked_by_its_own_label_only() -> None:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"security": [LABEL]},
        "type": "collection",
        "entry": [{"resource": patient("a")}, {"resource": patient("b", label=False)}],
    }
    masked = mask(bundle)
    assert masked["entry"][0]["resource"]["name"] == [MASKED_NAME]
    assert masked["entry"][1] is bundle["entry"][1]


def test_an_ordinary_resource_is_handed_back_as_the_same_string_without_parsing() -> None:
    content = orjson.dumps(patient(label=False)).decode()
    assert MASK_ALL.text(content) is content
    version = Version("Patient", "p1", 1, datetime.now(UTC), "PUT", content)
    assert MASK_ALL.version(version) is version


def test_a_resource_that_only_mentions_a_label_code_is_handed_back_unchanged() -> None:
    mentioned = patient(label=False) | {"meta": {"tag": [LABEL]}}
    content = orjson.dumps(mentioned).decode()
    assert MASK_ALL.text(content) is content


def test_a_protected_patient_is_masked_in_stored_json_text() -> None:
    content = orjson.dumps(patient()).decode()
    assert orjson.loads(MASK_ALL.text(content)) == mask(patient())
    assert UNMASKED.text(content) is content


def test_flode_itself_sees_protected_patients() -> None:
    assert sees_protected(RequestContext.system("test"), ())


def test_a_care_unit_of_the_setting_sees_protected_patients_and_others_do_not() -> None:
    assert sees_protected(ctx(care_unit_hsa_id=UNIT), {UNIT})
    assert not sees_protected(ctx(care_unit_hsa_id="SE2321000016-ANNAN"), {UNIT})
    assert not sees_protected(ctx(scopes=frozenset({"system/*.cruds"})), {UNIT})


def test_a_patient_sees_their_own_record_and_no_other() -> None:
    me = ctx(patient="p1", scopes=frozenset({"patient/*.rs"}))
    assert own_patient(me) == "p1"
    assert sees_protected(me, (), "p1")
    assert not sees_protected(me, (), "p2")
    assert not sees_protected(me, ())
    masking = Masking.of(me, ())
    assert masking.resource(patient("p1"))["name"] == [{"family": "Svensson"}]
    assert masking.resource(patient("p2"))["name"] == [MASKED_NAME]


@pytest.mark.parametrize(
    "values",
    [
        # A clinician's app launched in the patient's context.
        {"patient": "p1", "scopes": frozenset({"patient/*.rs"}), "user_hsa_id": "SE-1"},
        {
            "patient": "p1",
            "scopes": frozenset({"patient/*.rs"}),
            "fhir_user": "http://x/fhir/Practitioner/d",
        },
        # A launch patient without patient/ scopes.
        {"patient": "p1", "scopes": frozenset({"user/*.rs"})},
    ],
)
def test_a_launch_patient_is_not_the_reader_unless_a_patient_reads_with_patient_scopes(
    values: dict[str, Any],
) -> None:
    assert own_patient(ctx(**values)) is None
    assert not sees_protected(ctx(**values), (), "p1")


def test_a_patient_user_with_a_fhir_user_of_their_own_is_the_reader() -> None:
    me = ctx(patient="p1", scopes=frozenset({"patient/*.rs"}), fhir_user="http://x/fhir/Patient/p1")
    assert own_patient(me) == "p1"


def test_the_allowed_care_units_come_from_flode_protected_identity_units(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "FLODE_PROTECTED_IDENTITY_UNITS", " SE2321000016-A, ,SE2321000016-B,SE2321000016-A"
    )
    assert Config().protected_identity_units == ("SE2321000016-A", "SE2321000016-B")
    monkeypatch.delenv("FLODE_PROTECTED_IDENTITY_UNITS")
    assert Config().protected_identity_units == ()
