"""`$import` (FHIR Bulk Data import, as HAPI FHIR's `$import` and the Bulk Data Import drafts
https://github.com/smart-on-fhir/bulk-import define it): the kick-off, the status of a job, its
cancellation and its error files. Framework-free: the HTTP adapter is `flode.api.bulk`.

    POST [base]/$import                  202, Content-Location: [base]/$import/{job}
    GET [base]/$import/{job}             202 + X-Progress + Retry-After while it runs;
                                         200 + the result when complete
    DELETE [base]/$import/{job}          202; the job stops (what it wrote stays)
    GET [base]/$import/{job}/error-{n}.ndjson   the OperationOutcomes of input n's errors
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flode.access import policy
from flode.bulk.background import asked_by, job_id, requested_by, served, status_of
from flode.bulk.import_request import ImportRequest, parse
from flode.bulk.import_sources import origin
from flode.bulk.import_store import DONE, ImportJob
from flode.context import RequestContext
from flode.fhir.dates import format_instant
from flode.fhir.errors import Issue, bad_request, not_found, operation_outcome
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services

REQUIRES_ACCESS_TOKEN = True
"""Error files are served only with the token of the client that started the import (or an
administrator's), as export files are."""


def may_write(ctx: RequestContext, resource_type: str) -> None:
    """403 unless the token may create and update every resource of the type: an import writes
    like `flode load`, beside the care relationship and a patient's compartment, so it needs
    `system/` scopes without criteria (`system/Patient.cu`, `system/*.cruds`); `*` for
    every type."""
    if ctx.trusted:
        return
    for action in "cu":
        grants = policy.scopes_of(ctx).for_action(resource_type, action)
        if not any(g.context == "system" and not g.criteria for g in grants):
            what = "every type" if resource_type == "*" else resource_type
            raise policy.forbidden(
                f"$import of {what} needs a token that may create and update all of it: "
                f"system/{resource_type}.cu (or an administrator's, system/*.cruds)"
            )
        policy.require(ctx, resource_type, action)  # and a module must have declared it


def _urls(asked: ImportRequest) -> Iterable[str]:
    if asked.export_url is not None:
        yield asked.export_url
    for item in asked.inputs:
        yield item.url


async def kick_off(
    services: Services,
    ctx: RequestContext,
    body: Any,
    *,
    respond_async: bool,
    request_url: str,
    bearer: str | None,
) -> Outcome:
    """Start an import; 202 and where to poll. Refused with 4xx, nothing imported: no
    `Prefer: respond-async`, a body of no form it knows, a type or URL it may not write or
    read."""
    if not respond_async:
        raise bad_request(
            "$import runs asynchronously: send 'Prefer: respond-async' "
            "(https://hl7.org/fhir/R4/async.html)",
            "Prefer",
        )
    asked = parse(body, services.definitions.resource_types)
    types = asked.types
    for resource_type in sorted(types) if types is not None else ["*"]:
        may_write(ctx, resource_type)
    importer = services.importer
    for url in _urls(asked):
        reason = importer.sources.refuse(url)
        if reason is not None:
            raise bad_request(reason, "url")
    # The token goes only to this server's own URLs (its export files and kick-off).
    own = origin(ctx.base_url)
    mine = any(own and origin(url) == own for url in _urls(asked))
    job = await importer.submit(
        asked,
        request=request_url,
        requested_by=requested_by(ctx),
        bearer=bearer if mine else None,
    )
    issues = [Issue("information", "informational", f"Import {job.id} accepted"), *asked.warnings]
    location = f"{ctx.base_url}/$import/{job.id}"
    return Outcome(202, body=operation_outcome(issues), headers={"Content-Location": location})


async def _find(services: Services, ctx: RequestContext, raw: str) -> ImportJob:
    """The import, if it is still served and `ctx` started it (or administers the server)."""
    job = await services.importer.status(job_id(raw, "import"))
    if (
        job is None
        or not served(job.status, job.expires)
        or not asked_by(ctx, job.requested_by, "$import")
    ):
        raise not_found(f"There is no import '{raw}' (it may have been cancelled or expired)")
    return job


def progress(job: ImportJob) -> str:
    """X-Progress (at most 100 characters)."""
    if job.status == "accepted":
        return "queued"
    if not job.inputs:
        return "pulling the export's manifest"
    done = sum(1 for i in job.inputs if i.status in DONE)
    loaded = sum(i.loaded for i in job.inputs)
    percent = min(99, done * 100 // len(job.inputs))
    return f"running: {done} of {len(job.inputs)} files, {loaded} resources ({percent}%)"


def error_name(seq: int) -> str:
    return f"error-{seq}.ndjson"


def result(job: ImportJob, base_url: str) -> dict[str, Any]:
    """The completion document: per input its type, URL and the resources it loaded, and a
    file of OperationOutcomes for each input with errors (import-manifest.md, like an export's
    manifest)."""
    body: dict[str, Any] = {
        "transactionTime": format_instant(job.started or job.created),
        "request": job.request,
        "requiresAccessToken": REQUIRES_ACCESS_TOKEN,
    }
    if job.input_source is not None:
        body["inputSource"] = job.input_source
    body["output"] = [{"type": i.type, "url": i.url, "count": i.loaded} for i in job.inputs]
    body["error"] = [
        {
            "type": "OperationOutcome",
            "url": f"{base_url}/$import/{job.id}/{error_name(i.seq)}",
            "count": i.errors,
            "inputType": i.type,
            "inputUrl": i.url,
        }
        for i in job.inputs
        if i.errors
    ]
    return body


async def status(services: Services, ctx: RequestContext, raw: str) -> Outcome:
    """202 while it runs, 200 with the result, 500 with why it failed."""
    job = await _find(services, ctx, raw)
    return status_of(
        "import",
        job.status,
        job.error,
        job.expires,
        lambda: progress(job),
        lambda: result(job, ctx.base_url),
    )


async def cancel(services: Services, ctx: RequestContext, raw: str) -> Outcome:
    """The job stops; what it wrote stays (a load is not rolled back), and its result is gone."""
    job = await _find(services, ctx, raw)
    if not await services.importer.cancel(job.id):
        raise not_found(f"There is no import '{raw}'")
    text = f"Import {job.id} cancelled; resources it had written stay"
    return Outcome(202, body=operation_outcome([Issue("information", "informational", text)]))


async def error_file(services: Services, ctx: RequestContext, raw: str, name: str) -> list[str]:
    """The lines of one of a completed import's error files."""
    job = await _find(services, ctx, raw)
    found = {error_name(i.seq): i for i in job.inputs if i.errors}
    if job.status != "completed" or name not in found:
        raise not_found(f"Import {raw} has no file '{name}'")
    return await services.importer.errors(job.id, found[name].seq)
