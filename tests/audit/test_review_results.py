"""Stored results of log reviews (loggkontroll, L5: "review results are stored"):
`$review-result` records a reviewer's conclusion as a Basic, `$review-results` reads them
back; append-only, logged, refused without harm (flode.audit.results)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from conftest import Server
from flode.audit import Access, append
from flode.audit.event import HSA_ID
from flode.audit.result_basic import OUTCOME_SYSTEM, RESULT_EXTENSION
from flode.config import Config
from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator

from .conftest import PROVIDER, REVIEWER, UNIT, clinician, new_id, token

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
COMMISSION = "SE2321000131-U000000000900"


def new_reviewer() -> str:
    return f"SE2321000131-P{new_id()[:10]}"


def as_reviewer(server: Server, config: Config, hsa_id: str, client_id: str) -> httpx.AsyncClient:
    context = {
        "employee_hsa_id": hsa_id,
        "commission_hsa_id": COMMISSION,
        "care_unit_hsa_id": UNIT,
        "care_provider_hsa_id": PROVIDER,
    }
    headers = token(server, config, REVIEWER, context=context, client_id=client_id)
    return httpx.AsyncClient(base_url=server.base_url + "/", headers=headers)


class Reviewer:
    def __init__(self, client: httpx.AsyncClient, hsa_id: str, client_id: str) -> None:
        self.client, self.hsa_id, self.client_id = client, hsa_id, client_id


@pytest.fixture
async def person(server: Server, test_config: Config) -> AsyncIterator[Reviewer]:
    """A reviewer who is a person, at a care unit of a care provider."""
    hsa_id, client_id = new_reviewer(), f"reviewer-{new_id()[:8]}"
    async with as_reviewer(server, test_config, hsa_id, client_id) as client:
        yield Reviewer(client, hsa_id, client_id)


async def logged(pool: asyncpg.Pool, *patients: str) -> list[str]:
    """One read of each patient; the entries' ids."""
    ids = []
    for patient in patients:
        await append(pool, clinician(), [Access("read", "R", patient)], at=T0)
        ids.append(
            await pool.fetchval(
                "SELECT id FROM audit_event WHERE patient_id = $1 ORDER BY seq DESC LIMIT 1",
                patient,
            )
        )
    return ids


