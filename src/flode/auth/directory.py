"""The few lookups the authorization server makes in the record: the patient a clinician picks
(by personnummer or id) and the Practitioner behind a clinician's HSA-id (the `fhirUser`
claim). They go through the search interaction like any other read."""

from __future__ import annotations

import re

import orjson

from flode.context import RequestContext
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
