"""The Swedish rules on reading patient data (DOMAIN.md L1, L7–L9), as SQL over `resource r`
that every query adds to its own (DESIGN.md principle 4): read, search, `_include`,
`_revinclude`, chains, `_has`, history, `$everything`, export and events all see through it.

They bind a clinician: a request whose token names a user (employee HSA-id). Such a request
reads a resource in a patient's compartment only if

- its care unit has a care relationship with the patient (L1): an Encounter or EpisodeOfCare of
  the patient whose service provider / managing organization is the unit, open or finished
  within the configured window (flode.access.facts);
- the data is its own care provider's (or has no recorded owner), or the patient has consented
  that its provider may read other providers' data (L8: sammanhållen journalföring);
- and the patient has not blocked the unit or provider that owns it (L7, L9) — a block beats a
  consent, and the blocked unit or provider itself still reads its own data.

Emergency access (purpose ETREAT or BTG with a reason) lifts the first two. Blocked data takes
a second step: the user opens one blocker's data for one patient (`$emergency-open`), recorded in
`emergency_opening`, and until the opening expires that data is readable too.

Data outside every patient compartment (Organizations, Practitioners, Medications, …) is not
patient data: only the token's scopes govern it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flode.access import facts
from flode.access.ownership import HSA_SYSTEM
from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue
from flode.store.sql import Args

EMERGENCY = frozenset({"ETREAT", "BTG"})


def applies(ctx: RequestContext) -> bool:
    """Whether the request is a clinician's, bound by the rules."""
    return not ctx.trusted and ctx.user_hsa_id is not None


def emergency(ctx: RequestContext) -> bool:
    return ctx.purpose_of_use in EMERGENCY and bool(ctx.emergency_reason)


def require_assignment(ctx: RequestContext) -> None:
    """A clinician reads patient data only under a care unit and care provider (L1): without
    them (or with an emergency purpose but no reason) the answer is 403."""
    if not (ctx.care_unit_hsa_id and ctx.care_provider_hsa_id):
        raise FhirError(
            403,
            [
                Issue(
                    "error",
                    "forbidden",
                    "Reading patient data needs a care unit and a care provider in the access "
                    "token (the commission chosen at login, medarbetaruppdrag; DOMAIN.md L1)",
                )
            ],
        )
    if ctx.purpose_of_use in EMERGENCY and not ctx.emergency_reason:
        raise FhirError(
            403,
            [
                Issue(
                    "error",
                    "forbidden",
                    f"Purpose {ctx.purpose_of_use} (emergency access) needs a reason in the "
                    "access token",
                )
            ],
        )


def organizations(hsa: str, args: Args) -> str:
    """The ids of the Organizations carrying HSA-id `hsa` (a subquery)."""
    return (
        "SELECT o.id FROM search_token t JOIN resource o ON o.pk = t.resource_pk "
        "WHERE t.resource_type = 'Organization' AND t.param = 'identifier' "
        f"AND t.system = {args.add(HSA_SYSTEM)} AND t.code = {args.add(hsa)} AND NOT o.deleted"
    )


def _naming(alias: str, hsa: str, args: Args) -> tuple[str, str]:
    """The two ways the reference row `alias` names the organization with HSA-id `hsa`, as
    conditions to use one at a time (UNION ALL), so that each is answered by an index: by the
    Organization's id, or by its identifier."""
    return (
        f"{alias}.target_type = 'Organization' AND {alias}.target_id IN "
        f"({organizations(hsa, args)})",
        f"{alias}.identifier_system = {args.add(HSA_SYSTEM)} "
        f"AND {alias}.identifier_value = {args.add(hsa)}",
    )


def related(ctx: RequestContext, args: Args) -> str:
    """The patients the request's care unit has a care relationship with (a subquery): only
    the unit's own relationship rows are read."""
    assert ctx.care_unit_hsa_id is not None
    return " UNION ALL ".join(
        "SELECT cp.compartment_id FROM search_reference cr "
        "JOIN search_date cd ON cd.resource_pk = cr.resource_pk "
        f"AND cd.param = '{facts.CARE_RELATION}' AND cd.high > now() - make_interval("
        f"days => {args.add(ctx.care_relationship_days)}::int) "
        "JOIN resource_compartment cp ON cp.resource_pk = cr.resource_pk "
        "AND cp.compartment_type = 'Patient' "
        f"WHERE cr.resource_type IN ('Encounter', 'EpisodeOfCare') "
        f"AND cr.param = '{facts.CARE_RELATION}' AND {names}"
        for names in _naming("cr", ctx.care_unit_hsa_id, args)
    )


