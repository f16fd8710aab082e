"""The few lookups the authorization server makes in the record: the patient a clinician picks
(by personnummer or id), the patient's encounters to pick one from, and the Practitioner behind
a clinician's HSA-id (the `fhirUser` claim). They go through the search interaction like any
other read."""

from __future__ import annotations

import re

import orjson

from flode.context import RequestContext
from flode.fhir.errors import FhirError
from flode.interactions.search import search
from flode.interactions.services import Services

PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
HSA_ID = "urn:oid:1.2.752.29.4.19"
_PERSONNUMMER = re.compile(r"^(\d{8})-?(\d{4})$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


async def _only(services: Services, resource_type: str, system: str, value: str) -> str | None:
    ctx = RequestContext.system("authorization")
    outcome = await search(
        services, ctx, resource_type, [("identifier", f"{system}|{value}"), ("_count", "2")]
    )
    # The Bundle may hold resources as raw JSON fragments: read it as a client would.
    body = orjson.loads(orjson.dumps(outcome.body or {}))
    found = [
        e["resource"]["id"]
        for e in body.get("entry", [])
        if e.get("resource", {}).get("resourceType") == resource_type
    ]
    return found[0] if len(found) == 1 else None


async def find_patient(services: Services, text: str) -> str | None:
    """The id of the one patient with personnummer `text` (12 digits), or with id `text`."""
    text = text.strip()
    match = _PERSONNUMMER.match(text)
    if match:
        return await _only(services, "Patient", PERSONNUMMER, match[1] + match[2])
    if _ID.match(text):
        version = await services.store.read("Patient", text)
        if version is not None and not version.deleted:
            return text
    return None


async def practitioner_of(services: Services, hsa_id: str) -> str | None:
    return await _only(services, "Practitioner", HSA_ID, hsa_id)


async def patient_exists(services: Services, id: str) -> bool:
    if not _ID.match(id):
        return False
    version = await services.store.read("Patient", id)
    return version is not None and not version.deleted


async def encounters_of(
    services: Services, ctx: RequestContext, patient: str
) -> list[tuple[str, str, str]]:
    """The patient's encounters that the clinician of `ctx` may see (the access rules apply
    and the search is logged, as any search of theirs), newest first: (id, what, details)."""
    params = [("subject", f"Patient/{patient}"), ("_count", "100")]
    try:
        outcome = await search(services, ctx, "Encounter", params)
    except FhirError:
        return []  # none they may see
    body = orjson.loads(orjson.dumps(outcome.body or {}))
    found = []
    encounters = [
        e["resource"]
        for e in body.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Encounter"
    ]
    encounters.sort(key=lambda e: str(e.get("period", {}).get("start", "")), reverse=True)
    for encounter in encounters:
        kind = encounter.get("class", {})
        start = str(encounter.get("period", {}).get("start", ""))[:10] or "no date"
        provider = encounter.get("serviceProvider", {})
        where = provider.get("display") or provider.get("identifier", {}).get("value") or ""
        what = next((t.get("text") for t in encounter.get("type", []) if t.get("text")), "")
        details = " · ".join(v for v in (what, where, encounter.get("status", "")) if v)
        found.append(
            (encounter["id"], f"{start} · {kind.get('display') or kind.get('code', '')}", details)
        )
    return found
