"""A log review result as a FHIR `Basic` (https://hl7.org/fhir/R4/basic.html), built once when
the result is recorded, stored as JSON text and served as stored (flode.audit.results).

- `code`: `log-review-result` of `BASIC_SYSTEM`;
- `author`: the reviewer, a Practitioner by HSA-id; `created`: the day (UTC), and
  `meta.lastUpdated` the instant, of recording (a result is never updated);
- one complex extension, `RESULT_EXTENSION`, with `outcome` (a Coding of `OUTCOME_SYSTEM`),
  `comment`, one `entry` per AuditEvent concluded about, the reviewer's `commission`,
  `careUnit` and `careProvider` (HSA-ids) and `client`, and the `sample` that drew the
  entries (`start`, `end`, `careUnit`, `size`, `seed`, `flag`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from flode.audit.event import CLIENT_ID, HSA_ID
from flode.context import RequestContext
from flode.fhir.dates import format_instant

if TYPE_CHECKING:
    from flode.audit.results import Submission
    from flode.audit.sample import Plan

BASIC_SYSTEM = "http://flode.example.org/CodeSystem/basic-resource-type"
OUTCOME_SYSTEM = "http://flode.example.org/CodeSystem/log-review-outcome"
RESULT_EXTENSION = "http://flode.example.org/StructureDefinition/log-review-result"
# The outcomes a reviewer can conclude, with their Swedish and English display. *Decision* for
# the legal owner: these four, and what each leads to, follow the review routine.
OUTCOMES = {
    "no-remark": "Utan anmärkning (no remark: the access is justified on its face)",
    "justified": "Befogad efter utredning (justified once followed up)",
    "follow-up": "Kräver uppföljning (needs follow-up with the user or their manager)",
    "incident": "Obehörig åtkomst (unauthorised access: handled as an incident)",
}


def _hsa(name: str, value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    return [{"url": name, "valueIdentifier": {"system": HSA_ID, "value": value}}]


def _sample(plan: Plan) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "start", "valueDateTime": plan.start},
        {"url": "end", "valueDateTime": plan.end},
        *_hsa("careUnit", plan.care_unit),
        {"url": "size", "valueUnsignedInt": plan.size},
        {"url": "seed", "valueString": plan.seed},
        *({"url": "flag", "valueCode": flag} for flag in plan.flags),
    ]
    return {"url": "sample", "extension": parts}


def basic(
    ctx: RequestContext, id: str, recorded: datetime, submission: Submission
) -> dict[str, Any]:
    """The Basic of a result recorded at `recorded` by the reviewer of `ctx`."""
    outcome = submission.outcome
    parts: list[dict[str, Any]] = [
        {
            "url": "outcome",
            "valueCoding": {
                "system": OUTCOME_SYSTEM,
                "code": outcome,
                "display": OUTCOMES[outcome],
            },
        }
    ]
    if submission.comment:
        parts.append({"url": "comment", "valueString": submission.comment})
    parts += [
        {"url": "entry", "valueReference": {"reference": f"AuditEvent/{entry}"}}
        for entry in submission.entries
    ]
    parts += _hsa("commission", ctx.commission_hsa_id)
    parts += _hsa("careUnit", ctx.care_unit_hsa_id)
    parts += _hsa("careProvider", ctx.care_provider_hsa_id)
    if ctx.client_id:
        parts.append(
            {"url": "client", "valueIdentifier": {"system": CLIENT_ID, "value": ctx.client_id}}
        )
    if submission.sample is not None:
        parts.append(_sample(submission.sample))
    instant = format_instant(recorded)
    return {
        "resourceType": "Basic",
        "id": id,
        "meta": {"versionId": "1", "lastUpdated": instant},
        "extension": [{"url": RESULT_EXTENSION, "extension": parts}],
        "code": {
            "coding": [
                {
                    "system": BASIC_SYSTEM,
                    "code": "log-review-result",
                    "display": "Resultat av loggkontroll (log review result)",
                }
            ]
        },
        "created": instant[:10],
        "author": {
            "identifier": {"system": HSA_ID, "value": ctx.user_hsa_id},
            "type": "Practitioner",
        },
    }