def consented(ctx: RequestContext, args: Args) -> str:
    """The patients who consented that the request's care provider reads other providers'
    data (a subquery)."""
    assert ctx.care_provider_hsa_id is not None
    return " UNION ALL ".join(
        "SELECT cs.target_id FROM search_reference cc JOIN search_reference cs "
        "ON cs.resource_pk = cc.resource_pk AND cs.param = 'patient' "
        f"WHERE cc.resource_type = 'Consent' AND cc.param = '{facts.CONSENT_PERMIT}' "
        f"AND {names} AND {facts.in_force('cc', facts.CONSENT_PERMIT)}"
        for names in _naming("cc", ctx.care_provider_hsa_id, args)
    )


def _blocker_hsa(args: Args) -> str:
    """The HSA-id(s) of the organization a `_consent-deny` row `bd` names (a lateral)."""
    return (
        "SELECT bd.identifier_value AS hsa WHERE bd.identifier_system = "
        f"{args.add(HSA_SYSTEM)} UNION ALL SELECT t.code FROM resource o JOIN search_token t "
        "ON t.resource_pk = o.pk AND t.resource_type = 'Organization' AND t.param = "
        f"'identifier' AND t.system = {args.add(HSA_SYSTEM)} WHERE o.resource_type = "
        "'Organization' AND o.id = bd.target_id AND NOT o.deleted"
    )


def blocks(args: Args, patients: str) -> str:
    """The blocks in force of the patients `patients` (a condition on the patient id
    `bp.target_id`, e.g. `bp.target_id = ANY($1)`) as (patient id, HSA-id of the blocked unit
    or provider) rows."""
    return (
        "SELECT bp.target_id AS patient, h.hsa FROM search_reference bp "
        "JOIN search_reference bd ON bd.resource_pk = bp.resource_pk "
        f"AND bd.param = '{facts.CONSENT_DENY}' CROSS JOIN LATERAL ({_blocker_hsa(args)}) h "
        f"WHERE bp.resource_type = 'Consent' AND bp.param = 'patient' AND {patients} "
        f"AND {facts.in_force('bd', facts.CONSENT_DENY)}"
    )


def unblocked(ctx: RequestContext, args: Args, patient: str) -> str:
    """SQL: whether no block of the patient `patient` binds the request for resource `r`: none
    of the patient's blocks in force names the unit or provider that owns `r`, except blocks
    of the request's own unit or provider and those the user opened by emergency access.

    A lookup of the patient's own Consents per row (by the `search_reference_source` index), not
    the region's blocks gathered per query: a region has many blocks, a patient few."""
    unit, provider = args.add(ctx.care_unit_hsa_id), args.add(ctx.care_provider_hsa_id)
    return (
        "((r.owner_unit IS NULL AND r.owner_provider IS NULL) OR NOT EXISTS (SELECT 1 FROM "
        f"({blocks(args, f'bp.target_id = {patient}')}) b "
        f"WHERE b.hsa IN (r.owner_unit, r.owner_provider) AND b.hsa <> {unit} "
        f"AND b.hsa <> {provider} AND NOT EXISTS (SELECT 1 FROM emergency_opening e WHERE "
        f"e.user_hsa_id = {args.add(ctx.user_hsa_id)} AND e.patient_id = {patient} "
        "AND e.organization = b.hsa AND e.expires > now())))"
    )


@dataclass(frozen=True, slots=True)
class Conditions:
    """The parts of the rule for one patient `p` (a compartment row) and a resource `r`."""

    related: str | None
    provider: str | None
    unblocked: str


def conditions(ctx: RequestContext, args: Args, patient: str) -> Conditions:
    free = unblocked(ctx, args, patient)
    if emergency(ctx):
        return Conditions(None, None, free)
    provider = args.add(ctx.care_provider_hsa_id)
    return Conditions(
        # IS TRUE keeps PostgreSQL from turning the IN into a join it repeats for every row:
        # as an expression it is a hashed subplan, the unit's patients hashed once per query.
        f"({patient} IN ({related(ctx, args)})) IS TRUE",
        f"(r.owner_provider IS NULL OR r.owner_provider = {provider} "
        f"OR {patient} IN ({consented(ctx, args)}))",
        free,
    )


def restriction(ctx: RequestContext, args: Args) -> str:
    """SQL over `resource r`: whether the clinician's request may read it under the rules."""
    require_assignment(ctx)
    rule = conditions(ctx, args, "pc.compartment_id")
    parts = [p for p in (rule.related, rule.provider, rule.unblocked) if p is not None]
    return (
        "(NOT EXISTS (SELECT 1 FROM resource_compartment pc WHERE pc.resource_pk = r.pk "
        "AND pc.compartment_type = 'Patient') OR EXISTS (SELECT 1 FROM resource_compartment pc "
        "WHERE pc.resource_pk = r.pk AND pc.compartment_type = 'Patient' AND "
        f"{' AND '.join(parts)}))"
    )
