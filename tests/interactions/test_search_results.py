"""Result control of a search (https://hl7.org/fhir/R4/search.html#return): `_sort`, `_total`,
`_summary`, `_elements`, `_include` and `_revinclude`. Every search is scoped by a tag of its
own so that other tests' data cannot disturb it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

TAG_SYSTEM = "urn:flode:test"


def tagged(resource: dict[str, Any], tag: str) -> dict[str, Any]:
    return {**resource, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def get(client: httpx.AsyncClient, url: str, params: Any = None) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [r["id"] for r in entries(bundle, mode)]


def keys(bundle: dict[str, Any], mode: str) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in entries(bundle, mode)}


@pytest.fixture
async def family(client: httpx.AsyncClient) -> dict[str, Any]:
    """Three patients with a shared organization, observations on two of them."""
    tag = uuid.uuid4().hex
    p = tag[:8]
    org = tagged({"resourceType": "Organization", "id": f"{p}-org", "name": "Vårdcentral"}, tag)
    patients = [
        tagged(
            {
                "resourceType": "Patient",
                "id": f"{p}-pat-{n}",
                "name": [{"family": family, "given": [given]}],
                "birthDate": birth,
                "gender": gender,
                "managingOrganization": {"reference": f"Organization/{p}-org"},
            },
            tag,
        )
        for n, family, given, birth, gender in [
            (1, "Berg", "Anna", "1980-05-01", "female"),
            (2, "Åkesson", "Bo", "1975-01-20", "male"),
            (3, "Andersson", "Cecilia", "1990-12-31", "female"),
        ]
    ]
    observations = [
        tagged(
            {
                "resourceType": "Observation",
                "id": f"{p}-obs-{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                "subject": {"reference": f"Patient/{p}-pat-{patient}"},
                "effectiveDateTime": date,
                "valueQuantity": {"value": value, "unit": "cm"},
            },
            tag,
        )
        for n, patient, date, value in [
            (1, 1, "2020-01-01", 170),
            (2, 1, "2021-06-01", 171),
            (3, 2, "2019-03-15", 182),
        ]
    ]
    for resource in [org, *patients, *observations]:
        await put(client, resource)
    return {"tag": f"{TAG_SYSTEM}|{tag}", "p": p}


async def test_sort_orders_by_a_string_parameter_as_it_matches_without_case_or_accents(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    ascending = await get(client, "Patient", {"_tag": family["tag"], "_sort": "family"})
    # Åkesson, Andersson, Berg: compared as "akesson", "andersson", "berg"
    assert ids(ascending) == [f"{p}-pat-2", f"{p}-pat-3", f"{p}-pat-1"]
    descending = await get(client, "Patient", {"_tag": family["tag"], "_sort": "-family"})
    assert ids(descending) == [f"{p}-pat-1", f"{p}-pat-3", f"{p}-pat-2"]


async def test_sort_orders_by_a_date_and_by_several_keys(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    by_birth = await get(client, "Patient", {"_tag": family["tag"], "_sort": "-birthdate"})
    assert ids(by_birth) == [f"{p}-pat-3", f"{p}-pat-1", f"{p}-pat-2"]
    by_gender = await get(client, "Patient", {"_tag": family["tag"], "_sort": "gender,-birthdate"})
    assert ids(by_gender) == [f"{p}-pat-3", f"{p}-pat-1", f"{p}-pat-2"]
    by_value = await get(client, "Observation", {"_tag": family["tag"], "_sort": "-value-quantity"})
    assert ids(by_value) == [f"{p}-obs-3", f"{p}-obs-2", f"{p}-obs-1"]


async def test_sort_by_id_and_last_updated(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    by_id = await get(client, "Patient", {"_tag": family["tag"], "_sort": "-_id"})
    assert ids(by_id) == [f"{p}-pat-3", f"{p}-pat-2", f"{p}-pat-1"]
    by_time = await get(client, "Patient", {"_tag": family["tag"], "_sort": "_lastUpdated"})
    assert ids(by_time) == [f"{p}-pat-1", f"{p}-pat-2", f"{p}-pat-3"]


async def test_sort_puts_resources_without_a_value_last(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    tag = family["tag"].split("|")[1]
    await put(client, tagged({"resourceType": "Patient", "id": f"{family['p']}-pat-x"}, tag))
    for order in ("family", "-family"):
        found = await get(client, "Patient", {"_tag": family["tag"], "_sort": order})
        assert ids(found)[-1] == f"{family['p']}-pat-x"


async def test_sort_pages_follow_the_sort_order(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    first = await get(client, "Patient", {"_tag": family["tag"], "_sort": "family", "_count": 2})
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "_sort=family" in next_url
    second = await get(client, next_url)
    assert ids(first) + ids(second) == [f"{p}-pat-2", f"{p}-pat-3", f"{p}-pat-1"]


@pytest.mark.parametrize("sort", ["nonsense", "name:exact", "component-code-value-quantity"])
async def test_sort_by_an_unknown_or_unordered_parameter_is_refused(
    client: httpx.AsyncClient, sort: str
) -> None:
    resource = "Observation" if sort.startswith("component") else "Patient"
    response = await client.get(resource, params={"_sort": sort})
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_total_none_leaves_out_the_total_and_accurate_counts_every_match(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    none = await get(client, "Patient", {"_tag": family["tag"], "_total": "none", "_count": 1})
    assert "total" not in none
    accurate = await get(
        client, "Patient", {"_tag": family["tag"], "_total": "accurate", "_count": 1}
    )
    assert accurate["total"] == 3


async def test_total_estimate_is_a_non_negative_number(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(client, "Patient", {"_tag": family["tag"], "_total": "estimate", "_count": 1})
    assert isinstance(found["total"], int)
    assert found["total"] >= 0
    small = await get(client, "Patient", {"_tag": family["tag"], "_total": "estimate"})
    assert small["total"] == 3  # everything fits one page: the count is known exactly


async def test_summary_count_returns_only_the_total(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(client, "Observation", {"_tag": family["tag"], "_summary": "count"})
    assert found["total"] == 3
    assert "entry" not in found


async def test_summary_true_keeps_the_summary_elements_and_marks_them_subsetted(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(client, "Observation", {"_tag": family["tag"], "_summary": "true"})
    (observation, *_) = entries(found)
    assert {"code", "subject", "status", "valueQuantity"} <= set(observation)
    assert "text" not in observation
    tags = observation["meta"]["tag"]
    assert {"system": TAG_SYSTEM, "code": family["tag"].split("|")[1]} in tags
    assert any(t["code"] == "SUBSETTED" for t in tags)


async def test_summary_true_leaves_out_elements_that_are_not_in_the_summary(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    tag = family["tag"].split("|")[1]
    patient = tagged(
        {
            "resourceType": "Patient",
            "id": f"{family['p']}-pat-contact",
            "name": [{"family": "Ek"}],
            "contact": [{"name": {"family": "Ek"}}],
            "maritalStatus": {"text": "gift"},
        },
        tag,
    )
    await put(client, patient)
    found = await get(client, "Patient", {"_id": patient["id"], "_summary": "true"})
    (resource,) = entries(found)
    assert resource["name"] == [{"family": "Ek"}]
    assert "contact" not in resource
    assert "maritalStatus" not in resource


async def test_summary_data_drops_the_narrative_and_text_keeps_it(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    tag = family["tag"].split("|")[1]
    narrative = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ek</div>'}
    patient = tagged(
        {
            "resourceType": "Patient",
            "id": f"{family['p']}-pat-text",
            "text": narrative,
            "name": [{"family": "Ek"}],
        },
        tag,
    )
    await put(client, patient)
    (data,) = entries(await get(client, "Patient", {"_id": patient["id"], "_summary": "data"}))
    assert "text" not in data
    assert data["name"] == [{"family": "Ek"}]
    (text,) = entries(await get(client, "Patient", {"_id": patient["id"], "_summary": "text"}))
    assert text["text"] == narrative
    assert "name" not in text


async def test_elements_keeps_the_named_elements_and_the_mandatory_ones(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(client, "Observation", {"_tag": family["tag"], "_elements": "subject,value"})
    for observation in entries(found):
        # status and code are mandatory (1..1); value[x] is named as `value`.
        assert set(observation) == {
            "resourceType",
            "id",
            "meta",
            "status",
            "code",
            "subject",
            "valueQuantity",
        }
        assert any(t["code"] == "SUBSETTED" for t in observation["meta"]["tag"])


async def test_include_adds_the_referenced_resources_once_with_mode_include(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    found = await get(
        client, "Observation", {"_tag": family["tag"], "_include": "Observation:subject"}
    )
    assert len(ids(found)) == 3
    assert keys(found, "include") == {f"Patient/{p}-pat-1", f"Patient/{p}-pat-2"}
    assert found["total"] == 3  # included resources are not counted


async def test_include_with_a_target_type_and_the_wildcard(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    typed = await get(
        client, "Observation", {"_tag": family["tag"], "_include": "Observation:subject:Group"}
    )
    assert keys(typed, "include") == set()
    wildcard = await get(client, "Patient", {"_tag": family["tag"], "_include": "Patient:*"})
    assert keys(wildcard, "include") == {f"Organization/{p}-org"}


async def test_revinclude_adds_the_resources_that_refer_to_the_matches(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    found = await get(
        client,
        "Patient",
        {"_id": f"{p}-pat-1", "_revinclude": "Observation:subject"},
    )
    assert ids(found) == [f"{p}-pat-1"]
    assert keys(found, "include") == {f"Observation/{p}-obs-1", f"Observation/{p}-obs-2"}


async def test_include_iterate_follows_the_included_resources_too(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    params = [
        ("_id", f"{p}-obs-3"),
        ("_include", "Observation:subject"),
        ("_include:iterate", "Patient:organization"),
    ]
    found = await get(client, "Observation", params)
    assert keys(found, "include") == {f"Patient/{p}-pat-2", f"Organization/{p}-org"}
    without = await get(client, "Observation", [*params[:2], ("_include", "Patient:organization")])
    assert keys(without, "include") == {f"Patient/{p}-pat-2"}


async def test_revinclude_iterate_from_an_organization_reaches_the_observations(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    found = await get(
        client,
        "Organization",
        [
            ("_id", f"{p}-org"),
            ("_revinclude", "Patient:organization"),
            ("_revinclude:iterate", "Observation:subject"),
        ],
    )
    assert keys(found, "include") == {
        *(f"Patient/{p}-pat-{n}" for n in (1, 2, 3)),
        *(f"Observation/{p}-obs-{n}" for n in (1, 2, 3)),
    }


async def test_include_leaves_out_deleted_resources(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    p = family["p"]
    assert (await client.delete(f"Patient/{p}-pat-2")).status_code in (200, 204)
    found = await get(
        client, "Observation", {"_id": f"{p}-obs-3", "_include": "Observation:subject"}
    )
    assert keys(found, "include") == set()


@pytest.mark.parametrize(
    "include",
    ["Observation", "Observation:code", "Observation:nonsense", "Nonsense:subject", "a:b:c:d"],
)
async def test_a_malformed_or_unknown_include_is_refused(
    client: httpx.AsyncClient, include: str
) -> None:
    response = await client.get("Observation", params={"_include": include})
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_summary_applies_to_included_resources_too(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(
        client,
        "Observation",
        {"_tag": family["tag"], "_include": "Observation:subject", "_elements": "subject"},
    )
    for patient in entries(found, "include"):
        assert set(patient) == {"resourceType", "id", "meta"}


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


async def all_pages(client: httpx.AsyncClient, first: dict[str, Any]) -> list[dict[str, Any]]:
    pages = [first]
    while (url := next_link(pages[-1])) is not None:
        pages.append(await get(client, url))
    return pages


async def test_pages_stay_the_same_while_matches_are_updated_created_and_deleted(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    patients = [
        tagged({"resourceType": "Patient", "id": f"{tag[:8]}-{n}", "gender": "other"}, tag)
        for n in range(7)
    ]
    for patient in patients:
        await put(client, patient)
    first = await get(client, "Patient", {"_tag": f"{TAG_SYSTEM}|{tag}", "_count": 3})
    assert first["total"] == 7
    seen = ids(first)
    unseen = [p for p in patients if p["id"] not in seen]
    # While the client reads page one, others write: an unseen match is updated (it would
    # move to the front of a newest-first search), another is deleted, a new one is created.
    await put(client, {**unseen[0], "gender": "female"})
    assert (await client.delete(f"Patient/{unseen[1]['id']}")).status_code in (200, 204)
    await put(client, tagged({"resourceType": "Patient", "id": f"{tag[:8]}-new"}, tag))
    rest = await all_pages(client, first)
    assert all(not entries(page, "outcome") for page in rest)  # the links hold no unknowns
    later = [i for page in rest[1:] for i in ids(page)]
    assert sorted(later) == sorted([unseen[0]["id"], *(p["id"] for p in unseen[2:])])
    assert len(set(seen + later)) == len(seen + later)  # nothing twice
    updated = next(e for page in rest for e in entries(page) if e["id"] == unseen[0]["id"])
    assert updated["gender"] == "female"  # the current version is served


async def test_a_result_set_that_is_gone_is_computed_again_from_the_query(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    first = await get(client, "Patient", {"_tag": family["tag"], "_count": 2, "_sort": "_id"})
    url = next_link(first)
    assert url is not None
    assert "_results=" in url
    gone = httpx.URL(url).copy_set_param("_results", str(uuid.uuid4()))
    second = await get(client, str(gone))
    assert ids(second) == [f"{family['p']}-pat-3"]


async def test_a_malformed_result_set_id_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("Patient", params={"_results": "not-a-uuid"})
    assert response.status_code == 400
    assert "_results" in response.text


async def test_contained_false_is_the_default(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    found = await get(client, "Patient", {"_tag": family["tag"], "_contained": "false"})
    assert found["total"] == 3


async def test_summary_and_elements_apply_to_a_read_too(
    client: httpx.AsyncClient, family: dict[str, Any]
) -> None:
    url = f"Patient/{family['p']}-pat-1"
    summary = await client.get(url, params={"_summary": "true"})
    assert summary.status_code == 200
    assert summary.headers["etag"] == 'W/"1"'
    assert "managingOrganization" in summary.json()
    assert any(t["code"] == "SUBSETTED" for t in summary.json()["meta"]["tag"])
    picked = (await client.get(f"{url}/_history/1", params={"_elements": "gender"})).json()
    assert set(picked) == {"resourceType", "id", "meta", "gender"}
    whole = (await client.get(url)).json()
    assert "SUBSETTED" not in str(whole)
    assert (await client.get(url, params={"_summary": "count"})).status_code == 400
