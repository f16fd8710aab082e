"""A small region for the Swedish access rules: two care providers, three care units, their
clinicians and patients with encounters — written with unique HSA-ids per test, so tests sharing
one server do not see each other's relationships."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from flode.auth.local import issue_local
from flode.config import Config

HSA = "urn:oid:1.2.752.29.4.19"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
USER_SCOPES = ("user/*.cruds",)


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).isoformat(timespec="seconds")


@dataclass
class Region:
    """Providers `A` (units A1, A2) and `B` (unit B1); Organization ids equal their keys plus
    the tag; `hsa[key]` is each one's HSA-id."""

    server_base: str
    root_url: str
    config: Config
    operator: httpx.AsyncClient
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def hsa(self, key: str) -> str:
        number = "2321000131" if key.startswith("A") else "5565594230"
        return f"SE{number}-{key}{self.tag}"

    def id(self, key: str) -> str:
        return f"{key.lower()}-{self.tag}"

    def ref(self, key: str) -> dict[str, str]:
        return {"reference": f"Organization/{self.id(key)}"}

    async def put(self, resource: dict[str, Any], client: httpx.AsyncClient | None = None) -> Any:
        client = client or self.operator
        response = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def post(self, resource: dict[str, Any], client: httpx.AsyncClient) -> Any:
        response = await client.post(resource["resourceType"], json=resource)
        assert response.status_code == 201, response.text
        return response.json()

    async def build(self) -> None:
        for key, part_of in (("A", None), ("B", None), ("A1", "A"), ("A2", "A"), ("B1", "B")):
            organization: dict[str, Any] = {
                "resourceType": "Organization",
                "id": self.id(key),
                "identifier": [{"system": HSA, "value": self.hsa(key)}],
                "name": f"Unit {key}",
            }
            if part_of:
                organization["partOf"] = self.ref(part_of)
            await self.put(organization)

    async def patient(self, key: str, family: str = "Andersson") -> str:
        id = f"{key}-{self.tag}"
        await self.put({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
        return id

    async def in_care_at(self, *units: str, key: str = "p") -> str:
        """A patient (`key`) with an encounter in progress at each of `units`: each of them has
        a care relationship with the patient. The patient's id."""
        patient = await self.patient(key)
        for unit in units:
            await self.encounter(patient, unit)
        return patient

    async def encounter(
        self, patient: str, unit: str, status: str = "in-progress", ended: int | None = None
    ) -> str:
        id = f"enc-{uuid.uuid4().hex[:12]}"
        encounter: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": id,
            "status": status,
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": {"reference": f"Patient/{patient}"},
            "serviceProvider": self.ref(unit),
        }
        if ended is not None:
            encounter["period"] = {"start": day(ended - 1), "end": day(ended)}
        await self.put(encounter)
        return id

    async def consent(
        self,
        patient: str,
        kind: str,
        organization: str,
        status: str = "active",
        period: dict[str, str] | None = None,
    ) -> str:
        """A consent (`permit`: the provider `organization` may read) or a block (`deny`: the
        data of unit or provider `organization` is blocked), for `period` if given."""
        id = f"consent-{uuid.uuid4().hex[:12]}"
        role = "IRCP" if kind == "permit" else "CST"
        provision: dict[str, Any] = {
            "type": kind,
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": role}]},
                    "reference": self.ref(organization),
                }
            ],
        }
        if kind == "permit":
            provision["purpose"] = [{"system": ACT_REASON, "code": "TREAT"}]
        if period is not None:
            provision["period"] = period
        await self.put(
            {
                "resourceType": "Consent",
                "id": id,
                "status": status,
                "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{patient}"},
                "policyRule": {"coding": [{"system": ACT_REASON, "code": "TREAT"}]},
                "provision": provision,
            }
        )
        return id

    def clinician(
        self,
        unit: str,
        *,
        purpose: str = "TREAT",
        reason: str | None = None,
        name: str = "doc",
        scopes: tuple[str, ...] = USER_SCOPES,
    ) -> httpx.AsyncClient:
        provider = unit[0]
        context = {
            "employee_hsa_id": f"{self.hsa(provider)}{name}",
            "commission_hsa_id": f"{self.hsa(provider)}c{name}",
            "care_unit_hsa_id": self.hsa(unit),
            "care_provider_hsa_id": self.hsa(provider),
            "purpose_of_use": purpose,
        }
        if reason:
            context["emergency_reason"] = reason
        token = issue_local(
            self.config, self.root_url, scopes, client_id="journal-under-test", context=context
        )
        client = httpx.AsyncClient(
            base_url=self.server_base + "/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def region_of(
    server: Any, test_config: Config, operator: httpx.AsyncClient
) -> AsyncIterator[Region]:
    region = Region(server.base_url, server.root_url, test_config, operator)
    await region.build()
    try:
        yield region
    finally:
        await region.close()


def observation(patient: str, code: str = "8867-4") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
