"""`$reindex`: index the stored resources again, in the background, after search parameters
changed (docs/search.md, "Custom search parameters").

`POST [base]/$reindex` (every type) or `POST [base]/{type}/$reindex` starts a job and answers
202 with `Content-Location` naming its status: `GET [base]/$reindex/{id}` reports progress
(`X-Progress` too), `DELETE` cancels it.
"""

from __future__ import annotations

import uuid
from typing import Any

from flode.access.policy import require_admin
from flode.context import RequestContext
from flode.fhir.dates import format_instant
from flode.fhir.errors import bad_request, not_found
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import check_type
from flode.store.reindex import Job


def _parameters(job: Job) -> dict[str, Any]:
    values: list[dict[str, Any]] = [
        {"name": "job", "valueString": str(job.id)},
        {"name": "status", "valueCode": job.status},
        {"name": "total", "valueInteger": job.total},
        {"name": "processed", "valueInteger": job.done},
        {"name": "created", "valueInstant": format_instant(job.created)},
    ]
    values += [{"name": "type", "valueCode": t} for t in job.types or ()]
    if job.finished is not None:
        values.append({"name": "finished", "valueInstant": format_instant(job.finished)})
    if job.error is not None:
        values.append({"name": "error", "valueString": job.error})
    return {"resourceType": "Parameters", "parameter": values}


def _headers(ctx: RequestContext, job: Job) -> dict[str, str]:
    percent = 100 if job.total == 0 else job.done * 100 // job.total
    return {
        "Content-Location": f"{ctx.base_url}/$reindex/{job.id}",
        "X-Progress": f"{job.status}: {job.done} of {job.total} resources ({percent}%)",
    }


def _types(services: Services, resource_type: str | None, body: Any) -> list[str] | None:
    """The types to re-index: the URL's, or `type` parameters of a Parameters body."""
    if resource_type is not None:
        check_type(services, resource_type)
        return [resource_type]
    if body is None:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("The body of $reindex, if any, must be a Parameters resource")
    types = []
    for parameter in body.get("parameter", []):
        if not isinstance(parameter, dict) or parameter.get("name") != "type":
            raise bad_request("$reindex takes only 'type' parameters", "Parameters.parameter")
        value = parameter.get("valueCode", parameter.get("valueString"))
        if not isinstance(value, str):
            raise bad_request("A 'type' parameter needs a valueCode", "Parameters.parameter")
        check_type(services, value)
        types.append(value)
    return types or None


async def start(
    services: Services, ctx: RequestContext, resource_type: str | None, body: Any
) -> Outcome:
    require_admin(ctx, "$reindex")
    job = await services.reindexer.start(_types(services, resource_type, body))
    return Outcome(202, body=_parameters(job), headers=_headers(ctx, job))


def _job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found(f"There is no $reindex job '{raw}'") from None


async def status(services: Services, ctx: RequestContext, id: str) -> Outcome:
    require_admin(ctx, "$reindex")
    job = await services.reindexer.status(_job_id(id))
    if job is None:
        raise not_found(f"There is no $reindex job '{id}'")
    return Outcome(200, body=_parameters(job), headers=_headers(ctx, job))


async def cancel(services: Services, ctx: RequestContext, id: str) -> Outcome:
    require_admin(ctx, "$reindex")
    job = await services.reindexer.cancel(_job_id(id))
    if job is None:
        raise not_found(f"There is no $reindex job '{id}'")
    return Outcome(200, body=_parameters(job), headers=_headers(ctx, job))
