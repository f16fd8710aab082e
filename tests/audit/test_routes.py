"""Reviewing the log over HTTP (loggkontroll, L5): `GET [base]/AuditEvent?…` and
`GET [base]/AuditEvent/{id}` served from the log, who may, that reviews are logged, and that
AuditEvent cannot be written (flode.api.audit_routes, flode.audit.review)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import orjson
import pytest

from conftest import Server
from flode.audit import Access, append
from flode.audit.event import CLIENT_ID, FLAG_SYSTEM, HSA_ID
from flode.config import Config
from flode.fhir.errors import FhirError
from flode.interactions.services import Services
from flode.interactions.update import prepare_update

from .conftest import REVIEWER, UNIT, clinician, new_id, token

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


async def ids(client: httpx.AsyncClient, params: dict[str, Any] | list[Any]) -> list[str]:
    response = await client.get("AuditEvent", params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def logged(pool: asyncpg.Pool, patient: str, times: list[datetime], **kw: Any) -> list[str]:
    """One entry about `patient` at each time; their ids in that order."""
    ctx = clinician(**kw)
    for at in times:
        await append(pool, ctx, [Access("read", "R", patient)], at=at)
    rows = await pool.fetch(
        "SELECT id FROM audit_event WHERE patient_id = $1 ORDER BY recorded", patient
    )
    return [row["id"] for row in rows]


async def test_a_review_by_patient_finds_its_entries_newest_first(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    patient = new_id()
    entries = await logged(pool, patient, [T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)])
    assert await ids(reviewer, {"patient": patient}) == entries[::-1]
    # The review is an access to the patient's log, logged as such: the next review finds it.
    (review, *rest) = await ids(reviewer, {"patient": f"Patient/{patient}"})
    assert rest == entries[::-1]
    assert await ids(reviewer, {"patient": patient, "_sort": "date", "subtype": "read"}) == entries
    assert (
        await ids(reviewer, {"patient": f"{patient},{new_id()}", "subtype": "read"})
        == entries[::-1]
    )
    assert (await reviewer.get(f"AuditEvent/{review}")).json()["subtype"][0]["code"] == (
        "log-review"
    )
    response = await reviewer.get(f"Patient/{patient}/AuditEvent", params={"subtype": "read"})
    assert [e["resource"]["id"] for e in response.json()["entry"]] == entries[::-1]
    response = await reviewer.get(f"AuditEvent/{entries[0]}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["entity"][0]["what"]["reference"] == f"Patient/{patient}"


async def test_a_review_by_user_over_a_date_range(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    user = f"SE2321000131-P{new_id()[:10]}"
    times = [T0 - timedelta(days=1), T0, T0 + timedelta(hours=5), T0 + timedelta(days=2)]
    entries = await logged(pool, new_id(), times, user_hsa_id=user, client_id="lab-app")
    day = [("agent", user), ("date", "ge2026-03-02"), ("date", "lt2026-03-03")]
    assert await ids(reviewer, day) == [entries[2], entries[1]]
    assert await ids(reviewer, [("agent", user), ("date", "2026-03-02")]) == [
        entries[2],
        entries[1],
    ]
    assert await ids(reviewer, [("agent", user), ("date", "gt2026-03-02")]) == [entries[3]]
    assert await ids(reviewer, [("agent", user), ("date", "le2026-03-01T23:00:00Z")]) == [
        entries[0]
    ]
    both_ends = [("agent", user), ("date", "lt2026-03-02,gt2026-03-03")]
    assert await ids(reviewer, both_ends) == [entries[3], entries[0]]
    by_identifier = {"agent:identifier": f"{HSA_ID}|{user}", "_sort": "date"}
    assert await ids(reviewer, by_identifier) == entries
    assert await ids(reviewer, {"agent:identifier": f"http://other|{user}"}) == []
    by_client = [("agent:identifier", f"{CLIENT_ID}|lab-app"), ("agent", user)]
    assert len(await ids(reviewer, by_client)) == 4


async def test_a_review_by_unit_flag_action_outcome_subtype_and_purpose(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = f"SE2321000131-E{new_id()[:10]}"
    patient = new_id()
    normal = clinician(care_unit_hsa_id=unit)
    emergency = clinician(care_unit_hsa_id=unit, purpose_of_use="ETREAT", emergency_reason="Akut")
    await append(pool, normal, [Access("update", "U", patient)])
    await append(pool, normal, [Access("read", "R", patient, outcome="4", detail="No")])
    await append(pool, emergency, [Access("read", "R", patient)])
    everything = await ids(reviewer, {"care-unit": unit})
    assert len(everything) == 3
    updated, refused, urgent = everything[::-1]
    assert await ids(reviewer, {"care-unit": f"{HSA_ID}|{unit}"}) == everything
    assert await ids(reviewer, {"care-unit": unit, "flag": "emergency"}) == [urgent]
    assert await ids(reviewer, {"care-unit": unit, "_tag": f"{FLAG_SYSTEM}|emergency"}) == [urgent]
    assert await ids(reviewer, {"care-unit": unit, "_tag": "http://other|emergency"}) == []
    assert await ids(reviewer, {"care-unit": unit, "action": "U"}) == [updated]
    assert await ids(reviewer, {"care-unit": unit, "outcome": "4"}) == [refused]
    assert await ids(reviewer, {"care-unit": unit, "subtype": "update"}) == [updated]
    restful = "http://hl7.org/fhir/restful-interaction|update"
    assert await ids(reviewer, {"care-unit": unit, "subtype": restful}) == [updated]
    assert await ids(reviewer, {"care-unit": unit, "purpose": "ETREAT"}) == [urgent]
    assert await ids(reviewer, {"_id": urgent}) == [urgent]


async def test_pages_follow_next_links_and_stay_put_while_entries_arrive(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    patient = new_id()
    entries = await logged(pool, patient, [T0 + timedelta(minutes=m) for m in range(5)])
    seen: list[str] = []
    response = await reviewer.get("AuditEvent", params={"patient": patient, "_count": "2"})
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        pages += 1
        await logged(pool, patient, [T0 + timedelta(days=365)])  # newer: before page one
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if "next" not in links:
            break
        assert "_cursor=" in links["next"]
        assert "_count=2" in links["next"]
        response = await reviewer.get(links["next"])
    assert pages == 3
    assert seen == entries[::-1]


async def test_the_total_is_counted_when_asked_for(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    patient = new_id()
    await logged(pool, patient, [T0, T0])
    bundle = (
        await reviewer.get("AuditEvent", params={"patient": patient, "_total": "accurate"})
    ).json()
    assert bundle["total"] == 2
    assert "total" not in (await reviewer.get("AuditEvent", params={"patient": patient})).json()
    first = await reviewer.get(
        "AuditEvent", params={"patient": patient, "_total": "accurate", "_count": "1"}
    )
    (next_link,) = [link["url"] for link in first.json()["link"] if link["relation"] == "next"]
    second = (await reviewer.get(next_link)).json()
    # the total counts every page's matches, the review of the first page among them
    assert second["total"] == first.json()["total"] + 1
    assert len(second["entry"]) == 1


async def test_a_review_in_a_form_body(pool: asyncpg.Pool, reviewer: httpx.AsyncClient) -> None:
    patient = new_id()
    entries = await logged(pool, patient, [T0])
    response = await reviewer.post("AuditEvent/_search", data={"patient": patient})
    assert response.status_code == 200, response.text
    assert [e["resource"]["id"] for e in response.json()["entry"]] == entries


@pytest.mark.parametrize(
    "params",
    [
        {"date": "2026-13-01"},
        {"date": "yesterday"},
        {"date": "xx2026-01-01"},
        {"date:missing": "true"},
        {"_sort": "patient"},
        {"_count": "-1"},
        {"_cursor": "abc"},
        {"action": "X"},
        {"outcome": "3"},
        {"subtype": "peek"},
        {"purpose": "HOBBY"},
        {"patient": "Group/1"},
        {"patient": ""},
        {"agent:identifier": "a|b|c"},
        {"flag:not": "emergency"},
        {"_total": "some"},
    ],
)
async def test_a_bad_review_query_is_a_400(
    reviewer: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await reviewer.get("AuditEvent", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_unknown_parameter_is_ignored_with_a_warning_unless_strict(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    patient = new_id()
    entries = await logged(pool, patient, [T0])
    response = await reviewer.get("AuditEvent", params={"patient": patient, "entity-name": "x"})
    assert response.status_code == 200
    bundle = response.json()
    assert [e["resource"]["id"] for e in bundle["entry"][:-1]] == entries
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert "entity-name" in outcome["resource"]["issue"][0]["diagnostics"]
    assert "entity-name" not in bundle["link"][0]["url"]
    strict = await reviewer.get(
        "AuditEvent",
        params={"patient": patient, "entity-name": "x"},
        headers={"Prefer": "handling=strict"},
    )
    assert strict.status_code == 400
    assert "entity-name" in strict.text


async def test_an_unknown_entry_is_a_404_and_history_is_not_supported(
    reviewer: httpx.AsyncClient,
) -> None:
    assert (await reviewer.get(f"AuditEvent/{new_id()}")).status_code == 404
    assert (await reviewer.get("AuditEvent/_history")).status_code == 405


async def test_a_reader_without_an_audit_event_scope_gets_403_and_is_logged(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    client_id = f"nosy-{new_id()[:8]}"
    headers = token(server, test_config, ["user/Patient.rs"], client_id=client_id)
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as nosy:
        assert (await nosy.get("AuditEvent", params={"patient": "1"})).status_code == 403
        assert (await nosy.get(f"AuditEvent/{new_id()}")).status_code == 403
        assert (await nosy.get("Patient/1/$log-extract")).status_code == 403
    rows = await pool.fetch(
        "SELECT interaction, outcome FROM audit_event WHERE client_id = $1 ORDER BY seq", client_id
    )
    assert [tuple(row) for row in rows] == [
        ("log-review", "4"),
        ("log-review", "4"),
        ("log-extract", "4"),
    ]


async def test_a_patient_token_sees_only_its_own_entries(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    mine, theirs = new_id(), new_id()
    own = await logged(pool, mine, [T0, T0 + timedelta(hours=1)])
    other = await logged(pool, theirs, [T0])
    headers = token(server, test_config, ["patient/AuditEvent.rs"], context={"patient": mine})
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as app:
        assert await ids(app, {}) == own[::-1]
        assert await ids(app, {"patient": theirs}) == []
        assert (await app.get(f"AuditEvent/{own[0]}")).status_code == 200
        assert (await app.get(f"AuditEvent/{other[0]}")).status_code == 404
        assert (await app.get(f"Patient/{mine}/$log-extract")).status_code == 200
        assert (await app.get(f"Patient/{theirs}/$log-extract")).status_code == 403
    launchless = token(server, test_config, ["patient/AuditEvent.rs"])
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=launchless) as app:
        assert (await app.get("AuditEvent")).status_code == 403


async def test_every_review_is_logged(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    client_id = f"reviewer-{new_id()[:8]}"
    patient = new_id()
    await logged(pool, patient, [T0])
    context = {"employee_hsa_id": "SE2321000131-P000000000777", "care_unit_hsa_id": UNIT}
    headers = token(server, test_config, REVIEWER, context=context, client_id=client_id)
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as c:
        (entry,) = await ids(c, {"patient": patient})
        assert (await c.get(f"AuditEvent/{entry}")).status_code == 200
        await ids(c, {"care-unit": UNIT, "_count": "1"})
    rows = await pool.fetch(
        "SELECT * FROM audit_event WHERE client_id = $1 ORDER BY seq", client_id
    )
    assert [(r["interaction"], r["action"], r["patient_id"]) for r in rows] == [
        ("log-review", "E", patient),
        ("log-review", "E", patient),
        ("log-review", "E", None),
    ]
    assert rows[0]["agent_hsa_id"] == "SE2321000131-P000000000777"
    queries = [
        base64.b64decode(e["query"]).decode()
        for row in rows
        for e in orjson.loads(row["content"])["entity"]
        if "query" in e
    ]
    assert queries == [
        f"AuditEvent?patient={patient}",
        f"AuditEvent/{entry}",
        f"AuditEvent?care-unit={UNIT}&_count=1",
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "AuditEvent", {"resourceType": "AuditEvent"}),
        ("PUT", "AuditEvent/x", {"resourceType": "AuditEvent", "id": "x"}),
        ("PATCH", "AuditEvent/x", [{"op": "remove", "path": "/outcome"}]),
        ("DELETE", "AuditEvent/x", None),
        ("DELETE", "AuditEvent?outcome=0", None),
        ("PUT", "AuditEvent?outcome=0", {"resourceType": "AuditEvent"}),
    ],
)
async def test_a_write_of_audit_event_is_refused_with_405(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    kind = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
    content = None if body is None else httpx.Request("POST", "/", json=body).content
    response = await client.request(method, path, content=content, headers={"Content-Type": kind})
    assert response.status_code == 405, response.text
    assert "append-only" in response.json()["issue"][0]["diagnostics"]


async def test_a_bundle_cannot_write_audit_events(client: httpx.AsyncClient) -> None:
    entry = {
        "resource": {"resourceType": "AuditEvent"},
        "request": {"method": "POST", "url": "AuditEvent"},
    }
    batch = await client.post(
        "", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    )
    assert batch.status_code == 200
    assert batch.json()["entry"][0]["response"]["status"].startswith("405")
    transaction = await client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    )
    assert transaction.status_code == 405
    assert "append-only" in transaction.text


async def test_the_capability_statement_lists_audit_event_as_read_and_search(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await client.get("metadata")).json()["rest"]
    (audit,) = [r for r in rest["resource"] if r["type"] == "AuditEvent"]
    assert [i["code"] for i in audit["interaction"]] == ["read", "search-type"]
    names = {p["name"] for p in audit["searchParam"]}
    assert names == {
        "_id",
        "_lastUpdated",
        "_tag",
        "action",
        "agent",
        "care-unit",
        "date",
        "flag",
        "outcome",
        "patient",
        "purpose",
        "subtype",
    }
    assert "log-extract" in {o["name"] for o in rest["operation"]}


def test_a_load_of_audit_events_is_refused() -> None:
    """`flode load` writes through the same preparation as PUT (both of its paths)."""
    with pytest.raises(FhirError) as caught:
        prepare_update(cast(Services, None), "AuditEvent", "x", {"resourceType": "AuditEvent"})
    assert caught.value.status == 405
