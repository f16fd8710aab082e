"""No path around the Swedish rules (docs/access-control.md): what a plain read hides stays
hidden in `_include`, `_revinclude`, chains, `_has`, history, `$everything` and bulk export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bulk.flow import kick_off, manifest, resources
from flode.config import Config

from .region import Region, observation, region_of
from .test_pdl import audit_of, ids, search, summary


@dataclass
class Blocked:
    """Patient `patient` with relationships to A1 and A2; `own` written by A1 (its hasMember
    names `observation`), `condition` and `observation` written by A2, whose data the patient
    blocked."""

    region: Region
    patient: str
    own: str
    condition: str
    observation: str

    @property
    def reader(self) -> httpx.AsyncClient:
        return self.region.clinician("A1")


@pytest.fixture
async def blocked(
    server: Any, test_config: Config, client: httpx.AsyncClient
) -> AsyncIterator[Blocked]:
    async for region in region_of(server, test_config, client):
        patient = await region.patient("p", family=f"Blockqvist{region.tag}")
        await region.encounter(patient, "A1")
        await region.encounter(patient, "A2")
        blocked = await region.post(observation(patient, "2339-0"), region.clinician("A2"))
        mine = observation(patient)
        mine["hasMember"] = [{"reference": f"Observation/{blocked['id']}"}]
        own = await region.post(mine, region.clinician("A1"))
        condition = await region.post(
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{patient}"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "35489007"}]},
            },
            region.clinician("A2"),
        )
        await region.consent(patient, "deny", "A2")
        yield Blocked(region, patient, own["id"], condition["id"], blocked["id"])


async def test_revinclude_leaves_out_blocked_data(blocked: Blocked) -> None:
    found = await search(
        blocked.reader,
        "Patient",
        _id=blocked.patient,
        _revinclude=["Condition:patient", "Observation:patient"],
    )
    assert ids(found, "Condition") == set()
    assert ids(found, "Observation") == {blocked.own}


async def test_include_leaves_out_blocked_data(blocked: Blocked) -> None:
    found = await search(
        blocked.reader, "Observation", _id=blocked.own, _include="Observation:has-member"
    )
    assert ids(found, "Observation") == {blocked.own}
    # The blocked unit itself sees what A1's Observation points at.
    theirs = await search(
        blocked.region.clinician("A2"),
        "Observation",
        _id=blocked.own,
        _include="Observation:has-member",
    )
    assert ids(theirs, "Observation") == {blocked.own, blocked.observation}


async def test_a_chain_does_not_search_through_blocked_data(blocked: Blocked) -> None:
    query = {"has-member:Observation.code": "2339-0", "patient": blocked.patient}
    assert ids(await search(blocked.reader, "Observation", **query)) == set()
    allowed = await search(blocked.region.clinician("A2"), "Observation", **query)
    assert ids(allowed) == {blocked.own}


async def test_has_does_not_reveal_blocked_data(blocked: Blocked) -> None:
    query = {"_has:Condition:patient:code": "35489007", "_id": blocked.patient}
    assert blocked.patient not in ids(await search(blocked.reader, "Patient", **query))
    allowed = await search(blocked.region.clinician("A2"), "Patient", **query)
    assert blocked.patient in ids(allowed)


async def test_the_history_of_blocked_data_is_refused(blocked: Blocked) -> None:
    response = await blocked.reader.get(f"Condition/{blocked.condition}/_history")
    assert response.status_code == 403
    version = await blocked.reader.get(f"Condition/{blocked.condition}/_history/1")
    assert version.status_code == 403


async def test_provenance_of_blocked_data_is_blocked_too(blocked: Blocked) -> None:
    found = await search(blocked.reader, "Provenance", target=f"Condition/{blocked.condition}")
    assert ids(found) == set()
    own = await search(blocked.reader, "Provenance", target=f"Observation/{blocked.own}")
    assert len(ids(own)) == 1


async def test_everything_leaves_out_blocked_data(blocked: Blocked) -> None:
    response = await blocked.reader.get(f"Patient/{blocked.patient}/$everything")
    assert response.status_code == 200, response.text
    found = ids(response.json())
    assert {blocked.own, blocked.patient} <= found
    assert not {blocked.condition, blocked.observation} & found
    logged = [summary(e)[0] for e in await audit_of(blocked.region, blocked.patient)]
    assert "everything" in logged


async def test_a_clinicians_export_leaves_out_blocked_data(blocked: Blocked) -> None:
    reader = blocked.reader
    status = await kick_off(reader, "Patient/$export", {"_type": "Observation,Condition"})
    found = {r["id"] for r in await resources(reader, await manifest(reader, status))}
    assert blocked.own in found
    assert not {blocked.condition, blocked.observation} & found
    logged = [summary(e)[0] for e in await audit_of(blocked.region, blocked.patient)]
    assert "export" in logged
