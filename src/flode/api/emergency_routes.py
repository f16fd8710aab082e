"""`Patient/{id}/$emergency-reveal` and `Patient/{id}/$emergency-open`: the two steps of
emergency access to blocked data (flode.access.emergency; docs/access-control.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flode.access import emergency
from flode.access.ownership import HSA_SYSTEM
from flode.api import routes
from flode.api.body import read_json
from flode.api.responses import respond
from flode.audit import Access
from flode.fhir.dates import format_instant
from flode.fhir.errors import bad_request, not_found
from flode.interactions import logged
from flode.interactions.outcome import Outcome

OPENED = frozenset({"blocked-opened"})


def _parameters(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": parameters}


async def _patient(request: Request) -> str:
    patient = request.path_params["id"]
    if await routes.services_of(request).store.pk_of("Patient", patient) is None:
        raise not_found(f"Patient/{patient} is not known")
    return str(patient)


async def reveal(request: Request) -> Response:
    """Step 1: which care units and providers hold data of the patient blocked for you."""
    ctx = routes.context(request)
    emergency.require_emergency(ctx, "$emergency-reveal")
    patient = await _patient(request)
    services = routes.services_of(request)
    found = await emergency.holders(services.store.pool, ctx, patient)
    detail = "revealed " + (", ".join(found) or "nothing")
    await logged.record(services, ctx, [Access("emergency-reveal", "E", patient, detail=detail)])
    body = _parameters(
        [
            {"name": "blocked", "valueIdentifier": {"system": HSA_SYSTEM, "value": hsa}}
            for hsa in found
        ]
    )
    return respond(request, ctx, Outcome(200, body=body))


def _organization(body: Any) -> str:
    parameters = body.get("parameter") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("The body must be a Parameters resource naming the organization")
    for parameter in parameters if isinstance(parameters, list) else []:
        if isinstance(parameter, dict) and parameter.get("name") == "organization":
            value = parameter.get("valueString")
            identifier = parameter.get("valueIdentifier")
            if isinstance(identifier, dict):
                value = identifier.get("value")
            if isinstance(value, str) and value:
                return value
    raise bad_request(
        "Parameter 'organization' (the HSA-id of the care unit or provider whose blocked data "
        "to open) is required",
        "organization",
    )


async def open_blocked(request: Request) -> Response:
    """Step 2: open one holder's blocked data of the patient, for you, for a while."""
    ctx = routes.context(request)
    emergency.require_emergency(ctx, "$emergency-open")
    services = routes.services_of(request)
    config = routes.config_of(request)
    organization = _organization(await read_json(request, config.max_body_bytes))
    patient = await _patient(request)
    expires = await emergency.open_blocked(
        services.store.pool, ctx, patient, organization, config.emergency_opening_minutes
    )
    await logged.record(
        services,
        ctx,
        [Access("emergency-open", "E", patient, flags=OPENED, detail=f"opened {organization}")],
    )
    body = _parameters(
        [
            {
                "name": "organization",
                "valueIdentifier": {"system": HSA_SYSTEM, "value": organization},
            },
            {"name": "expires", "valueInstant": format_instant(expires)},
        ]
    )
    return respond(request, ctx, Outcome(200, body=body))


def emergency_routes() -> list[Route]:
    return [
        Route("/Patient/{id}/$emergency-reveal", reveal, methods=["GET"]),
        Route("/Patient/{id}/$emergency-open", open_blocked, methods=["POST"]),
    ]
