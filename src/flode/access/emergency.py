"""Emergency access to blocked data (nödåtkomst, DOMAIN.md L9): two explicit steps.

1. `reveal`: which care units and care providers hold data of the patient that is blocked for
   the clinician — their HSA-ids, nothing of the data.
2. `open`: one of them, for this patient, for this user, until the opening expires; from then on
   the access rules (flode.access.pdl) let that data through for this user's emergency requests.

Both need a token with purpose ETREAT or BTG and a reason; both are recorded in the access log
and flagged for review.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from flode.access import pdl
from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue, bad_request


def require_emergency(ctx: RequestContext, step: str) -> None:
    if not pdl.applies(ctx):
        raise FhirError(
            403, [Issue("error", "forbidden", f"{step} is for clinicians (a user's token)")]
        )
    pdl.require_assignment(ctx)
    if not pdl.emergency(ctx):
        raise FhirError(
            403,
            [
                Issue(
                    "error",
                    "forbidden",
                    f"{step} is emergency access: it needs a token with purpose ETREAT or BTG "
                    "and a reason (DOMAIN.md L8, L9)",
                )
            ],
        )


async def blocked_for(
    executor: asyncpg.Pool | asyncpg.Connection, ctx: RequestContext, patients: Sequence[str]
) -> list[tuple[str, str, bool]]:
    """(patient, HSA-id, opened) of each unit or provider whose data of one of the `patients`
    is blocked for the request's user and that holds some of it."""
    if not patients:
        return []
    rows = await executor.fetch(
        "SELECT patient, hsa, opened FROM flode_blocked_holders($1::text[], $2, $3, $4)",
        list(patients),
        ctx.care_unit_hsa_id,
        ctx.care_provider_hsa_id,
        ctx.user_hsa_id,
    )
    return [(row["patient"], row["hsa"], row["opened"]) for row in rows]


async def holders(
    executor: asyncpg.Pool | asyncpg.Connection, ctx: RequestContext, patient: str
) -> list[str]:
    """The HSA-ids of the units and providers whose data of the patient is blocked for the
    request's user (opened or not), holding some data."""
    return [hsa for _, hsa, _ in await blocked_for(executor, ctx, [patient])]


async def notice(
    executor: asyncpg.Pool | asyncpg.Connection, ctx: RequestContext, patients: Sequence[str]
) -> list[Issue]:
    """A warning for each patient with blocked data the request could not see: that it
    exists, never where (L9)."""
    hidden = sorted(
        {p for p, _, opened in await blocked_for(executor, ctx, patients) if not opened}
    )
    return [
        Issue(
            "warning",
            "suppressed",
            f"Patient/{patient} has blocked data (spärrad information) that is not shown. Only "
            f"emergency access can reveal where it is (Patient/{patient}/$emergency-reveal).",
        )
        for patient in hidden
    ]


async def open_blocked(
    executor: asyncpg.Pool | asyncpg.Connection,
    ctx: RequestContext,
    patient: str,
    organization: str,
    minutes: int,
) -> datetime:
    """Record the opening; when it expires. 400 unless `organization` holds blocked data."""
    if organization not in await holders(executor, ctx, patient):
        raise bad_request(
            f"{organization} holds no blocked data of Patient/{patient} for you: open one of "
            f"the care units or providers Patient/{patient}/$emergency-reveal names",
            "organization",
        )
    expires: datetime = await executor.fetchval(
        """INSERT INTO emergency_opening (user_hsa_id, patient_id, organization, reason, expires)
           VALUES ($1, $2, $3, $4, now() + make_interval(mins => $5)) RETURNING expires""",
        ctx.user_hsa_id,
        patient,
        organization,
        ctx.emergency_reason,
        minutes,
    )
    return expires
