"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history), and
paging through it (https://hl7.org/fhir/R4/http.html#paging)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def created(client: httpx.AsyncClient, resource_type: str = "Patient") -> dict[str, Any]:
    response = await client.post(resource_type, json={"resourceType": resource_type})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def updated(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    kind, id = resource["resourceType"], resource["id"]
    response = await client.put(f"{kind}/{id}", json={"resourceType": kind, "id": id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def get(client: httpx.AsyncClient, url: str, **params: str) -> dict[str, Any]:
    response = await client.get(url, params=params or None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "history"
    return body


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def keys(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(fullUrl, etag) of each entry: one per version."""
    return [(e["fullUrl"], e["response"]["etag"]) for e in bundle.get("entry", [])]


async def test_instance_history_lists_every_version_newest_first(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    id = new["id"]
    await updated(client, new)
    assert (await client.delete(f"Patient/{id}")).status_code == 204
    bundle = await get(client, f"Patient/{id}/_history")
    assert bundle["total"] == 3
    create, update, delete = reversed(bundle["entry"])
    assert create["request"] == {"method": "POST", "url": "Patient"}
    assert create["response"]["status"].startswith("201")
    assert create["response"]["etag"] == 'W/"1"'
    assert create["response"]["lastModified"] == create["resource"]["meta"]["lastUpdated"]
    assert update["request"] == {"method": "PUT", "url": f"Patient/{id}"}
    assert update["response"]["status"].startswith("200")
    assert update["resource"]["meta"]["versionId"] == "2"
    assert delete["request"] == {"method": "DELETE", "url": f"Patient/{id}"}
    assert "resource" not in delete
    assert delete["response"]["etag"] == 'W/"3"'
    base = str(client.base_url).rstrip("/")
    assert {e["fullUrl"] for e in bundle["entry"]} == {f"{base}/Patient/{id}"}


async def test_instance_history_of_an_unknown_resource_returns_404(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get(f"Patient/{uuid.uuid4()}/_history")).status_code == 404
    assert (await client.get("Patientt/_history")).status_code == 404


async def test_type_history_holds_only_that_type_newest_first(client: httpx.AsyncClient) -> None:
    since = stamp(datetime.now(UTC))
    patient = await created(client)
    person = await created(client, "Person")
    await updated(client, patient)
    bundle = await get(client, "Patient/_history", _since=since)
    entries = bundle["entry"]
    assert {e["resource"]["resourceType"] for e in entries} == {"Patient"}
    assert [e["response"]["etag"] for e in entries if e["resource"]["id"] == patient["id"]] == [
        'W/"2"',
        'W/"1"',
    ]
    assert person["id"] not in str(entries)
    modified = [e["response"]["lastModified"] for e in entries]
    assert modified == sorted(modified, reverse=True)


async def test_system_history_holds_every_type_newest_first(client: httpx.AsyncClient) -> None:
    since = stamp(datetime.now(UTC))
    patient = await created(client)
    person = await created(client, "Person")
    bundle = await get(client, "_history", _since=since)
    ids = [e["resource"]["id"] for e in bundle["entry"] if "resource" in e]
    assert ids.index(person["id"]) < ids.index(patient["id"])
    modified = [e["response"]["lastModified"] for e in bundle["entry"]]
    assert modified == sorted(modified, reverse=True)


@pytest.mark.parametrize(("level", "versions"), [("system", 5), ("type", 5), ("instance", 3)])
async def test_count_pages_through_history_with_next_previous_and_first_links(
    client: httpx.AsyncClient, level: str, versions: int
) -> None:
    since = stamp(datetime.now(UTC))
    first = await created(client)
    for _ in range(2):
        await updated(client, first)
    for _ in range(2):
        await created(client)
    url = {
        "system": "_history",
        "type": "Patient/_history",
        "instance": f"Patient/{first['id']}/_history",
    }[level]
    everything = keys(await get(client, url, _since=since))
    assert len(everything) == versions

    pages: list[dict[str, Any]] = [await get(client, url, _since=since, _count="2")]
    while "next" in links(pages[-1]):
        pages.append(await get(client, links(pages[-1])["next"]))
        assert len(pages) <= 3
    assert [key for page in pages for key in keys(page)] == everything
    assert all(len(page["entry"]) == 2 for page in pages[:-1])
    assert "previous" not in links(pages[0])
    previous = await get(client, links(pages[1])["previous"])
    assert keys(previous) == keys(pages[0])
    assert keys(await get(client, links(pages[-1])["first"])) == keys(pages[0])
    assert keys(await get(client, links(pages[1])["self"])) == keys(pages[1])


async def test_pages_stay_the_same_when_writes_happen_between_page_fetches(
    client: httpx.AsyncClient,
) -> None:
    since = stamp(datetime.now(UTC))
    resources = [await created(client) for _ in range(5)]
    everything = keys(await get(client, "Patient/_history", _since=since))
    assert len(everything) == 5
    page = await get(client, "Patient/_history", _since=since, _count="2")
    seen = keys(page)
    while "next" in links(page):
        # Writes between page fetches: new resources and new versions of listed ones.
        await updated(client, resources[0])
        await created(client)
        await client.delete(f"Patient/{resources[-1]['id']}")
        page = await get(client, links(page)["next"])
        seen += keys(page)
    assert seen == everything
    assert len(keys(await get(client, "Patient/_history", _since=since))) > 5


async def test_since_includes_versions_written_at_or_after_the_instant(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    second = await updated(client, new)
    await updated(client, second)
    url = f"Patient/{new['id']}/_history"
    at_second = await get(client, url, _since=second["meta"]["lastUpdated"])
    assert [e["response"]["etag"] for e in at_second["entry"]] == ['W/"3"', 'W/"2"']
    after = stamp(parse(second["meta"]["lastUpdated"]) + timedelta(microseconds=1))
    assert len((await get(client, url, _since=after))["entry"]) == 1
    assert "entry" not in await get(client, url, _since="2999-01-01T00:00:00Z")
    assert len((await get(client, url, _since="2001-01-01T00:00:00+02:00"))["entry"]) == 3
    next_url = links(await get(client, url, _since=after, _count="1"))["self"]
    assert "_since=" in next_url


async def test_at_returns_the_versions_current_at_some_point_in_the_period(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    await asyncio.sleep(0.01)
    second = await updated(client, new)
    url = f"Patient/{new['id']}/_history"
    created_at = parse(new["meta"]["lastUpdated"])
    updated_at = parse(second["meta"]["lastUpdated"])
    between = created_at + (updated_at - created_at) / 2

    def etags(bundle: dict[str, Any]) -> list[str]:
        return [e["response"]["etag"] for e in bundle.get("entry", [])]

    assert etags(await get(client, url, _at=stamp(between))) == ['W/"1"']
    assert etags(await get(client, url, _at=stamp(updated_at))) == ['W/"2"']
    assert etags(await get(client, url, _at="2999")) == ['W/"2"']
    assert etags(await get(client, url, _at="2001")) == []
    assert etags(await get(client, url, _at=str(created_at.year))) == ['W/"2"', 'W/"1"']


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_since", "yesterday"),
        ("_since", "2024-13-01"),
        ("_at", "2024-02-30"),
        ("_count", "-1"),
        ("_count", "ten"),
        ("_count", "1.5"),
    ],
)
async def test_an_invalid_history_parameter_returns_400(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    new = await created(client)
    for url in (f"Patient/{new['id']}/_history", "Patient/_history", "_history"):
        response = await client.get(url, params={name: value})
        assert response.status_code == 400, (url, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_count_zero_returns_no_entries_and_no_next_link_to_the_same_page(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    await updated(client, new)
    bundle = await get(client, f"Patient/{new['id']}/_history", _count="0")
    assert "entry" not in bundle
    assert "next" not in links(bundle)
    assert bundle.get("total", 2) == 2
