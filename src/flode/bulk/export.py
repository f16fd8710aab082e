"""`$export` (FHIR Bulk Data Access 2.0, https://hl7.org/fhir/uv/bulkdata/export.html): the
kick-off at system, Patient and Group level, the status of a job, its cancellation and its
files. Framework-free: the HTTP adapter is `flode.api.bulk`.

    GET [base]/$export?_type=…          202, Content-Location: [base]/$export/{job}
    GET [base]/Patient/$export          (or POST with a Parameters body)
    GET [base]/Group/{id}/$export
    GET [base]/$export/{job}            202 + X-Progress + Retry-After while it runs;
                                        200 + the manifest when complete
    DELETE [base]/$export/{job}         202; the job and its files are gone (404 after)
    GET [base]/$export/{job}/{file}     the NDJSON file
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flode.access import policy
from flode.bulk import selection as sel
from flode.bulk.background import asked_by, job_id, served, status_of
from flode.bulk.jobs import ExportJob, requested_by
from flode.bulk.manifest import manifest
from flode.context import RequestContext
from flode.fhir.dates import parse_instant
from flode.fhir.errors import Issue, bad_request, error, not_found, operation_outcome
from flode.interactions.outcome import Outcome
from flode.interactions.search_access import readable
from flode.interactions.services import Services
from flode.store.sql import Args

OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# Parameters of the OperationDefinitions that Flöde does not support (yet).
UNSUPPORTED = frozenset({"_elements", "includeAssociatedData"})


@dataclass
class _Request:
    """The kick-off parameters, from the URL or a Parameters body."""

    output_format: list[str] = field(default_factory=list)
    since: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    type_filters: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


def _from_url(params: Sequence[tuple[str, str]]) -> _Request:
    found = _Request()
    for name, value in params:
        if name == "_outputFormat":
            found.output_format.append(value)
        elif name == "_since":
            found.since.append(value)
        elif name == "_type":
            found.types += [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            found.type_filters.append(value)
        else:
            found.other.append(name)
    return found


def _parse(params: Sequence[tuple[str, str]], body: Any) -> _Request:
    """The URL's parameters and those of a POST's Parameters body
    (export.html#bulk-data-kick-off-request)."""
    pairs = list(params)
    patients: list[str] = []
    if body is not None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request("The body of a $export POST must be a Parameters resource")
        for parameter in body.get("parameter", []):
            name = parameter.get("name") if isinstance(parameter, dict) else None
            if not isinstance(name, str):
                raise bad_request("Every parameter needs a name", "Parameters.parameter")
            value = next((v for k, v in parameter.items() if k.startswith("value")), None)
            if name == "patient":
                reference = value.get("reference") if isinstance(value, dict) else None
                if not isinstance(reference, str) or not reference.startswith("Patient/"):
                    raise bad_request(
                        "A 'patient' parameter needs a valueReference to Patient/{id}", "patient"
                    )
                patients.append(reference.removeprefix("Patient/").split("/")[0])
            elif isinstance(value, str):
                pairs.append((name, value))
            else:
                raise bad_request(f"Parameter '{name}' needs a string value", name)
    found = _from_url(pairs)
    found.patients = patients
    return found


def _one(values: list[str], name: str) -> str | None:
    if len(values) > 1:
        raise bad_request(f"{name} may be given once", name)
    return values[0] if values else None


class _Issues:
    """What a lenient kick-off (`Prefer: handling=lenient`) let pass, for the manifest's error
    files; under the default strict handling each of them is a 400."""

    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self.found: list[dict[str, Any]] = []

    def refuse(self, diagnostics: str, name: str) -> None:
        if not self.lenient:
            raise error(400, "not-supported", diagnostics, name)
        self.found.append(
            operation_outcome([Issue("warning", "not-supported", diagnostics, (name,))])
        )


def _types(services: Services, level: str, asked: list[str], issues: _Issues) -> tuple[str, ...]:
    known = services.definitions.resource_types
    allowed = (
        sorted(known) if level == "system" else sel.patient_types(services.search.registry, known)
    )
    if not asked:
        return tuple(allowed)
    types: list[str] = []
    for name in dict.fromkeys(asked):
        if name not in known:
            issues.refuse(f"_type: '{name}' is not a FHIR R4 resource type", "_type")
        elif name not in allowed:
            issues.refuse(
                f"_type: {name} is neither in the Patient compartment nor a type that "
                "patient data refers to (a patient-level export cannot hold it)",
                "_type",
            )
        else:
            types.append(name)
    if not types:
        raise bad_request("_type names no type this export can hold", "_type")
    return tuple(types)


def _readable(
    ctx: RequestContext, types: tuple[str, ...], explicit: bool, issues: _Issues
) -> tuple[str, ...]:
    """The types the token may read (flode.access.policy). One named in `_type` that it may
    not is refused with 403 (left out under lenient handling); without `_type` the export
    holds the types it may read."""
    if ctx.trusted:
        return types
    kept = []
    for resource_type in types:
        if policy.allows(ctx, resource_type, "r"):
            kept.append(resource_type)
        elif explicit and not issues.lenient:
            policy.require(ctx, resource_type, "r")
        elif explicit:
            issues.found.append(
                operation_outcome(
                    [Issue("warning", "forbidden", f"No scope to read {resource_type}", ("_type",))]
                )
            )
    if not kept:
        raise policy.forbidden("The access token has no scope to read any type of this export")
    return tuple(kept)


def _type_filters(
    services: Services, ctx: RequestContext, raw: list[str], types: tuple[str, ...]
) -> list[str]:
    filters = sel.split_type_filters(raw)
    # Compiled once here so that a bad query is a 400 now, not a failed job later.
    sel.compile_filters(services.search, filters, Args(), ctx)
    return [f for f in filters if f.partition("?")[0] in types]


async def _patients(
    services: Services, ctx: RequestContext, level: str, group_id: str | None, asked: list[str]
) -> tuple[str, ...] | None:
    pool = services.store.pool
    members: list[str] | None = None
    if level == "group":
        assert group_id is not None
        members = await sel.group_members(pool, group_id)
        # A Group the token may not read is not there for it.
        if members is None or not await readable(services, ctx, [("Group", group_id)]):
            raise not_found(f"Group/{group_id} is not known")
    if not asked:
        return None if members is None else tuple(members)
    if level == "system":
        raise bad_request("'patient' applies to Patient- and Group-level exports only", "patient")
    wanted = list(dict.fromkeys(asked))
    if members is not None:
        outside = [p for p in wanted if p not in set(members)]
        if outside:
            raise bad_request(f"Not members of Group/{group_id}: {', '.join(outside)}", "patient")
    found = await sel.existing_patients(pool, wanted)
    found &= {id for _, id in await readable(services, ctx, [("Patient", p) for p in found])}
    missing = set(wanted) - found
    if missing:
        raise bad_request(f"No such patients: {', '.join(sorted(missing))}", "patient")
    return tuple(wanted)


async def kick_off(
    services: Services,
    ctx: RequestContext,
    level: str,
    group_id: str | None,
    params: Sequence[tuple[str, str]],
    body: Any,
    *,
    respond_async: bool,
    lenient: bool,
    request_url: str,
) -> Outcome:
    """Start an export (export.html#bulk-data-kick-off-request); 202 and where to poll."""
    if not respond_async:
        raise bad_request(
            "$export runs asynchronously: send 'Prefer: respond-async' "
            "(https://hl7.org/fhir/R4/async.html)",
            "Prefer",
        )
    asked = _parse(params, body)
    issues = _Issues(lenient)
    output_format = _one(asked.output_format, "_outputFormat")
    # An unencoded '+' arrives as a space.
    if output_format is not None and output_format.replace(" ", "+").strip() not in OUTPUT_FORMATS:
        raise bad_request(
            f"_outputFormat '{output_format}' is not supported: use application/fhir+ndjson",
            "_outputFormat",
        )
    raw_since = _one(asked.since, "_since")
    since = None if raw_since is None else parse_instant(raw_since, "_since")
    for name in dict.fromkeys(asked.other):
        reason = "is not supported" if name in UNSUPPORTED else "is not a $export parameter"
        issues.refuse(f"'{name}' {reason}", name)
    types = _readable(ctx, _types(services, level, asked.types, issues), bool(asked.types), issues)
    filters = _type_filters(services, ctx, asked.type_filters, types)
    patients = await _patients(services, ctx, level, group_id, asked.patients)
    selection = sel.Selection(
        level=level,
        types=types,
        transaction_time=datetime.now(UTC),
        since=since,
        patients=patients,
        type_filters=tuple(filters),
    )
    job = await services.exporter.submit(
        selection,
        request=request_url,
        requested_by=requested_by(ctx),
        issues=issues.found,
        group_id=group_id,
    )
    outcome = operation_outcome(
        [Issue("information", "informational", f"Export {job.id} accepted")]
    )
    return Outcome(202, body=outcome, headers={"Content-Location": _status_url(ctx, job)})


def _status_url(ctx: RequestContext, job: ExportJob) -> str:
    return f"{ctx.base_url}/$export/{job.id}"


async def _find(services: Services, ctx: RequestContext | None, raw: str) -> ExportJob:
    """The export, if it is still served and `ctx` may see it (None: whoever has the URL)."""
    job = await services.exporter.status(job_id(raw, "export"))
    if (
        job is None
        or not served(job.status, job.expires)
        or (ctx is not None and not asked_by(ctx, job.requested_by, "$export"))
    ):
        raise not_found(f"There is no export '{raw}' (it may have been cancelled or expired)")
    return job


def progress(job: ExportJob) -> str:
    """X-Progress (at most 100 characters)."""
    if job.status == "accepted":
        return "queued"
    total = job.total or 0
    percent = 99 if job.done >= total else job.done * 100 // max(total, 1)
    return f"running: {job.done} of {total} resources ({percent}%)"


async def status(services: Services, ctx: RequestContext, raw: str) -> Outcome:
    """export.html#bulk-data-status-request: 202 while it runs, 200 with the manifest."""
    job = await _find(services, ctx, raw)
    return status_of(
        "export",
        job.status,
        job.error,
        job.expires,
        lambda: progress(job),
        lambda: manifest(job, ctx.base_url),
    )


async def cancel(services: Services, ctx: RequestContext, raw: str) -> Outcome:
    """export.html#bulk-data-delete-request: the job stops and its files are deleted."""
    job = await _find(services, ctx, raw)
    if await services.exporter.cancel(job.id) is None:
        raise not_found(f"There is no export '{raw}'")
    outcome = operation_outcome(
        [Issue("information", "informational", f"Export {job.id} cancelled; its files deleted")]
    )
    return Outcome(202, body=outcome)


async def file(services: Services, ctx: RequestContext, raw: str, name: str) -> Path:
    """The path of one of a completed export's files (export.html#file-request)."""
    # Served only to the client (and user) that started the export, or an administrator
    # (`requiresAccessToken: true` in the manifest).
    job = await _find(services, ctx, raw)
    if job.status != "completed" or name not in {f.name for f in job.files}:
        raise not_found(f"Export {raw} has no file '{name}'")
    return services.exporter.job_directory(job.id) / name
