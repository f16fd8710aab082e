"""The AuditEvent of one log entry (https://hl7.org/fhir/R4/auditevent.html, in the style of
IHE's Basic Audit Log Patterns): built once, stored as JSON text in `audit_event.content`, and
served as it is stored.

The flags that the database computes while inserting (protected identity, same surname) are
tags of the event, so the JSON is made in two parts: `head` ends inside `meta`, where the
insert splices in `,"tag":[…]` when the entry has flags, and `tail` closes `meta` and holds
the rest (flode.audit.record).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from flode.context import RequestContext

if TYPE_CHECKING:
    from flode.audit.record import Access

HSA_ID = "urn:oid:1.2.752.29.4.19"
CLIENT_ID = "http://flode.example.org/identifier/client-id"
FLAG_SYSTEM = "http://flode.example.org/CodeSystem/audit-flag"
INTERACTION_SYSTEM = "http://flode.example.org/CodeSystem/audit-interaction"
AGENT_SYSTEM = "http://flode.example.org/CodeSystem/audit-agent"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

RESTFUL_CODES = frozenset(
    {"read", "vread", "update", "patch", "delete", "history", "create", "search"}
)
OWN_CODES = frozenset(
    {
        "everything",
        "export",
        "emergency-reveal",
        "emergency-open",
        "log-review",
        "log-review-result",
        "log-extract",
        "log-prune",
    }
)
INTERACTIONS = RESTFUL_CODES | OWN_CODES
ACTIONS = frozenset("CRUDE")
OUTCOMES = frozenset({"0", "4", "8", "12"})
PURPOSES = frozenset({"TREAT", "ETREAT", "BTG"})
EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})
# Interactions whose `detail`, on success, is the query that was asked (entity.query); any
# other `detail` is AuditEvent.outcomeDesc.
QUERIES = frozenset({"search", "history", "everything", "export", "log-review", "log-extract"})
MAX_WHAT = 100
"""Resources named per entry at most; a search touching more of one patient's is still one
entry for that patient."""


def subtype_system(interaction: str) -> str:
    return RESTFUL if interaction in RESTFUL_CODES else INTERACTION_SYSTEM


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    found = {"system": system, "code": code}
    if display is not None:
        found["display"] = display
    return found


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def purpose_of(ctx: RequestContext) -> list[dict[str, Any]]:
    purpose: dict[str, Any] = _concept(ACT_REASON, ctx.purpose_of_use)
    if ctx.emergency_reason:
        purpose["text"] = ctx.emergency_reason
    return [purpose]


def agents(ctx: RequestContext) -> list[dict[str, Any]]:
    """Who: the user (requestor, with the commission as role), the client (module), and the
    care unit and care provider the user acts for, as agents of their own."""
    found: list[dict[str, Any]] = []
    user = ctx.user_hsa_id
    if user:
        agent: dict[str, Any] = {
            "type": _concept(PARTICIPATION, "IRCP", "information recipient"),
            "who": {"identifier": {"system": HSA_ID, "value": user}, "type": "Practitioner"},
            "requestor": True,
        }
        if ctx.commission_hsa_id:
            agent["role"] = [
                {
                    "coding": [_coding(HSA_ID, ctx.commission_hsa_id)],
                    "text": "Medarbetaruppdrag (commission)",
                }
            ]
        if ctx.subject and ctx.subject != user:
            agent["altId"] = ctx.subject
        found.append(agent)
    client: dict[str, Any] = {
        "type": _concept(DICOM, "110153", "Source Role ID"),
        "who": {
            "identifier": {"system": CLIENT_ID, "value": ctx.client_id or "flode"},
            "type": "Device",
        },
        "requestor": not user,
    }
    if not user and ctx.subject and ctx.subject != ctx.client_id:
        client["altId"] = ctx.subject
    found.append(client)
    for code, display, hsa_id in (
        ("care-unit", "Vårdenhet (care unit)", ctx.care_unit_hsa_id),
        ("care-provider", "Vårdgivare (care provider)", ctx.care_provider_hsa_id),
    ):
        if hsa_id:
            found.append(
                {
                    "type": _concept(AGENT_SYSTEM, code, display),
                    "who": {
                        "identifier": {"system": HSA_ID, "value": hsa_id},
                        "type": "Organization",
                    },
                    "requestor": False,
                }
            )
    return found


SOURCE = {
    "observer": {"display": "Flöde"},
    "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
}


def _is_query(access: Access) -> bool:
    """A successful search-like access's detail is the query; any other's says what happened
    (why it was denied, what a prune removed)."""
    return access.outcome == "0" and access.interaction in QUERIES


def _entities(access: Access, request_id: str, what: Sequence[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if access.patient is not None:
        found.append(
            {
                "what": {"reference": f"Patient/{access.patient}"},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    found.extend(
        {
            "what": {"reference": reference},
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        }
        for reference in what
    )
    if access.detail and _is_query(access):
        found.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(access.detail.encode()).decode(),
            }
        )
    if request_id:
        found.append(
            {
                "what": {"identifier": {"value": request_id}},
                "type": _coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
            }
        )
    return found


class Shared:
    """The parts of the events of one `append` call that are the same for all of them."""

    def __init__(self, ctx: RequestContext, recorded: str) -> None:
        self.recorded = recorded
        self.request_id = ctx.request_id
        self.purpose = orjson.Fragment(orjson.dumps(purpose_of(ctx)))
        self.agent = orjson.Fragment(orjson.dumps(agents(ctx)))


def parts(shared: Shared, id: str, access: Access, what: Sequence[str]) -> tuple[str, str]:
    """The AuditEvent JSON, split inside `meta` where the tags go."""
    head = (
        '{"resourceType":"AuditEvent","id":'
        + orjson.dumps(id).decode()
        + ',"meta":{"versionId":"1","lastUpdated":'
        + orjson.dumps(shared.recorded).decode()
    )
    body: dict[str, Any] = {
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(subtype_system(access.interaction), access.interaction)],
        "action": access.action,
        "recorded": shared.recorded,
        "outcome": access.outcome,
    }
    if access.detail and not _is_query(access):
        body["outcomeDesc"] = access.detail
    body["purposeOfEvent"] = shared.purpose
    body["agent"] = shared.agent
    body["source"] = SOURCE
    entities = _entities(access, shared.request_id, what)
    if entities:
        body["entity"] = entities
    tail = "}," + orjson.dumps(body).decode()[1:]
    return head, tail
