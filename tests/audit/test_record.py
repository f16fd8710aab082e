"""Recording accesses: one entry per patient, the flags the caller knows and the ones the
database finds, and the AuditEvent each entry holds (flode.audit.record, flode.audit.event)."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from flode.audit import FLAG_SYSTEM, Access, append
from flode.audit.event import CLIENT_ID, HSA_ID, INTERACTION_SYSTEM, RESTFUL
from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator

from .conftest import COMMISSION, PROVIDER, UNIT, USER, clinician, create, new_id

SECURITY = "http://electronichealth.se/CodeSystem/SecurityLabel"


async def entries(pool: asyncpg.Pool, request_id: str) -> list[asyncpg.Record]:
    """The entries a request made, in order, with their AuditEvents parsed."""
    return list(
        await pool.fetch(
            "SELECT * FROM audit_event WHERE content::jsonb->'entity' @> $1::jsonb ORDER BY seq",
            orjson.dumps([{"what": {"identifier": {"value": request_id}}}]).decode(),
        )
    )


def event(row: asyncpg.Record) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(row["content"])
    return parsed


async def test_one_entry_is_written_per_patient_touched(pool: asyncpg.Pool) -> None:
    ctx = clinician()
    patients = [new_id() for _ in range(3)]
    await append(
        pool, ctx, [Access("search", "E", p, detail="Observation?code=1") for p in patients]
    )
    found = await entries(pool, ctx.request_id)
    assert [row["patient_id"] for row in found] == patients
    assert len({row["id"] for row in found}) == 3
    assert all(row["interaction"] == "search" and row["outcome"] == "0" for row in found)
    assert {row["recorded"] for row in found} == {found[0]["recorded"]}


async def test_an_entry_is_written_in_the_transaction_of_the_access(pool: asyncpg.Pool) -> None:
    kept, undone = clinician(), clinician()
    async with pool.acquire() as conn:
        async with conn.transaction():
            await append(conn, kept, [Access("read", "R", new_id())])
        transaction = conn.transaction()
        await transaction.start()
        await append(conn, undone, [Access("read", "R", new_id())])
        await transaction.rollback()
    assert len(await entries(pool, kept.request_id)) == 1
    assert await entries(pool, undone.request_id) == []


async def test_nothing_is_written_for_no_accesses(pool: asyncpg.Pool) -> None:
    ctx = clinician()
    await append(pool, ctx, [])
    assert await entries(pool, ctx.request_id) == []


async def test_the_entry_holds_who_where_why_and_what(pool: asyncpg.Pool) -> None:
    ctx = clinician()
    patient = new_id()
    touched = [f"Observation/{n}" for n in range(150)]
    await append(pool, ctx, [Access("read", "R", patient, what=touched)])
    (row,) = await entries(pool, ctx.request_id)
    assert (row["agent_hsa_id"], row["client_id"]) == (USER, "journal-app")
    assert (row["care_unit"], row["care_provider"], row["purpose"]) == (UNIT, PROVIDER, "TREAT")
    audit = event(row)
    assert audit["id"] == row["id"]
    assert audit["type"]["code"] == "rest"
    assert audit["subtype"] == [{"system": RESTFUL, "code": "read"}]
    assert audit["action"] == "R"
    assert audit["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    user, client, unit, provider = audit["agent"]
    assert user["who"]["identifier"] == {"system": HSA_ID, "value": USER}
    assert user["requestor"] is True
    assert user["role"][0]["coding"][0] == {"system": HSA_ID, "code": COMMISSION}
    assert client["who"]["identifier"] == {"system": CLIENT_ID, "value": "journal-app"}
    assert client["requestor"] is False
    assert unit["who"]["identifier"]["value"] == UNIT
    assert provider["who"]["identifier"]["value"] == PROVIDER
    assert audit["source"]["observer"]["display"] == "Flöde"
    entities = audit["entity"]
    assert entities[0]["what"] == {"reference": f"Patient/{patient}"}
    assert entities[0]["role"]["code"] == "1"
    resources = [e for e in entities if e.get("role", {}).get("code") == "4"]
    assert [e["what"]["reference"] for e in resources] == touched[:100]


async def test_the_audit_event_is_valid_fhir(pool: asyncpg.Pool) -> None:
    ctx = clinician(purpose_of_use="ETREAT", emergency_reason="Medvetslös patient")
    await append(
        pool,
        ctx,
        [
            Access("search", "E", new_id(), what=["Condition/1"], detail="Condition?patient=1"),
            Access("read", "R", None, outcome="4", flags=frozenset({"no-care-relationship"})),
        ],
    )
    validator = Validator(Definitions.load())
    for row in await entries(pool, ctx.request_id):
        issues = [i for i in validator.validate(event(row)) if i.severity in ("error", "fatal")]
        assert issues == []


async def test_a_query_is_an_entity_and_a_refusal_is_the_outcome_description(
    pool: asyncpg.Pool,
) -> None:
    ctx = clinician()
    query = "Observation?patient=123&code=http://loinc.org|8480-6"
    await append(
        pool,
        ctx,
        [
            Access("search", "E", "123", detail=query),
            Access("read", "R", "123", outcome="4", detail="No care relationship"),
            Access("emergency-open", "E", "123"),
        ],
    )
    searched, refused, opened = (event(row) for row in await entries(pool, ctx.request_id))
    (asked,) = [e for e in searched["entity"] if "query" in e]
    assert base64.b64decode(asked["query"]).decode() == query
    assert "outcomeDesc" not in searched
    assert refused["outcome"] == "4"
    assert refused["outcomeDesc"] == "No care relationship"
    assert not [e for e in refused["entity"] if "query" in e]
    assert opened["subtype"] == [{"system": INTERACTION_SYSTEM, "code": "emergency-open"}]


async def test_an_emergency_purpose_flags_the_entry(pool: asyncpg.Pool) -> None:
    ctx = clinician(purpose_of_use="BTG", emergency_reason="Akut läge")
    await append(pool, ctx, [Access("read", "R", new_id(), flags=frozenset({"blocked-opened"}))])
    (row,) = await entries(pool, ctx.request_id)
    assert row["flags"] == ["blocked-opened", "emergency"]
    audit = event(row)
    assert audit["meta"]["tag"] == [
        {"system": FLAG_SYSTEM, "code": "blocked-opened"},
        {"system": FLAG_SYSTEM, "code": "emergency"},
    ]
    assert audit["purposeOfEvent"][0]["text"] == "Akut läge"


async def test_an_entry_without_flags_has_no_tags(pool: asyncpg.Pool) -> None:
    ctx = clinician()
    await append(pool, ctx, [Access("read", "R", new_id())])
    (row,) = await entries(pool, ctx.request_id)
    assert row["flags"] == []
    assert "tag" not in event(row)["meta"]


async def test_a_patient_with_protected_identity_flags_the_entry(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    protected = await create(
        client,
        {
            "resourceType": "Patient",
            "meta": {"security": [{"system": SECURITY, "code": "protected-information"}]},
            "name": [{"family": "Skyddad"}],
        },
    )
    plain = await create(client, {"resourceType": "Patient", "name": [{"family": "Öppen"}]})
    ctx = clinician()
    await append(pool, ctx, [Access("read", "R", protected), Access("read", "R", plain)])
    first, second = await entries(pool, ctx.request_id)
    assert first["flags"] == ["protected-identity"]
    assert second["flags"] == []
    assert event(first)["meta"]["tag"] == [{"system": FLAG_SYSTEM, "code": "protected-identity"}]


async def test_a_patient_with_the_users_surname_flags_the_entry(
    pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = f"SE2321000131-P{new_id()[:8]}"
    await create(
        client,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": HSA_ID, "value": user}],
            "name": [{"family": "Öberg", "given": ["Karin"]}],
        },
    )
    relative = await create(
        client, {"resourceType": "Patient", "name": [{"family": "Oberg", "given": ["Nils"]}]}
    )
    married = await create(
        client,
        {
            "resourceType": "Patient",
            "name": [{"family": "Lind"}, {"family": "ÖBERG", "use": "maiden"}],
        },
    )
    stranger = await create(client, {"resourceType": "Patient", "name": [{"family": "Öhman"}]})
    ctx = clinician(user_hsa_id=user)
    await append(pool, ctx, [Access("read", "R", p) for p in (relative, married, stranger)])
    flags = [row["flags"] for row in await entries(pool, ctx.request_id)]
    assert flags == [["same-surname"], ["same-surname"], []]
    other = clinician()  # a user without a Practitioner resource
    await append(pool, other, [Access("read", "R", relative)])
    assert [row["flags"] for row in await entries(pool, other.request_id)] == [[]]


@pytest.mark.parametrize(
    "access",
    [
        Access("peek", "R", "1"),
        Access("read", "X", "1"),
        Access("read", "R", "1", outcome="5"),
        Access("read", "R", "1", flags=frozenset({"Not a code"})),
        Access("read", "R", "1", flags=frozenset({"a,b"})),
    ],
)
async def test_an_access_that_is_not_well_formed_is_refused(
    pool: asyncpg.Pool, access: Access
) -> None:
    ctx = clinician()
    with pytest.raises(ValueError, match=r"audit interaction|action|outcome|audit flag"):
        await append(pool, ctx, [access])
    assert await entries(pool, ctx.request_id) == []
