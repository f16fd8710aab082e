"""`POST [base]` with a Bundle (https://hl7.org/fhir/R4/http.html#transaction): its type chooses
a transaction (transaction.py: all entries or none) or a batch (here: each entry on its own).

A batch processes its entries in order, each in its own database transaction with the same
steps as a transaction of that one entry; one entry failing does not affect the others. The
batch-response gives each entry its own status, and an OperationOutcome for each failure.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
import structlog

from flode.access.protected import Masking
from flode.context import RequestContext
from flode.fhir.bundle import bundle, etag
from flode.fhir.dates import format_instant
from flode.fhir.errors import FhirError, Issue, bad_request, operation_outcome
from flode.interactions.entries import Entry, about, label, parse_entry
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.transaction import process, read_entry, transaction
from flode.interactions.write import in_transaction

log = structlog.get_logger("flode.interactions")


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def response_entry(
    ctx: RequestContext, entry: Entry, outcome: Outcome, prefer: str, masking: Masking
) -> dict[str, Any]:
    """The entry of a transaction- or batch-response (bundle.html#Bundle.entry.response): the
    resource as `Prefer: return=…` asks (reads always carry theirs), a patient with protected
    identity as `masking` lets the request see it, and the response."""
    out: dict[str, Any] = {}
    response: dict[str, Any] = {"status": status_line(outcome.status)}
    version = outcome.version
    body: Any = outcome.body
    write = entry.method not in ("GET", "HEAD")
    if version is not None:
        name = f"{version.resource_type}/{version.id}"
        if version.content is not None:
            out["fullUrl"] = f"{ctx.base_url}/{name}"
            body = body if body is not None else orjson.Fragment(masking.text(version.content))
        if write and outcome.status in (200, 201) and not version.deleted:
            response["location"] = f"{name}/_history/{version.version}"
        response["etag"] = etag(version.version)
        response["lastModified"] = format_instant(version.last_updated)
    if entry.method == "HEAD" or outcome.status == 304 or (write and prefer != "representation"):
        body = None
    if write and prefer == "OperationOutcome":
        issues = outcome.issues or [Issue("information", "informational", "All OK")]
        response["outcome"] = operation_outcome(issues)
    if body is not None:
        out["resource"] = body
    out["response"] = response
    return out


def failure_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": status_line(exc.status), "outcome": exc.outcome()}}


def response_bundle(kind: str, entries: list[dict[str, Any]]) -> Outcome:
    body = bundle(kind, entries, [])
    del body["link"]  # a response Bundle has no links (and FHIR JSON has no empty arrays)
    return Outcome(200, body=body)


async def _entry(
    services: Services, ctx: RequestContext, index: int, raw: Any, prefer: str
) -> dict[str, Any]:
    try:
        with about(index, label(index, raw)):
            entry = parse_entry(services, ctx, index, raw)
            if entry.method in ("GET", "HEAD"):
                outcome = await read_entry(services, ctx, entry)
            else:
                (outcome,) = await in_transaction(
                    services, lambda tx: process(tx, services, ctx, [entry], strict=False), ctx
                )
    except FhirError as exc:
        return failure_entry(exc)
    except Exception:
        # One entry's unexpected failure must not hide the outcome of the others.
        log.exception("unhandled error in a batch entry", index=index)
        return failure_entry(
            FhirError(500, [Issue("fatal", "exception", "An internal error occurred")])
        )
    return response_entry(
        ctx, entry, outcome, prefer, Masking.of(ctx, services.protected_identity_units)
    )


async def batch(services: Services, ctx: RequestContext, raws: list[Any], prefer: str) -> Outcome:
    entries = [await _entry(services, ctx, index, raw, prefer) for index, raw in enumerate(raws)]
    return response_bundle("batch-response", entries)


async def submit(
    services: Services, ctx: RequestContext, body: Any, prefer: str = "representation"
) -> Outcome:
    """Check the Bundle and run it as the transaction or batch its type names. `prefer` is the
    `Prefer: return=` of the request: what each write entry answers with."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise bad_request(
            "POST to the FHIR base takes a Bundle of type transaction or batch", "resourceType"
        )
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise bad_request(
            f"A Bundle POSTed to the FHIR base must be of type transaction or batch, not {kind!r}",
            "Bundle.type",
        )
    raws = body.get("entry", [])
    if not isinstance(raws, list):
        raise bad_request("Bundle.entry must be an array", "Bundle.entry")
    if kind == "batch":
        return await batch(services, ctx, raws, prefer)
    done = await transaction(services, ctx, raws)
    masking = Masking.of(ctx, services.protected_identity_units)
    return response_bundle(
        "transaction-response", [response_entry(ctx, e, o, prefer, masking) for e, o in done]
    )
