"""The Provenance Flöde writes for each write of patient data by a client (L11: who wrote each
entry and when, under which care unit; PDL 3:6). See docs/access-control.md for its shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flode.access.ownership import HSA_SYSTEM
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.dates import format_instant

PATIENT_EXTENSION = "http://flode.example.org/StructureDefinition/provenance-patient"
"""The patient whose data the target is: puts the Provenance in that patient's compartment, so
the access rules treat it like its target."""
CLIENT_SYSTEM = "http://flode.example.org/identifier/client-id"
COMMISSION_SYSTEM = "http://flode.example.org/CodeSystem/commission"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
# A Provenance or an AuditEvent is itself the record of who did what.
NOT_RECORDED = frozenset({"Provenance", "AuditEvent"})


def _hsa(value: str) -> dict[str, Any]:
    return {"identifier": {"system": HSA_SYSTEM, "value": value}}


def _kind(code: str) -> dict[str, Any]:
    return {"coding": [{"system": PARTICIPANT, "code": code}]}


def of_write(
    writer: RequestContext, target: str, recorded: datetime, activity: str
) -> dict[str, Any]:
    """The Provenance of one write: the author (the clinician, else the module) on behalf of
    the writer's care unit, and the module that sent it."""
    author: dict[str, Any] = {"type": _kind("author")}
    client = {"identifier": {"system": CLIENT_SYSTEM, "value": writer.client_id or "unknown"}}
    if writer.user_hsa_id:
        author["who"] = _hsa(writer.user_hsa_id)
        if writer.commission_hsa_id:
            code = {"system": COMMISSION_SYSTEM, "code": writer.commission_hsa_id}
            author["role"] = [{"coding": [code]}]
    else:
        author["who"] = client
    if writer.care_unit_hsa_id:
        author["onBehalfOf"] = _hsa(writer.care_unit_hsa_id)
    agents = [author]
    if writer.user_hsa_id:
        agents.append({"type": _kind("assembler"), "who": client})
    return {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": format_instant(recorded),
        "activity": {"coding": [{"system": OPERATION, "code": activity}]},
        "agent": agents,
    }


def patient_extension(patient: str) -> dict[str, Any]:
    return {"url": PATIENT_EXTENSION, "valueReference": {"reference": f"Patient/{patient}"}}


def stamped(record: dict[str, Any], id: str, last_updated: datetime) -> str:
    """Give the record its id and meta (version 1) in place; the JSON to store."""
    meta = {"versionId": "1", "lastUpdated": format_instant(last_updated), **record.get("meta", {})}
    ordered = {"resourceType": "Provenance", "id": id, "meta": meta}
    ordered.update((k, v) for k, v in record.items() if k not in ordered)
    record.clear()
    record.update(ordered)
    return json.dumps(record).decode()
