"""Recording accesses (DOMAIN.md L4): `append` writes one log entry per patient touched, in one
statement, on the caller's connection (so inside its transaction: the entry exists exactly when
the access does) or on a pool.

The flags that depend on stored data are found by the same statement (the function
`audit_append` of migration 0013), from the search index: "protected-identity" (the Patient's
`_security` tokens hold a label of http://electronichealth.se/CodeSystem/SecurityLabel with
one of `PROTECTED_CODES`) and "same-surname" (the user's Practitioner, found by HSA-id,
shares a family name with the Patient; both are normalised alike in `search_string`, so
"Öberg" and "Oberg" are the same name).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flode.audit.event import (
    ACTIONS,
    EMERGENCY_PURPOSES,
    INTERACTIONS,
    MAX_WHAT,
    OUTCOMES,
    Shared,
    parts,
)
from flode.context import RequestContext
from flode.fhir.dates import format_instant

Executor = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy

PROTECTED_CODES = ("protected-information", "sekretessmarkering", "skyddadFolkbokforing")
FLAG_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Access:
    """One access to one patient's data (or to no patient's, `patient` None).

    interaction: read | vread | search | history | create | update | patch | delete |
    everything | export | emergency-reveal | emergency-open | log-review | log-review-result |
    log-extract | log-prune; action: AuditEvent.action (C R U D E); outcome: 0 success,
    4 minor failure (e.g. denied), 8 serious failure; `what`: the resources touched
    ("Type/id", at most 100 are kept); `flags`: what the caller knows ("no-care-relationship",
    "blocked-opened", …); `detail`: the query asked, or why the access was denied.
    """

    interaction: str
    action: str
    patient: str | None
    what: Sequence[str] = ()
    outcome: str = "0"
    flags: frozenset[str] = frozenset()
    detail: str | None = None

    def check(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"unknown audit interaction '{self.interaction}'")
        if self.action not in ACTIONS:
            raise ValueError(f"AuditEvent.action must be one of C R U D E, not '{self.action}'")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"AuditEvent.outcome must be 0, 4, 8 or 12, not '{self.outcome}'")
        for flag in self.flags:
            if not FLAG_CODE.match(flag):
                raise ValueError(f"an audit flag is a code like 'blocked-opened', not '{flag}'")


# The statement is the function `audit_append` of migration 0013 (one INSERT … SELECT that
# also finds the flags), so that its plan is made once per connection.
_APPEND = (
    "SELECT audit_append($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[], $9, $10, $11, $12, $13, $14, $15::text[])"
)


async def append(
    executor: Executor,
    ctx: RequestContext,
    accesses: Sequence[Access],
    *,
    at: datetime | None = None,
) -> None:
    """Log `accesses` (one per patient touched) made by the request `ctx`: one INSERT, on the
    caller's connection (inside its transaction) or on a pool. `at` is when, now by default."""
    if not accesses:
        return
    recorded = at or datetime.now(UTC)
    shared = Shared(ctx, format_instant(recorded))
    emergency = ctx.purpose_of_use in EMERGENCY_PURPOSES
    columns: tuple[list[str | None], ...] = ([], [], [], [], [], [], [], [])
    ids, patients, interactions, actions, outcomes, flags, heads, tails = columns
    for access in accesses:
        access.check()
        id = str(uuid.uuid4())
        what = list(dict.fromkeys(access.what))[:MAX_WHAT]
        head, tail = parts(shared, id, access, what)
        ids.append(id)
        patients.append(access.patient)
        interactions.append(access.interaction)
        actions.append(access.action)
        outcomes.append(access.outcome)
        known = (access.flags | {"emergency"}) if emergency else access.flags
        flags.append(",".join(sorted(known)))
        heads.append(head)
        tails.append(tail)
    await executor.execute(
        _APPEND,
        *columns,
        ctx.user_hsa_id,
        recorded,
        ctx.client_id,
        ctx.care_unit_hsa_id,
        ctx.care_provider_hsa_id,
        ctx.purpose_of_use,
        list(PROTECTED_CODES),
    )
