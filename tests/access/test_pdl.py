"""The Swedish rules on reading patient data (DOMAIN.md L1, L7–L9, L11; docs/access-control.md),
walked through a region of two care providers, three care units and their clinicians."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flode.auth.local import issue_local
from flode.config import Config

from .region import Region, day, observation, region_of

UNIT_TAG = "http://flode.example.org/CodeSystem/care-unit"
PROVIDER_TAG = "http://flode.example.org/CodeSystem/care-provider"


@pytest.fixture
async def region(
    server: Any, test_config: Config, client: httpx.AsyncClient
) -> AsyncIterator[Region]:
    async for region in region_of(server, test_config, client):
        yield region


def ids(bundle: dict[str, Any], kind: str | None = None) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == kind
        or (kind is None and e["resource"]["resourceType"] != "OperationOutcome")
    }


def warnings(bundle: dict[str, Any]) -> list[str]:
    return [
        issue.get("diagnostics", "")
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "OperationOutcome"
        for issue in e["resource"]["issue"]
    ]


async def search(client: httpx.AsyncClient, url: str, **params: Any) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_write_records_the_writers_care_unit_and_provider_and_a_provenance(
    region: Region,
) -> None:
    patient = await region.in_care_at("A1")
    doctor = region.clinician("A1")
    written = await region.post(observation(patient), doctor)
    tags = {(t["system"], t["code"]) for t in written["meta"]["tag"]}
    assert (UNIT_TAG, region.hsa("A1")) in tags
    assert (PROVIDER_TAG, region.hsa("A")) in tags
    provenance = await search(doctor, "Provenance", target=f"Observation/{written['id']}")
    (record,) = [e["resource"] for e in provenance["entry"]]
    author = record["agent"][0]
    assert author["who"]["identifier"]["value"] == region.hsa("A") + "doc"
    assert author["onBehalfOf"]["identifier"]["value"] == region.hsa("A1")
    assert record["target"][0]["reference"] == f"Observation/{written['id']}/_history/1"


async def test_a_client_cannot_claim_another_units_ownership(region: Region) -> None:
    patient = await region.in_care_at("A1")
    claimed = observation(patient)
    claimed["meta"] = {"tag": [{"system": UNIT_TAG, "code": region.hsa("B1")}]}
    written = await region.post(claimed, region.clinician("A1"))
    units = [t["code"] for t in written["meta"]["tag"] if t["system"] == UNIT_TAG]
    assert units == [region.hsa("A1")]


async def test_an_update_keeps_the_first_writers_ownership(region: Region) -> None:
    patient = await region.in_care_at("A1", "A2")
    written = await region.post(observation(patient), region.clinician("A1"))
    written["status"] = "amended"
    del written["meta"]
    updated = await region.put(written, region.clinician("A2"))
    units = [t["code"] for t in updated["meta"]["tag"] if t["system"] == UNIT_TAG]
    assert units == [region.hsa("A1")]


async def test_a_clinician_without_a_care_relationship_is_refused_with_403(
    region: Region,
) -> None:
    patient = await region.in_care_at("A2")
    written = await region.post(observation(patient), region.clinician("A2"))
    response = await region.clinician("A1").get(f"Observation/{written['id']}")
    assert response.status_code == 403
    assert "care relationship" in response.json()["issue"][0]["diagnostics"]
    assert (await region.clinician("A1").get(f"Patient/{patient}")).status_code == 403
    found = await search(region.clinician("A1"), "Observation", patient=patient)
    assert ids(found, "Observation") == set()


async def test_a_finished_encounter_gives_a_relationship_for_the_configured_window(
    region: Region,
) -> None:
    recent, old = await region.patient("recent"), await region.patient("old")
    await region.encounter(recent, "A1", "finished", ended=-10)
    await region.encounter(old, "A1", "finished", ended=-40)
    doctor = region.clinician("A1")
    assert (await doctor.get(f"Patient/{recent}")).status_code == 200
    assert (await doctor.get(f"Patient/{old}")).status_code == 403


async def test_a_cancelled_encounter_gives_no_relationship(region: Region) -> None:
    patient = await region.patient("p")
    await region.encounter(patient, "A1", "cancelled")
    assert (await region.clinician("A1").get(f"Patient/{patient}")).status_code == 403


async def test_an_active_episode_of_care_gives_a_relationship(region: Region) -> None:
    patient = await region.patient("p")
    await region.put(
        {
            "resourceType": "EpisodeOfCare",
            "id": f"eoc-{region.tag}",
            "status": "active",
            "patient": {"reference": f"Patient/{patient}"},
            "managingOrganization": region.ref("A2"),
        }
    )
    assert (await region.clinician("A2").get(f"Patient/{patient}")).status_code == 200
    assert (await region.clinician("A1").get(f"Patient/{patient}")).status_code == 403


async def test_a_clinician_token_without_a_care_unit_reads_no_patient_data(
    region: Region,
) -> None:
    patient = await region.patient("p")
    doctor = region.clinician("A1")
    token = doctor.headers["Authorization"]
    bare = issue_local(
        region.config,
        region.root_url,
        ("user/*.cruds",),
        client_id="journal-under-test",
        context={"employee_hsa_id": region.hsa("A") + "doc"},
    )
    assert token != bare
    async with httpx.AsyncClient(
        base_url=region.server_base + "/", headers={"Authorization": f"Bearer {bare}"}
    ) as client:
        response = await client.get(f"Patient/{patient}")
        assert response.status_code == 403
        assert "care unit" in response.json()["issue"][0]["diagnostics"]
        # Data that is no patient's stays readable.
        assert (await client.get(f"Organization/{region.id('A1')}")).status_code == 200


async def test_units_of_one_provider_read_each_others_data(region: Region) -> None:
    patient = await region.in_care_at("A1", "A2")
    written = await region.post(observation(patient), region.clinician("A2"))
    assert (await region.clinician("A1").get(f"Observation/{written['id']}")).status_code == 200


async def test_a_block_hides_a_units_data_from_the_providers_other_units(
    region: Region,
) -> None:
    patient = await region.in_care_at("A1", "A2")
    own = await region.post(observation(patient), region.clinician("A1"))
    blocked = await region.post(observation(patient, "2339-0"), region.clinician("A2"))
    block = await region.consent(patient, "deny", "A2")
    reader = region.clinician("A1")
    response = await reader.get(f"Observation/{blocked['id']}")
    assert response.status_code == 403
    assert "blocked" in response.json()["issue"][0]["diagnostics"]
    found = await search(reader, "Observation", patient=patient)
    assert ids(found, "Observation") == {own["id"]}
    said = warnings(found)
    assert any("blocked" in text for text in said)
    assert not any(region.hsa("A2") in text or "A2" in text for text in said)
    # The blocked unit reads its own data.
    assert (await region.clinician("A2").get(f"Observation/{blocked['id']}")).status_code == 200
    # Revoking the block takes effect on the next request.
    consent = (await region.operator.get(f"Consent/{block}")).json()
    consent["status"] = "inactive"
    await region.put(consent)
    assert (await reader.get(f"Observation/{blocked['id']}")).status_code == 200


async def test_another_providers_data_needs_the_patients_consent(region: Region) -> None:
    patient = await region.in_care_at("A1", "B1")
    theirs = await region.post(observation(patient), region.clinician("B1"))
    reader = region.clinician("A1")
    response = await reader.get(f"Observation/{theirs['id']}")
    assert response.status_code == 403
    assert "consent" in response.json()["issue"][0]["diagnostics"]
    assert ids(await search(reader, "Observation", patient=patient)) == set()
    await region.consent(patient, "permit", "A")
    assert (await reader.get(f"Observation/{theirs['id']}")).status_code == 200
    assert ids(await search(reader, "Observation", patient=patient)) == {theirs["id"]}


async def test_a_consent_without_a_care_relationship_opens_nothing(region: Region) -> None:
    patient = await region.in_care_at("B1")
    theirs = await region.post(observation(patient), region.clinician("B1"))
    await region.consent(patient, "permit", "A")
    response = await region.clinician("A1").get(f"Observation/{theirs['id']}")
    assert response.status_code == 403


async def test_a_block_beats_a_consent(region: Region) -> None:
    patient = await region.in_care_at("A1", "B1")
    theirs = await region.post(observation(patient), region.clinician("B1"))
    await region.consent(patient, "permit", "A")
    await region.consent(patient, "deny", "B")
    response = await region.clinician("A1").get(f"Observation/{theirs['id']}")
    assert response.status_code == 403
    assert "blocked" in response.json()["issue"][0]["diagnostics"]


async def test_a_consent_counts_only_within_its_provision_period(region: Region) -> None:
    patient = await region.in_care_at("A1", "B1")
    theirs = await region.post(observation(patient), region.clinician("B1"))
    reader = region.clinician("A1")
    await region.consent(patient, "permit", "A", period={"start": day(-30), "end": day(-2)})
    await region.consent(patient, "permit", "A", period={"start": day(5)})
    assert (await reader.get(f"Observation/{theirs['id']}")).status_code == 403
    await region.consent(patient, "permit", "A", period={"start": day(-1), "end": day(10)})
    assert (await reader.get(f"Observation/{theirs['id']}")).status_code == 200


async def test_a_block_counts_only_within_its_provision_period(region: Region) -> None:
    patient = await region.in_care_at("A1", "A2")
    theirs = await region.post(observation(patient), region.clinician("A2"))
    reader = region.clinician("A1")
    await region.consent(patient, "deny", "A2", period={"start": day(-30), "end": day(-2)})
    assert (await reader.get(f"Observation/{theirs['id']}")).status_code == 200
    await region.consent(patient, "deny", "A2", period={"end": day(3)})
    response = await reader.get(f"Observation/{theirs['id']}")
    assert response.status_code == 403
    assert "blocked" in response.json()["issue"][0]["diagnostics"]


async def test_emergency_access_opens_data_without_relationship_or_consent(
    region: Region,
) -> None:
    patient = await region.in_care_at("B1")
    theirs = await region.post(observation(patient), region.clinician("B1"))
    emergency = region.clinician("A1", purpose="ETREAT", reason="unconscious at the ER")
    assert (await emergency.get(f"Observation/{theirs['id']}")).status_code == 200
    assert (await emergency.get(f"Patient/{patient}")).status_code == 200


async def test_an_emergency_purpose_without_a_reason_is_refused(region: Region) -> None:
    patient = await region.in_care_at("A1")
    response = await region.clinician("A1", purpose="BTG").get(f"Patient/{patient}")
    assert response.status_code == 403
    assert "reason" in response.json()["issue"][0]["diagnostics"]


async def test_blocked_data_opens_only_in_two_emergency_steps(region: Region) -> None:
    patient = await region.in_care_at("A2", "B1")
    blocked = await region.post(observation(patient), region.clinician("B1"))
    await region.consent(patient, "deny", "B1")
    emergency = region.clinician("A1", purpose="BTG", reason="cardiac arrest")
    assert (await emergency.get(f"Observation/{blocked['id']}")).status_code == 403
    # Step 1: where is blocked data?
    revealed = await emergency.get(f"Patient/{patient}/$emergency-reveal")
    assert revealed.status_code == 200, revealed.text
    holders = [
        p["valueIdentifier"]["value"]
        for p in revealed.json()["parameter"]
        if p["name"] == "blocked"
    ]
    assert holders == [region.hsa("B1")]
    assert (await emergency.get(f"Observation/{blocked['id']}")).status_code == 403
    # Step 2: open it.
    opened = await emergency.post(
        f"Patient/{patient}/$emergency-open",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "organization", "valueString": region.hsa("B1")}],
        },
    )
    assert opened.status_code == 200, opened.text
    assert (await emergency.get(f"Observation/{blocked['id']}")).status_code == 200
    # Another clinician's emergency access does not inherit the opening.
    other = region.clinician("A1", purpose="BTG", reason="cardiac arrest", name="nurse")
    assert (await other.get(f"Observation/{blocked['id']}")).status_code == 403


async def test_the_emergency_steps_need_an_emergency_purpose(region: Region) -> None:
    patient = await region.in_care_at("A1")
    doctor = region.clinician("A1")
    response = await doctor.get(f"Patient/{patient}/$emergency-reveal")
    assert response.status_code == 403
    opened = await doctor.post(
        f"Patient/{patient}/$emergency-open",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "organization", "valueString": region.hsa("A2")}],
        },
    )
    assert opened.status_code == 403


async def audit_of(region: Region, patient: str) -> list[dict[str, Any]]:
    """The access log entries of a patient, oldest first (read with the operator's token)."""
    found = await search(region.operator, "AuditEvent", patient=patient, _count="100")
    events = [e["resource"] for e in found.get("entry", [])]
    return sorted(events, key=lambda e: str(e["recorded"]))


def summary(event: dict[str, Any]) -> tuple[str, str, str, frozenset[str]]:
    """(interaction, outcome, user HSA-id, flags) of an AuditEvent."""
    user = next(
        (
            a["who"]["identifier"]["value"]
            for a in event["agent"]
            if a.get("who", {}).get("identifier", {}).get("system") == "urn:oid:1.2.752.29.4.19"
        ),
        "",
    )
    flags = frozenset(t["code"] for t in event.get("meta", {}).get("tag", []))
    return event["subtype"][0]["code"], event["outcome"], user, flags


async def test_every_access_leaves_an_entry_in_the_access_log(region: Region) -> None:
    patient = await region.in_care_at("A1")
    doctor = region.clinician("A1")
    written = await region.post(observation(patient), doctor)
    assert (await doctor.get(f"Observation/{written['id']}")).status_code == 200
    await search(doctor, "Observation", patient=patient)
    stranger = region.clinician("A2")
    assert (await stranger.get(f"Observation/{written['id']}")).status_code == 403
    emergency = region.clinician("A2", purpose="BTG", reason="unconscious", name="er")
    assert (await emergency.get(f"Observation/{written['id']}")).status_code == 200
    user = region.hsa("A") + "doc"
    entries = [summary(e) for e in await audit_of(region, patient)]
    assert ("create", "0", user, frozenset()) in entries
    assert ("read", "0", user, frozenset()) in entries
    assert ("search", "0", user, frozenset()) in entries
    assert ("read", "4", user, frozenset({"no-care-relationship"})) in entries
    assert ("read", "0", region.hsa("A") + "er", frozenset({"emergency"})) in entries


async def test_a_search_returning_two_patients_logs_one_entry_for_each(region: Region) -> None:
    first = await region.patient("first", family=f"Tvilling{region.tag}")
    second = await region.patient("second", family=f"Tvilling{region.tag}")
    for patient in (first, second):
        await region.encounter(patient, "A1")
    found = await search(region.clinician("A1"), "Patient", family=f"Tvilling{region.tag}")
    assert ids(found) == {first, second}
    for patient in (first, second):
        entries = [summary(e)[0] for e in await audit_of(region, patient)]
        assert entries.count("search") == 1


async def test_the_emergency_steps_are_logged_and_flagged(region: Region) -> None:
    patient = await region.in_care_at("B1")
    await region.post(observation(patient), region.clinician("B1"))
    await region.consent(patient, "deny", "B1")
    emergency = region.clinician("A1", purpose="ETREAT", reason="stroke")
    assert (await emergency.get(f"Patient/{patient}/$emergency-reveal")).status_code == 200
    opened = await emergency.post(
        f"Patient/{patient}/$emergency-open",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "organization", "valueString": region.hsa("B1")}],
        },
    )
    assert opened.status_code == 200
    entries = [summary(e) for e in await audit_of(region, patient)]
    kinds = {(kind, flags) for kind, _, _, flags in entries}
    assert ("emergency-reveal", frozenset({"emergency"})) in kinds
    assert ("emergency-open", frozenset({"emergency", "blocked-opened"})) in kinds


