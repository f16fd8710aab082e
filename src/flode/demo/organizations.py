"""The care provider (vårdgivare), its care units (vårdenheter) and the staff working there."""

from __future__ import annotations

from dataclasses import dataclass

from flode.demo._fhir import (
    ORGANISATIONSNUMMER,
    SNOMED,
    V2_0203,
    Resource,
    concept,
    hsa_id,
    reference,
)

ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"


def _address(lines: list[str], postal_code: str, city: str) -> list[Resource]:
    return [
        {
            "use": "work",
            "type": "both",
            "line": lines,
            "postalCode": postal_code,
            "city": city,
            "country": "SE",
        }
    ]


PROVIDER: Resource = {
    "resourceType": "Organization",
    "id": "vgr-organization-vgr",
    "identifier": [
        hsa_id("SE2321000131-E000000000001"),
        {
            "use": "official",
            "type": concept(V2_0203, "XX", "Organization identifier"),
            "system": ORGANISATIONSNUMMER,
            "value": "2321000131",
        },
    ],
    "active": True,
    "type": [concept(ORGANIZATION_TYPE, "prov", "Healthcare Provider", "Vårdgivare")],
    "name": "Västra Götalandsregionen",
    "alias": ["VGR"],
    "address": _address(["Regionens hus", "Östergatan 1"], "462 80", "Vänersborg"),
}


@dataclass(frozen=True)
class _Unit:
    key: str
    hsa: str
    name: str
    type_code: str
    type_display: str
    type_text: str
    lines: tuple[str, ...]
    postal_code: str
    city: str


_UNITS = (
    _Unit(
        "vc-halsan",
        "SE2321000131-E000000000101",
        "Vårdcentralen Hälsan Göteborg",
        "prov",
        "Healthcare Provider",
        "Vårdenhet, vårdcentral",
        ("Vasaplatsen 2",),
        "411 34",
        "Göteborg",
    ),
    _Unit(
        "akut-sahlgrenska",
        "SE2321000131-E000000000201",
        "Akutmottagningen Sahlgrenska",
        "dept",
        "Hospital Department",
        "Vårdenhet, akutmottagning",
        ("Sahlgrenska Universitetssjukhuset", "Blå stråket 5"),
        "413 45",
        "Göteborg",
    ),
    _Unit(
        "med-nal",
        "SE2321000131-E000000000301",
        "Medicinmottagningen NÄL Trollhättan",
        "dept",
        "Hospital Department",
        "Vårdenhet, specialistmottagning",
        ("Norra Älvsborgs Länssjukhus", "Lärketorpsvägen"),
        "461 85",
        "Trollhättan",
    ),
    _Unit(
        "med5-sas",
        "SE2321000131-E000000000401",
        "Medicinavdelning 5 SÄS Borås",
        "dept",
        "Hospital Department",
        "Vårdenhet, vårdavdelning",
        ("Södra Älvsborgs Sjukhus", "Brämhultsvägen 53"),
        "501 82",
        "Borås",
    ),
)

UNITS: dict[str, Resource] = {
    unit.key: {
        "resourceType": "Organization",
        "id": f"vgr-organization-{unit.key}",
        "identifier": [hsa_id(unit.hsa)],
        "active": True,
        "type": [concept(ORGANIZATION_TYPE, unit.type_code, unit.type_display, unit.type_text)],
        "name": unit.name,
        "address": _address(list(unit.lines), unit.postal_code, unit.city),
        "partOf": reference(PROVIDER, PROVIDER["name"]),
    }
    for unit in _UNITS
}


def unit_reference(key: str) -> dict[str, str]:
    unit = UNITS[key]
    return reference(unit, unit["name"])


@dataclass(frozen=True)
class _Staff:
    key: str
    hsa: str
    given: str
    family: str
    gender: str
    nurse: bool
    unit: str
    specialty: tuple[str, str] | None


_STAFF = (
    _Staff("lindqvist", "SE2321000131-P000000000111", "Anna", "Lindqvist", "female", False,
           "vc-halsan", ("394814009", "General practice")),
    _Staff("eklund", "SE2321000131-P000000000112", "Maria", "Eklund", "female", True,
           "vc-halsan", None),
    _Staff("johansson", "SE2321000131-P000000000121", "Erik", "Johansson", "male", False,
           "akut-sahlgrenska", ("773568002", "Emergency medicine")),
    _Staff("sandberg", "SE2321000131-P000000000122", "Mikael", "Sandberg", "male", True,
           "akut-sahlgrenska", None),
    _Staff("hakansson", "SE2321000131-P000000000131", "Per", "Håkansson", "male", False,
           "med-nal", ("419192003", "Internal medicine")),
    _Staff("bergstrom", "SE2321000131-P000000000141", "Ingrid", "Bergström", "female", False,
           "med5-sas", ("394802001", "General medicine")),
)  # fmt: skip


def _qualification(nurse: bool) -> Resource:
    if nurse:
        return {"code": concept(SNOMED, "224535009", "Registered nurse", "Sjuksköterska")}
    return {"code": concept(SNOMED, "309343006", "Physician", "Läkare")}


PRACTITIONERS: dict[str, Resource] = {
    staff.key: {
        "resourceType": "Practitioner",
        "id": f"vgr-practitioner-{number:02d}",
        "identifier": [hsa_id(staff.hsa)],
        "active": True,
        "name": [{"use": "official", "family": staff.family, "given": [staff.given]}],
        "gender": staff.gender,
        "qualification": [_qualification(staff.nurse)],
    }
    for number, staff in enumerate(_STAFF, start=1)
}


def practitioner_reference(key: str) -> dict[str, str]:
    staff = next(staff for staff in _STAFF if staff.key == key)
    return reference(PRACTITIONERS[key], f"{staff.given} {staff.family}")


def _role(number: int, staff: _Staff) -> Resource:
    role: Resource = {
        "resourceType": "PractitionerRole",
        "id": f"vgr-practitionerrole-{number:02d}",
        "active": True,
        "practitioner": practitioner_reference(staff.key),
        "organization": unit_reference(staff.unit),
        "code": [
            concept(PRACTITIONER_ROLE, "nurse", "Nurse", "Sjuksköterska")
            if staff.nurse
            else concept(PRACTITIONER_ROLE, "doctor", "Doctor", "Läkare")
        ],
    }
    if staff.specialty is not None:
        role["specialty"] = [concept(SNOMED, *staff.specialty)]
    return role


PRACTITIONER_ROLES: list[Resource] = [
    _role(number, staff) for number, staff in enumerate(_STAFF, start=1)
]