def result(**values: Any) -> dict[str, Any]:
    """A Parameters body: `entry` a list of references, the rest text or parts."""
    parameter: list[dict[str, Any]] = [
        {"name": "entry", "valueReference": {"reference": ref}} for ref in values.pop("entry", [])
    ]
    sample = values.pop("sample", None)
    parameter += [{"name": name, "valueString": value} for name, value in values.items()]
    if sample is not None:
        parts = [{"name": name, "valueString": value} for name, value in sample]
        parameter.append({"name": "sample", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameter}


def parts(basic: dict[str, Any]) -> dict[str, list[Any]]:
    (extension,) = basic["extension"]
    assert extension["url"] == RESULT_EXTENSION
    found: dict[str, list[Any]] = {}
    for part in extension["extension"]:
        value = next(v for k, v in part.items() if k.startswith("value") or k == "extension")
        found.setdefault(part["url"], []).append(value)
    return found


async def stored(pool: asyncpg.Pool, reviewer: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM audit_review_result WHERE reviewer_hsa_id = $1", reviewer
    )
    return count


async def ids(client: httpx.AsyncClient, params: dict[str, str] | list[Any]) -> list[str]:
    response = await client.get("AuditEvent/$review-results", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "searchset"
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


async def test_records_a_result_with_the_reviewer_from_the_token_and_reads_it_back(
    pool: asyncpg.Pool, person: Reviewer, definitions: Definitions
) -> None:
    first, second = await logged(pool, new_id(), new_id())
    body = result(
        entry=[f"AuditEvent/{first}", second],
        outcome="follow-up",
        comment="Läst utan vårdrelation; fråga chefen",
        sample=[("start", "2026-03-01"), ("end", "2026-03-31"), ("size", "20"), ("seed", "v9")],
    )
    response = await person.client.post("AuditEvent/$review-result", json=body)
    assert response.status_code == 200, response.text
    basic = response.json()
    assert basic["resourceType"] == "Basic"
    assert Validator(definitions).validate(basic) == []
    assert basic["code"]["coding"][0]["code"] == "log-review-result"
    assert basic["author"]["identifier"] == {"system": HSA_ID, "value": person.hsa_id}
    found = parts(basic)
    assert found["outcome"] == [
        {"system": OUTCOME_SYSTEM, "code": "follow-up", "display": found["outcome"][0]["display"]}
    ]
    assert found["comment"] == ["Läst utan vårdrelation; fråga chefen"]
    assert found["entry"] == [{"reference": f"AuditEvent/{id}"} for id in (first, second)]
    assert found["careUnit"] == [{"system": HSA_ID, "value": UNIT}]
    assert found["careProvider"] == [{"system": HSA_ID, "value": PROVIDER}]
    assert found["commission"] == [{"system": HSA_ID, "value": COMMISSION}]
    (sample,) = found["sample"]
    assert {"url": "seed", "valueString": "v9"} in sample
    row = await pool.fetchrow("SELECT * FROM audit_review_result WHERE id = $1", basic["id"])
    assert row is not None
    assert (row["reviewer_hsa_id"], row["care_unit"], row["outcome"]) == (
        person.hsa_id,
        UNIT,
        "follow-up",
    )
    assert row["entries"] == [first, second]
    assert row["sample"] == "start=2026-03-01&end=2026-03-31&size=20&seed=v9"
    client = person.client
    assert await ids(client, {"reviewer": person.hsa_id}) == [basic["id"]]
    assert await ids(client, {"entry": second}) == [basic["id"]]
    assert await ids(client, {"entry": f"AuditEvent/{first}", "outcome": "follow-up"}) == [
        basic["id"]
    ]
    assert await ids(client, {"entry": first, "outcome": "no-remark,incident"}) == []
    today = basic["created"]
    assert await ids(client, {"entry": first, "from": today, "to": today}) == [basic["id"]]
    assert await ids(client, {"entry": first, "from": "2999-01-01"}) == []
    assert await ids(client, {"entry": first, "to": "2000-01-01"}) == []


async def test_a_later_result_about_the_same_entry_is_kept_beside_the_first(
    pool: asyncpg.Pool, person: Reviewer
) -> None:
    (entry,) = await logged(pool, new_id())
    made = []
    for outcome in ("follow-up", "justified"):
        response = await person.client.post(
            "AuditEvent/$review-result", json=result(entry=[entry], outcome=outcome)
        )
        assert response.status_code == 200, response.text
        made.append(response.json()["id"])
    assert await ids(person.client, {"entry": entry}) == made[::-1]
    page = await person.client.get(
        "AuditEvent/$review-results", params={"entry": entry, "_count": "1"}
    )
    (next_link,) = [link["url"] for link in page.json()["link"] if link["relation"] == "next"]
    rest = (await person.client.get(next_link)).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == made[:1]


async def test_recording_is_logged_once_for_each_patient_of_the_entries(
    pool: asyncpg.Pool, person: Reviewer
) -> None:
    mine, theirs = new_id(), new_id()
    entries = await logged(pool, mine, theirs, mine)
    body = result(entry=entries, outcome="no-remark")
    response = await person.client.post("AuditEvent/$review-result", json=body)
    assert response.status_code == 200, response.text
    rows = await pool.fetch(
        "SELECT * FROM audit_event WHERE client_id = $1 AND interaction = 'log-review-result' "
        "ORDER BY seq",
        person.client_id,
    )
    assert [(r["patient_id"], r["action"], r["outcome"]) for r in rows] == [
        (mine, "C", "0"),
        (theirs, "C", "0"),
    ]
    assert rows[0]["agent_hsa_id"] == person.hsa_id
    touched = [e["what"]["reference"] for e in orjson.loads(rows[0]["content"])["entity"][1:-1]]
    assert touched == [f"AuditEvent/{entries[0]}", f"AuditEvent/{entries[2]}"]
    assert response.json()["id"] in orjson.loads(rows[0]["content"])["outcomeDesc"]


async def test_reading_results_is_logged_as_a_review(pool: asyncpg.Pool, person: Reviewer) -> None:
    await ids(person.client, {"reviewer": person.hsa_id})
    (row,) = await pool.fetch("SELECT * FROM audit_event WHERE client_id = $1", person.client_id)
    assert (row["interaction"], row["patient_id"]) == ("log-review", None)
    (query,) = [e["query"] for e in orjson.loads(row["content"])["entity"] if "query" in e]
    assert base64.b64decode(query).decode() == (
        f"AuditEvent/$review-results?reviewer={person.hsa_id}"
    )


async def test_the_stored_results_refuse_change_and_removal(
    pool: asyncpg.Pool, person: Reviewer
) -> None:
    (entry,) = await logged(pool, new_id())
    body = result(entry=[entry], outcome="incident")
    id = (await person.client.post("AuditEvent/$review-result", json=body)).json()["id"]
    for statement in (
        "UPDATE audit_review_result SET outcome = 'no-remark' WHERE id = $1",
        "DELETE FROM audit_review_result WHERE id = $1",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await pool.execute(statement, id)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("TRUNCATE audit_review_result")
    assert await stored(pool, person.hsa_id) == 1


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ({"outcome": "no-remark"}, 400),
        ({"entry": ["known"]}, 400),
        ({"entry": ["known"], "outcome": "fine"}, 400),
        ({"entry": ["Patient/1"], "outcome": "no-remark"}, 400),
        ({"entry": ["known"], "outcome": "no-remark", "care-unit": "x"}, 400),
        ({"entry": ["known"], "outcome": "no-remark", "sample": [("start", "2026-03-01")]}, 400),
        (
            {
                "entry": ["known"],
                "outcome": "no-remark",
                "sample": [("start", "March"), ("end", "2026-03-31"), ("seed", "x")],
            },
            400,
        ),
        ({"entry": ["known", "AuditEvent/unknown"], "outcome": "no-remark"}, 404),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    pool: asyncpg.Pool, person: Reviewer, values: dict[str, Any], status: int
) -> None:
    (known,) = await logged(pool, new_id())
    values["entry"] = [known if ref == "known" else ref for ref in values.get("entry", [])]
    response = await person.client.post("AuditEvent/$review-result", json=result(**values))
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await stored(pool, person.hsa_id) == 0


async def test_a_token_that_may_not_review_records_and_reads_nothing(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    (entry,) = await logged(pool, new_id())
    body = result(entry=[entry], outcome="no-remark")
    hsa_id = new_reviewer()
    context = {"employee_hsa_id": hsa_id, "patient": new_id()}
    for scopes, client_id in (
        (["user/Patient.rs"], f"nosy-{new_id()[:8]}"),
        (["patient/AuditEvent.rs"], f"app-{new_id()[:8]}"),
    ):
        headers = token(server, test_config, scopes, context=context, client_id=client_id)
        async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as c:
            assert (await c.post("AuditEvent/$review-result", json=body)).status_code == 403
            assert (await c.get("AuditEvent/$review-results")).status_code == 403
        rows = await pool.fetch(
            "SELECT interaction, outcome FROM audit_event WHERE client_id = $1 ORDER BY seq",
            client_id,
        )
        assert [tuple(row) for row in rows] == [("log-review-result", "4"), ("log-review", "4")]
    assert await stored(pool, hsa_id) == 0


async def test_a_token_without_a_user_reads_results_but_records_none(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    (entry,) = await logged(pool, new_id())
    response = await reviewer.post(
        "AuditEvent/$review-result", json=result(entry=[entry], outcome="no-remark")
    )
    assert response.status_code == 403
    assert "names no user" in response.text
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM audit_review_result WHERE $1 = ANY(entries)", entry
        )
        == 0
    )
    assert (await reviewer.get("AuditEvent/$review-results")).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"outcome": "fine"},
        {"entry": "Patient/1"},
        {"_count": "-1"},
        {"_cursor": "abc"},
        {"patient": "1"},
    ],
)
async def test_a_bad_results_query_is_a_400(
    reviewer: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await reviewer.get("AuditEvent/$review-results", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_the_capability_statement_lists_the_review_operations(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await client.get("metadata")).json()["rest"]
    (audit,) = [r for r in rest["resource"] if r["type"] == "AuditEvent"]
    names = ["review-sample", "review-result", "review-results"]
    assert [o["name"] for o in audit["operation"]] == names
    assert set(names) <= {o["name"] for o in rest["operation"]}