async def test_an_unknown_emergency_opening_is_refused(region: Region) -> None:
    patient = await region.patient("p")
    emergency = region.clinician("A1", purpose="ETREAT", reason="stroke")
    response = await emergency.post(
        f"Patient/{patient}/$emergency-open",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "organization", "valueString": region.hsa("B1")}],
        },
    )
    assert response.status_code == 400
    assert "$emergency-reveal" in response.json()["issue"][0]["diagnostics"]
    bad = await emergency.post(f"Patient/{patient}/$emergency-open", json={"parameter": []})
    assert bad.status_code == 400
    missing = await emergency.get("Patient/no-such-patient/$emergency-reveal")
    assert missing.status_code == 404


async def test_a_module_backends_write_is_owned_by_its_registered_unit(region: Region) -> None:
    patient = await region.patient("p")
    token = issue_local(
        region.config,
        region.root_url,
        ("system/*.cruds",),
        client_id="lab-under-test",
        context={
            "care_unit_hsa_id": region.hsa("A2"),
            "care_provider_hsa_id": region.hsa("A"),
        },
    )
    async with httpx.AsyncClient(
        base_url=region.server_base + "/", headers={"Authorization": f"Bearer {token}"}
    ) as lab:
        written = await region.post(observation(patient), lab)
        provenance = await search(lab, "Provenance", target=f"Observation/{written['id']}")
    units = [t["code"] for t in written["meta"]["tag"] if t["system"] == UNIT_TAG]
    assert units == [region.hsa("A2")]
    (record,) = [e["resource"] for e in provenance["entry"]]
    author = record["agent"][0]
    assert author["who"]["identifier"]["value"] == "lab-under-test"
    assert author["onBehalfOf"]["identifier"]["value"] == region.hsa("A2")
