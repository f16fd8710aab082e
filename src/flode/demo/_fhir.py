"""Small builders for the FHIR datatypes the demo region is made of."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

HSA_ID = "urn:oid:1.2.752.29.4.19"
ORGANISATIONSNUMMER = "urn:oid:2.5.4.97"
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

Resource = dict[str, Any]


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if text is not None:
        value["text"] = text
    return value


def reference(resource: Resource, display: str | None = None) -> dict[str, str]:
    value = {"reference": f"{resource['resourceType']}/{resource['id']}"}
    if display is not None:
        value["display"] = display
    return value


def hsa_id(value: str) -> dict[str, Any]:
    """An HSA-id as the Swedish base profiles slice it: system and the fixed type PRN."""
    return {
        "use": "official",
        "type": concept(V2_0203, "PRN", "Provider number"),
        "system": HSA_ID,
        "value": value,
    }


def _last_sunday(year: int, month: int) -> date:
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - 6) % 7)


def swedish_time(local: datetime) -> str:
    """Format a wall-clock time in Sweden with its UTC offset (CEST from the last Sunday in
    March at 02:00 until the last Sunday in October at 03:00, CET otherwise)."""
    summer_starts = datetime.combine(_last_sunday(local.year, 3), datetime.min.time()).replace(
        hour=2
    )
    summer_ends = datetime.combine(_last_sunday(local.year, 10), datetime.min.time()).replace(
        hour=3
    )
    offset = "+02:00" if summer_starts <= local < summer_ends else "+01:00"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + offset
