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

Each part is one index look-up of the patient's own facts (flode.access.facts), whatever the
size of the unit or the provider; the organization names a unit or provider goes by are worked
out once per query, and a patient's blocks, rare, by the function `flode_blocked` (migration
0017_access_rules).

Data outside every patient compartment (Organizations, Practitioners, Medications, …) is not
patient data: only the token's scopes govern it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flode.access import facts
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


def _fact(param: str, patient: str, names: str, holds: str) -> str:
    """SQL: whether the patient `patient` has a fact `param` naming one of the organization
    names `names` (an array) and holding as `holds` says: one look-up of `access_fact_patient`."""
    return (
        f"EXISTS (SELECT 1 FROM {facts.TABLE} f WHERE f.patient_id = {patient} "
        f"AND f.param = '{param}' AND f.organization = ANY ({names}) AND {holds})"
    )


def _names(hsa: str | None, args: Args) -> str:
    """The names facts give the organization with HSA-id `hsa` (an array, worked out once
    per query)."""
    return f"(SELECT flode_organization_names({args.add(hsa)}))::text[]"


def related(ctx: RequestContext, args: Args, patient: str) -> str:
    """SQL: whether the request's care unit has a care relationship with the patient."""
    days = args.add(ctx.care_relationship_days)
    return _fact(
        facts.CARE_RELATION,
        patient,
        _names(ctx.care_unit_hsa_id, args),
        f"f.high > now() - make_interval(days => {days}::int)",
    )


def consented(ctx: RequestContext, args: Args, patient: str) -> str:
    """SQL: whether the patient consented, in force now, that the request's care provider
    reads other providers' data."""
    return _fact(
        facts.CONSENT_PERMIT,
        patient,
        _names(ctx.care_provider_hsa_id, args),
        "f.low <= now() AND f.high > now()",
    )


def unblocked(ctx: RequestContext, args: Args, patient: str) -> str:
    """SQL: whether no block of the patient `patient` binds the request for resource `r`: none
    of the patient's blocks in force names the unit or provider that owns `r`, except blocks
    of the request's own unit or provider and those the user opened by emergency access.

    Most patients have no block at all, and that is answered inline by one index look-up;
    only a patient with a block costs a call of `flode_blocked`."""
    return (
        "((r.owner_unit IS NULL AND r.owner_provider IS NULL) OR NOT EXISTS (SELECT 1 FROM "
        f"{facts.TABLE} b WHERE b.patient_id = {patient} AND b.param = '{facts.CONSENT_DENY}') "
        f"OR NOT flode_blocked({patient}, r.owner_unit, r.owner_provider, "
        f"{args.add(ctx.care_unit_hsa_id)}, {args.add(ctx.care_provider_hsa_id)}, "
        f"{args.add(ctx.user_hsa_id)}))"
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
        related(ctx, args, patient),
        f"(r.owner_provider IS NULL OR r.owner_provider = {provider} "
        f"OR {consented(ctx, args, patient)})",
        free,
    )


def restriction(ctx: RequestContext, args: Args) -> str:
    """SQL over `resource r`: whether the clinician's request may read it under the rules."""
    require_assignment(ctx)
    rule = conditions(ctx, args, "pc.compartment_id")
    parts = [p for p in (rule.related, rule.provider, rule.unblocked) if p is not None]
    # Readable if it is in no patient's compartment, or if the rules let the request read one
    # of the patients' data: one look-up of the compartments per row, not two.
    return (
        f"COALESCE((SELECT bool_or({' AND '.join(parts)}) FROM resource_compartment pc "
        "WHERE pc.resource_pk = r.pk AND pc.compartment_type = 'Patient'), true)"
    )
