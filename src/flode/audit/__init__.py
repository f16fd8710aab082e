"""The access log (DOMAIN.md L4 loggning, L5 loggkontroll, L6 logguttag; docs/audit.md).

Callers record every access with `append(executor, ctx, [Access(...), …])`, one `Access` per
patient touched, on the connection of the access's own transaction. The entries are sealed
into a hash chain in the background (flode.audit.seal), reviewed as AuditEvents
(flode.audit.review), sampled for systematic review (flode.audit.sample) with the reviewers'
conclusions stored (flode.audit.results), extracted for the patient (flode.audit.extract) and
kept at least five years (flode.audit.prune).
"""

from __future__ import annotations

from flode.audit.event import FLAG_SYSTEM, INTERACTION_SYSTEM
from flode.audit.record import Access, Executor, append
from flode.fhir.errors import FhirError, error

AUDIT_EVENT = "AuditEvent"


def append_only() -> FhirError:
    """405 for any write of AuditEvent through the FHIR API: the log is Flöde's own."""
    return error(
        405,
        "not-supported",
        "AuditEvent is Flöde's access log, which is append-only and written by Flöde alone: "
        "it can be read and searched (GET [base]/AuditEvent, GET [base]/AuditEvent/{id}), "
        "never created, changed or deleted through the API, and it keeps no versions",
    )


__all__ = [
    "AUDIT_EVENT",
    "FLAG_SYSTEM",
    "INTERACTION_SYSTEM",
    "Access",
    "Executor",
    "append",
    "append_only",
]
