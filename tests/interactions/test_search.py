"""search at type level (https://hl7.org/fhir/R4/http.html#search), for the parameters Flöde
supports so far: `_id`, `identifier` (https://hl7.org/fhir/R4/search.html#token) and
`_lastUpdated` (https://hl7.org/fhir/R4/search.html#date)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest


def identifier(system: str | None, value: str) -> dict[str, str]:
    return {"value": value} if system is None else {"system": system, "value": value}


async def created(client: httpx.AsyncClient, *identifiers: dict[str, str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if identifiers:
        resource["identifier"] = list(identifiers)
    response = await client.post("Patient", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def search(
    client: httpx.AsyncClient, params: Any = None, url: str = "Patient", **headers: str
) -> dict[str, Any]:
    response = await client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return bundle


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def ordered_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def new_system() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


async def test_search_returns_a_searchset_bundle_with_total_and_matches(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    a = await created(client, identifier(system, "1"))
    bundle = await search(client, {"identifier": f"{system}|1"})
    assert bundle["total"] == 1
    (entry,) = bundle["entry"]
    base = str(client.base_url).rstrip("/")
    assert entry["fullUrl"] == f"{base}/Patient/{a['id']}"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"] == a


async def test_id_matches_one_or_several_ids(client: httpx.AsyncClient) -> None:
    a, b, c = [await created(client) for _ in range(3)]
    assert ids(await search(client, {"_id": a["id"]})) == {a["id"]}
    assert ids(await search(client, {"_id": f"{a['id']},{c['id']}"})) == {a["id"], c["id"]}
    assert ids(await search(client, {"_id": str(uuid.uuid4())})) == set()
    assert b["id"] not in ids(await search(client, {"_id": a["id"]}))


async def test_identifier_matches_code_system_and_code_no_system_and_any_code_in_a_system(
    client: httpx.AsyncClient,
) -> None:
    system, other = new_system(), new_system()
    code = str(uuid.uuid4())
    with_system = await created(client, identifier(system, code))
    other_system = await created(client, identifier(other, code))
    no_system = await created(client, identifier(None, code))
    second_code = await created(client, identifier(system, "second"))
    everyone = {with_system["id"], other_system["id"], no_system["id"]}

    assert ids(await search(client, {"identifier": code})) == everyone
    assert ids(await search(client, {"identifier": f"{system}|{code}"})) == {with_system["id"]}
    assert ids(await search(client, {"identifier": f"|{code}"})) == {no_system["id"]}
    assert ids(await search(client, {"identifier": f"{system}|"})) == {
        with_system["id"],
        second_code["id"],
    }
    assert ids(await search(client, {"identifier": f"{other}|second"})) == set()


async def test_identifier_values_separated_by_commas_are_ored(client: httpx.AsyncClient) -> None:
    system = new_system()
    a = await created(client, identifier(system, "a"))
    b = await created(client, identifier(system, "b"))
    await created(client, identifier(system, "c"))
    found = await search(client, {"identifier": f"{system}|a,{system}|b,{system}|zz"})
    assert ids(found) == {a["id"], b["id"]}
    assert found["total"] == 2


async def test_repeated_parameters_are_anded(client: httpx.AsyncClient) -> None:
    system = new_system()
    both = await created(client, identifier(system, "x"), identifier(system, "y"))
    await created(client, identifier(system, "x"))
    found = await search(client, [("identifier", f"{system}|x"), ("identifier", f"{system}|y")])
    assert ids(found) == {both["id"]}


async def test_identifier_search_sees_the_current_version_only(client: httpx.AsyncClient) -> None:
    system = new_system()
    a = await created(client, identifier(system, "old"))
    changed = {"resourceType": "Patient", "id": a["id"], "identifier": [identifier(system, "new")]}
    assert (await client.put(f"Patient/{a['id']}", json=changed)).status_code == 200
    assert ids(await search(client, {"identifier": f"{system}|old"})) == set()
    assert ids(await search(client, {"identifier": f"{system}|new"})) == {a["id"]}


async def test_last_updated_supports_the_date_prefixes(client: httpx.AsyncClient) -> None:
    system = new_system()
    first = await created(client, identifier(system, "1"))
    second = await created(client, identifier(system, "2"))
    t1, t2 = first["meta"]["lastUpdated"], second["meta"]["lastUpdated"]
    one, two = {first["id"]}, {second["id"]}

    async def matching(value: str) -> set[str]:
        return ids(await search(client, {"identifier": f"{system}|", "_lastUpdated": value}))

    assert await matching(t1) == one
    assert await matching(f"eq{t2}") == two
    assert await matching(f"ne{t1}") == two
    assert await matching(f"gt{t1}") == two
    assert await matching(f"sa{t1}") == two
    assert await matching(f"ge{t1}") == one | two
    assert await matching(f"lt{t2}") == one
    assert await matching(f"eb{t2}") == one
    assert await matching(f"le{t1}") == one
    assert await matching(f"le{t2}") == one | two
    assert await matching(f"lt{t1},gt{t1}") == two
    day = datetime.fromisoformat(t1.replace("Z", "+00:00")).date()
    assert await matching(f"ge{day - timedelta(days=1)}") == one | two
    assert await matching(f"gt{day + timedelta(days=1)}") == set()
    assert await matching("ge2000-01-01T00:00:00+01:00") == one | two


async def test_a_last_updated_range_is_two_anded_parameters(client: httpx.AsyncClient) -> None:
    system = new_system()
    first = await created(client, identifier(system, "1"))
    second = await created(client, identifier(system, "2"))
    third = await created(client, identifier(system, "3"))
    params = [
        ("identifier", f"{system}|"),
        ("_lastUpdated", f"gt{first['meta']['lastUpdated']}"),
        ("_lastUpdated", f"lt{third['meta']['lastUpdated']}"),
    ]
    assert ids(await search(client, params)) == {second["id"]}


@pytest.mark.parametrize(
    "params",
    [
        {"_lastUpdated": "yesterday"},
        {"_lastUpdated": "gt2024-02-30"},
        {"_count": "-5"},
        {"_count": "many"},
        {"identifier": "|"},
    ],
)
async def test_an_invalid_parameter_value_returns_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("Patient", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_count_pages_through_the_matches_with_links(client: httpx.AsyncClient) -> None:
    system = new_system()
    for n in range(5):
        await created(client, identifier(system, str(n)))
    everything = ordered_ids(await search(client, {"identifier": f"{system}|"}))
    assert len(everything) == 5
    pages = [await search(client, {"identifier": f"{system}|", "_count": "2"})]
    while "next" in links(pages[-1]):
        pages.append(await search(client, url=links(pages[-1])["next"]))
        assert len(pages) <= 3
    assert [id for page in pages for id in ordered_ids(page)] == everything
    assert [page["total"] for page in pages] == [5, 5, 5]
    assert "previous" not in links(pages[0])
    assert ordered_ids(await search(client, url=links(pages[2])["previous"])) == ordered_ids(
        pages[1]
    )
    assert ordered_ids(await search(client, url=links(pages[2])["first"])) == ordered_ids(pages[0])
    assert "identifier=" in links(pages[1])["self"]


async def test_resources_written_while_paging_do_not_shift_later_pages(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    for n in range(4):
        await created(client, identifier(system, str(n)))
    everything = ordered_ids(await search(client, {"identifier": f"{system}|"}))
    page = await search(client, {"identifier": f"{system}|", "_count": "2"})
    seen = ordered_ids(page)
    while "next" in links(page):
        await created(client, identifier(system, "later"))
        page = await search(client, url=links(page)["next"])
        seen += ordered_ids(page)
    assert seen == everything


async def test_total_none_leaves_out_the_total(client: httpx.AsyncClient) -> None:
    system = new_system()
    await created(client, identifier(system, "1"))
    bundle = await search(client, {"identifier": f"{system}|", "_total": "none"})
    assert "total" not in bundle
    assert len(ids(bundle)) == 1


async def test_count_zero_returns_only_the_total(client: httpx.AsyncClient) -> None:
    system = new_system()
    for n in range(3):
        await created(client, identifier(system, str(n)))
    bundle = await search(client, {"identifier": f"{system}|", "_count": "0"})
    assert bundle["total"] == 3
    assert "entry" not in bundle
    assert "next" not in links(bundle)


async def test_an_unknown_parameter_is_ignored_and_reported_in_an_outcome_entry(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    a = await created(client, identifier(system, "1"))
    bundle = await search(client, {"identifier": f"{system}|1", "favourite-colour": "blue"})
    assert ids(bundle) == {a["id"]}
    assert bundle["total"] == 1
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcomes) == 1
    outcome = outcomes[0]["resource"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert "favourite-colour" in outcome["issue"][0]["diagnostics"]
    assert "favourite-colour" not in links(bundle)["self"]
    lenient = await search(
        client, {"identifier": f"{system}|1", "colour": "x"}, Prefer="handling=lenient"
    )
    assert ids(lenient) == {a["id"]}


async def test_an_unknown_parameter_under_strict_handling_returns_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "Patient", params={"favourite-colour": "blue"}, headers={"Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "favourite-colour" in response.text


async def test_search_of_an_unknown_type_returns_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("Patientt", params={"_id": "1"})).status_code == 404


async def test_search_orders_the_most_recently_updated_first(client: httpx.AsyncClient) -> None:
    system = new_system()
    first = await created(client, identifier(system, "1"))
    second = await created(client, identifier(system, "2"))
    assert ordered_ids(await search(client, {"identifier": f"{system}|"})) == [
        second["id"],
        first["id"],
    ]
    before = datetime.now(UTC)
    assert before > datetime.fromisoformat(second["meta"]["lastUpdated"].replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("lt9999", True),
        ("le9999-12-31T23:59:59-05:00", True),
        ("gt9999", False),
        ("ge0001", True),
        ("lt0001-01-01T00:30:00+01:00", False),
        ("2024-01-01T00:00:00+14:00", False),
    ],
)
async def test_last_updated_at_the_ends_of_time_is_not_an_error(
    client: httpx.AsyncClient, value: str, found: bool
) -> None:
    system = new_system()
    a = await created(client, identifier(system, "1"))
    bundle = await search(client, {"identifier": f"{system}|", "_lastUpdated": value})
    assert ids(bundle) == ({a["id"]} if found else set())


async def test_identifiers_longer_than_an_index_row_are_stored_and_found_exactly(
    client: httpx.AsyncClient,
) -> None:
    system = f"{new_system()}/{'s' * 3000}"
    value = uuid.uuid4().hex * 100
    long = await created(client, identifier(system, value))
    near = await created(client, identifier(system, value[:-1] + "x"))
    assert ids(await search(client, {"identifier": f"{system}|{value}"})) == {long["id"]}
    assert ids(await search(client, {"identifier": value})) == {long["id"]}
    assert ids(await search(client, {"identifier": f"{system}|"})) == {long["id"], near["id"]}
    response = await client.post(
        "Patient",
        json={"resourceType": "Patient", "identifier": [identifier(system, value)]},
        headers={"If-None-Exist": f"identifier={system}|{value}"},
    )
    assert response.status_code == 200
    assert response.json()["id"] == long["id"]
