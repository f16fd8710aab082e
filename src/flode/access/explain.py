"""Why the Swedish rules hide a resource from the clinician asking: the 403 a read gets, naming
the rule (and the way on: emergency access), never the data or where blocked data is."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from flode.access import pdl
from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue
from flode.store.sql import Args


@dataclass
class Denied(FhirError):
    """A 403 under the Swedish rules, with the patients whose data was asked for (the access
    log records the denial for each of them)."""

    patients: list[str] = field(default_factory=list)
    missing_relationship: bool = False


NO_RELATIONSHIP = (
    "Your care unit has no care relationship with the patient (no current Encounter or "
    "EpisodeOfCare of the unit; PDL 4:1, DOMAIN.md L1). In an emergency, use emergency access: "
    "a token with purpose ETREAT or BTG and a reason."
)
NO_CONSENT = (
    "The data is another care provider's, and the patient has not consented that your care "
    "provider may read it (sammanhållen journalföring, DOMAIN.md L8). In an emergency, use "
    "emergency access: a token with purpose ETREAT or BTG and a reason."
)
BLOCKED = (
    "The patient has blocked this data (spärr, DOMAIN.md L7, L9). Only emergency access can "
    "open it, in two steps: reveal where blocked data is (Patient/{id}/$emergency-reveal), then "
    "open one care unit's or provider's data (Patient/{id}/$emergency-open)."
)


async def denial(
    executor: asyncpg.Pool | asyncpg.Connection, ctx: RequestContext, resource_type: str, id: str
) -> Denied:
    """The 403 for a resource the token's scopes reach but the rules hide."""
    args = Args()
    rule = pdl.conditions(ctx, args, "pc.compartment_id")
    columns = ", ".join(
        f"({sql}) AS {name}"
        for name, sql in (
            ("related", rule.related or "true"),
            ("provider", rule.provider or "true"),
            ("unblocked", rule.unblocked),
        )
    )
    rows = await executor.fetch(
        f"""SELECT pc.compartment_id AS patient, {columns} FROM resource r
            JOIN resource_compartment pc ON pc.resource_pk = r.pk
            AND pc.compartment_type = 'Patient'
            WHERE r.resource_type = {args.add(resource_type)} AND r.id = {args.add(id)}""",
        *args.values,
    )
    patients = [row["patient"] for row in rows]
    if any(not row["related"] for row in rows):
        text, missing = NO_RELATIONSHIP, True
    elif any(not row["provider"] for row in rows):
        text, missing = NO_CONSENT, False
    else:
        first = patients[0] if patients else "{id}"
        text, missing = BLOCKED.format(id=first), False
    return Denied(403, [Issue("error", "forbidden", text)], {}, patients, missing)
