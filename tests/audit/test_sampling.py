"""Sampling the log for a systematic review (loggkontroll, L5): `$review-sample` over HTTP,
its systematic and random parts, reproducibility from the seed, the spread over users and
patients, who may, and that it is logged (flode.audit.sample)."""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from conftest import Server
from flode.audit import Access, append
from flode.audit.sample import SELECTION, SYSTEMATIC_CAP
from flode.config import Config
from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator

from .conftest import REVIEWER, clinician, new_id, token

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
MARCH = (("start", "2026-03-01"), ("end", "2026-03-31"))


def new_unit() -> str:
    return f"SE2321000131-E{new_id()[:10]}"


def new_user() -> str:
    return f"SE2321000131-P{new_id()[:10]}"


def parameters(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A Parameters body: text as valueString, whole numbers as valueInteger."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": name, "valueInteger" if isinstance(value, int) else "valueString": value}
            for name, value in pairs
        ],
    }


async def entries(
    pool: asyncpg.Pool, unit: str, user: str, patients: list[str], at: datetime, **kw: Any
) -> list[str]:
    """One read of each patient by `user` at `unit`, at `at`; their ids."""
    flags = kw.pop("flags", frozenset())
    ctx = clinician(care_unit_hsa_id=unit, user_hsa_id=user, **kw)
    await append(pool, ctx, [Access("read", "R", p, flags=flags) for p in patients], at=at)
    rows = await pool.fetch(
        "SELECT id FROM audit_event WHERE care_unit = $1 AND agent_hsa_id = $2 AND recorded = $3 "
        "ORDER BY seq",
        unit,
        user,
        at,
    )
    return [row["id"] for row in rows]


async def sample(client: httpx.AsyncClient, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    response = await client.post("AuditEvent/$review-sample", json=parameters(pairs))
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["type"] == "searchset"
    return bundle


def chosen(bundle: dict[str, Any], method: str | None = None) -> list[str]:
    """The ids of the entries drawn (by `method`, if given), in order."""
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match" and method in (None, reason(e)[0])
    ]


def reason(entry: dict[str, Any]) -> tuple[str, list[Any]]:
    """How an entry was chosen, and the flags (systematic) or the round (random)."""
    (extension,) = entry["search"]["extension"]
    assert extension["url"] == SELECTION
    parts = extension["extension"]
    method = next(p["valueCode"] for p in parts if p["url"] == "method")
    rest = [p.get("valueCode", p.get("valuePositiveInt")) for p in parts if p["url"] != "method"]
    return method, rest


def outcome(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    (last,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    issues: list[dict[str, Any]] = last["resource"]["issue"]
    return issues


async def test_returns_every_flagged_entry_of_the_period_as_systematic(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient, definitions: Definitions
) -> None:
    unit, user = new_unit(), new_user()
    emergency = {"purpose_of_use": "ETREAT", "emergency_reason": "Akut"}
    urgent = await entries(pool, unit, user, [new_id() for _ in range(3)], T0, **emergency)
    await entries(pool, unit, user, [new_id()], T0 - timedelta(days=5), **emergency)  # February
    nosy = await entries(
        pool, unit, new_user(), [new_id()], T0 + timedelta(hours=1),
        flags=frozenset({"no-care-relationship"}),
    )  # fmt: skip
    plain = await entries(pool, unit, user, [new_id() for _ in range(10)], T0 + timedelta(days=1))
    bundle = await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 0)])
    assert chosen(bundle) == [*urgent, *nosy]
    assert Validator(definitions).validate(bundle) == []
    reasons = [reason(e) for e in bundle["entry"][:-1]]
    assert reasons == [("systematic", ["emergency"])] * 3 + [
        ("systematic", ["no-care-relationship"])
    ]
    assert bundle["total"] == 4
    by_flag = await sample(
        reviewer, [*MARCH, ("care-unit", unit), ("flag", "emergency"), ("size", 20)]
    )
    assert chosen(by_flag, "systematic") == urgent
    # the entries with other flags are among the rest, drawn at random
    assert sorted(chosen(by_flag, "random")) == sorted([*nosy, *plain])


async def test_draws_the_same_sample_again_from_the_same_seed(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = new_unit()
    for day in range(5):
        patients = [new_id() for _ in range(8)]
        await entries(pool, unit, new_user(), patients, T0 + timedelta(days=day))
    asked = [*MARCH, ("care-unit", unit), ("size", 8)]
    first = chosen(await sample(reviewer, [*asked, ("seed", "vt-2026")]))
    again = chosen(await sample(reviewer, [*asked, ("seed", "vt-2026")]))
    other = chosen(await sample(reviewer, [*asked, ("seed", "ht-2026")]))
    assert len(first) == 8
    assert again == first
    assert other != first
    smaller = chosen(await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 4),
                                             ("seed", "vt-2026")]))  # fmt: skip
    assert smaller == first[:4]


async def test_without_a_seed_makes_one_that_draws_the_sample_again(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = new_unit()
    await entries(pool, unit, new_user(), [new_id() for _ in range(30)], T0)
    bundle = await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 5)])
    (self_link,) = [link["url"] for link in bundle["link"] if link["relation"] == "self"]
    assert "seed=" in self_link
    seed = self_link.split("seed=")[1].split("&")[0]
    assert f"seed {seed}" in outcome(bundle)[0]["diagnostics"]
    again = await reviewer.get(self_link)
    assert again.status_code == 200, again.text
    assert chosen(again.json()) == chosen(bundle)


async def test_spreads_the_random_part_over_users_before_taking_a_second_of_anyone(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = new_unit()
    busy, *few = [new_user() for _ in range(4)]
    await entries(pool, unit, busy, [new_id() for _ in range(30)], T0)
    for user in few:
        await entries(pool, unit, user, [new_id()], T0 + timedelta(hours=2))
    for seed in ("a", "b", "c"):
        bundle = await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 6), ("seed", seed)])
        users = Counter(e["resource"]["agent"][0]["who"]["identifier"]["value"]
                        for e in bundle["entry"][:-1])  # fmt: skip
        assert users == {busy: 3, **{user: 1 for user in few}}
        rounds = [reason(e)[1][0] for e in bundle["entry"][:-1]]
        assert sorted(rounds) == [1, 1, 1, 1, 2, 3]


async def test_takes_one_entry_of_each_patient_a_user_accessed_before_a_second(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit, user = new_unit(), new_user()
    often, once, twice = new_id(), new_id(), new_id()
    await entries(pool, unit, user, [often] * 20 + [once] + [twice] * 2, T0)
    for seed in ("a", "b"):
        bundle = await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 3), ("seed", seed)])
        patients = [e["resource"]["entity"][0]["what"]["reference"] for e in bundle["entry"][:-1]]
        assert sorted(patients) == sorted(f"Patient/{p}" for p in (often, once, twice))


async def test_caps_the_systematic_part_and_says_so(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = new_unit()
    ctx = clinician(care_unit_hsa_id=unit, purpose_of_use="BTG", emergency_reason="Akut")
    await append(pool, ctx, [Access("read", "R", new_id()) for _ in range(SYSTEMATIC_CAP + 1)],
                 at=T0)  # fmt: skip
    bundle = await sample(reviewer, [*MARCH, ("care-unit", unit), ("size", 0)])
    assert len(chosen(bundle, "systematic")) == SYSTEMATIC_CAP
    (_, capped) = outcome(bundle)
    assert capped["severity"] == "warning"
    assert f"{SYSTEMATIC_CAP + 1} entries of the period are flagged" in capped["diagnostics"]


async def test_a_sample_is_asked_for_in_the_url_too(
    pool: asyncpg.Pool, reviewer: httpx.AsyncClient
) -> None:
    unit = new_unit()
    ids = await entries(pool, unit, new_user(), [new_id(), new_id()], T0)
    response = await reviewer.get(
        "AuditEvent/$review-sample",
        params=[*MARCH, ("care-unit", f"urn:oid:1.2.752.29.4.19|{unit}"), ("size", "5")],
    )
    assert response.status_code == 200, response.text
    assert sorted(chosen(response.json(), "random")) == sorted(ids)


async def test_a_sample_is_logged_as_a_review_with_its_seed(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    client_id = f"reviewer-{new_id()[:8]}"
    unit = new_unit()
    await entries(pool, unit, new_user(), [new_id()], T0)
    headers = token(server, test_config, REVIEWER, client_id=client_id)
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as c:
        await sample(c, [*MARCH, ("care-unit", unit), ("size", 1), ("seed", "s1")])
    (row,) = await pool.fetch("SELECT * FROM audit_event WHERE client_id = $1", client_id)
    assert (row["interaction"], row["action"], row["outcome"]) == ("log-review", "E", "0")
    (query,) = [e["query"] for e in orjson.loads(row["content"])["entity"] if "query" in e]
    assert base64.b64decode(query).decode() == (
        f"AuditEvent/$review-sample?start=2026-03-01&end=2026-03-31&care-unit={unit}&size=1&seed=s1"
    )


@pytest.mark.parametrize(
    "pairs",
    [
        [("end", "2026-03-31")],
        [("start", "2026-03-01")],
        [("start", "March"), ("end", "2026-03-31")],
        [("start", "2026-03-31"), ("end", "2026-03-01")],
        [*MARCH, ("size", 100_000)],
        [*MARCH, ("size", "many")],
        [*MARCH, ("flag", "Emergency!")],
        [*MARCH, ("care-unit", "http://other|x")],
        [*MARCH, ("seed", "x" * 65)],
        [*MARCH, ("seed", "a"), ("seed", "b")],
        [*MARCH, ("patient", "123")],
    ],
)
async def test_a_bad_sample_request_is_a_400(
    reviewer: httpx.AsyncClient, pairs: list[tuple[str, Any]]
) -> None:
    response = await reviewer.post("AuditEvent/$review-sample", json=parameters(pairs))
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_body_that_is_not_parameters_is_a_400(reviewer: httpx.AsyncClient) -> None:
    response = await reviewer.post("AuditEvent/$review-sample", json={"resourceType": "Patient"})
    assert response.status_code == 400
    assert "Parameters" in response.text


async def test_a_token_that_may_not_review_gets_403_and_is_logged(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    client_id = f"nosy-{new_id()[:8]}"
    headers = token(server, test_config, ["user/Patient.rs"], client_id=client_id)
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as nosy:
        response = await nosy.post("AuditEvent/$review-sample", json=parameters([*MARCH]))
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    rows = await pool.fetch(
        "SELECT interaction, outcome FROM audit_event WHERE client_id = $1", client_id
    )
    assert [tuple(row) for row in rows] == [("log-review", "4")]


async def test_a_patient_token_samples_its_own_patients_entries_only(
    server: Server, test_config: Config, pool: asyncpg.Pool
) -> None:
    unit = new_unit()
    mine, theirs = new_id(), new_id()
    own = await entries(pool, unit, new_user(), [mine, theirs], T0)
    headers = token(server, test_config, ["patient/AuditEvent.rs"], context={"patient": mine})
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as app:
        bundle = await sample(app, [*MARCH, ("care-unit", unit)])
    assert chosen(bundle) == own[:1]
