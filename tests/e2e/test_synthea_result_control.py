"""What comes back from a search of the Synthea patients (https://hl7.org/fhir/R4/search.html#return):
`_sort`, `_include`/`_revinclude`, `_summary`, `_elements` and `_total`, across types and in a
patient's compartment. Expectations come from `evaluator.py` and `result_rules.py`, which share
no code with Flöde."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from .evaluator import Evaluator
from .result_rules import (
    MANDATORY,
    SUMMARY,
    element_of,
    in_patient_compartment,
    included,
    is_subsetted,
    sort_groups,
)
from .synthea import STRICT, Loaded, entries, next_link, parse_case, search_pages

Resource = dict[str, Any]
Key = tuple[str, str]


def busiest_patient(loaded: Loaded) -> str:
    """The patient with the most encounters (ties by id): "{P}" in the cases below."""
    counts = Counter[str](e["subject"]["reference"] for e in loaded.dataset.of_type("Encounter"))
    reference: str = min(counts, key=lambda r: (-counts[r], r))
    return reference.removeprefix("Patient/")


def case_query(loaded: Loaded, case: str) -> tuple[str, list[tuple[str, str]]]:
    return parse_case(case.replace("{P}", busiest_patient(loaded)))


async def search(
    client: httpx.AsyncClient, loaded: Loaded, path: str, query: list[tuple[str, str]]
) -> list[Resource]:
    count = [] if any(name == "_count" for name, _ in query) else [("_count", "1000")]
    return await search_pages(client, path, [*query, loaded.tag_param, *count])


def key(resource: Resource) -> Key:
    return resource["resourceType"], resource["id"]


def matches(loaded: Loaded, resource_type: str, query: list[tuple[str, str]]) -> set[Key]:
    expected = Evaluator(loaded.dataset).search(resource_type, query)
    assert expected.must == expected.may
    return {(resource_type, id) for id in expected.must}


# ---------------------------------------------------------------------------------------------
# _sort (search.html#sort)

SORT_CASES = [
    "Observation?patient={P}&_sort=date",
    "Observation?patient={P}&_sort=-date",
    "Encounter?patient={P}&_sort=date",
    "Encounter?patient={P}&_sort=-date",
    "Patient?_sort=birthdate",
    "Patient?_sort=-birthdate",
    "Patient?_sort=family",
    "Patient?_sort=-family",
    "Patient?_sort=gender,-birthdate",
    "Observation?code=39156-5&_sort=-value-quantity",
    "Observation?code=8302-2&_sort=value-quantity",
    "Condition?_sort=onset-date",
    "Procedure?patient={P}&_sort=-date",
    "Observation?code=8302-2&_sort=date&_count=7",
]


@pytest.mark.parametrize("case", SORT_CASES)
async def test_sort_orders_the_matches(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """Ascending by the lowest value, descending by the highest; a date's range starts at its
    lowest and ends at its highest value. Ties may come in any order; paging keeps the order."""
    resource_type, query = case_query(synthea, case)
    evaluator = Evaluator(synthea.dataset)
    ids = evaluator.search(resource_type, query).must
    resources = [r for r in synthea.dataset.of_type(resource_type) if r["id"] in ids]
    groups = sort_groups(evaluator, resources, dict(query)["_sort"])
    found = [r["id"] for r in entries(await search(client, synthea, resource_type, query))]
    assert sorted(found) == sorted(ids)
    at = 0
    for group in groups:
        assert set(found[at : at + len(group)]) == group, f"at position {at}"
        at += len(group)


async def test_next_links_work_under_strict_handling(
    synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """A client that asks for `Prefer: handling=strict` sends it with every request; the
    parameters of the server's own `next` link are not unknown to it."""
    params = [("code", "8302-2"), ("_count", "7"), synthea.tag_param]
    first = await client.get("Observation", params=tuple(params), headers=STRICT)
    assert first.status_code == 200
    next_url = next_link(first.json())
    assert next_url is not None
    second = await client.get(next_url, headers=STRICT)
    assert second.status_code == 200, second.text[:500]
    assert len(entries([second.json()])) == 7


# ---------------------------------------------------------------------------------------------
# _include and _revinclude (search.html#include)

INCLUDE_CASES = [
    "Observation?code=2947-0&_include=Observation:subject",
    "Observation?code=718-7&_include=Observation:patient",
    "Observation?code=718-7&_include=Observation:subject:Patient",
    "Encounter?class=EMER&_include=Encounter:service-provider&_include=Encounter:practitioner",
    "Observation?code=2947-0&_include=Observation:encounter"
    "&_include:iterate=Encounter:service-provider",
    "DiagnosticReport?patient={P}&_include=DiagnosticReport:result",
    "Patient?_id={P}&_revinclude=Observation:subject",
    "Patient?gender=female&_revinclude=Condition:patient",
    "Organization?name=noble&_revinclude=Encounter:service-provider",
    "Patient?_id={P}&_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter",
    "Condition?code=38341003&_include=Condition:patient"
    "&_revinclude:iterate=MedicationRequest:patient",
]


@pytest.mark.parametrize("case", INCLUDE_CASES)
async def test_includes_add_the_referenced_and_referring_resources(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    resource_type, query = case_query(synthea, case)
    expected_matches = matches(synthea, resource_type, query)
    expected_included = included(Evaluator(synthea.dataset), expected_matches, query)
    assert expected_included, "a case that includes nothing tests little"
    pages = await search(client, synthea, resource_type, query)
    every = [key(r) for r in entries(pages, mode=None)]
    assert len(every) == len(set(every)), "an entry is listed twice"
    assert {key(r) for r in entries(pages)} == expected_matches
    assert {key(r) for r in entries(pages, mode="include")} == expected_included
    assert pages[0]["total"] == len(expected_matches), "included resources are not counted"


# ---------------------------------------------------------------------------------------------
# _summary and _elements (search.html#summary, #elements)


async def subsetted(
    client: httpx.AsyncClient, loaded: Loaded, case: str
) -> list[tuple[Resource, Resource]]:
    """(as returned, as loaded) for every match of the case."""
    resource_type, query = case_query(loaded, case)
    found = entries(await search(client, loaded, resource_type, query))
    assert {key(r) for r in found} == matches(loaded, resource_type, query)
    pairs = []
    for resource in found:
        original = loaded.dataset.get(*key(resource))
        assert original is not None
        pairs.append((resource, original))
    return pairs


def same_elements(resource: Resource, original: Resource, names: set[str]) -> None:
    for name in names - {"meta", "resourceType"}:
        assert resource.get(name) == original.get(name), name


@pytest.mark.parametrize(
    "case",
    ["Patient?_summary=true", "Observation?patient={P}&code=55284-4&_summary=true"],
)
async def test_summary_true_returns_the_summary_elements(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    for resource, original in await subsetted(client, synthea, case):
        summary = SUMMARY[resource["resourceType"]]
        kept = {k for k in original if element_of(k, summary)}
        assert set(resource) - {"resourceType"} <= kept | {"meta"}
        assert kept - {"meta"} <= set(resource)
        same_elements(resource, original, kept)


@pytest.mark.parametrize("case", ["Patient?_summary=text", "Observation?code=2947-0&_summary=text"])
async def test_summary_text_returns_text_id_meta_and_mandatory_elements(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    for resource, original in await subsetted(client, synthea, case):
        allowed = {"resourceType", "id", "meta", "text"} | MANDATORY[resource["resourceType"]]
        assert set(resource) <= allowed
        assert allowed & set(original) - {"meta"} <= set(resource)
        same_elements(resource, original, set(resource))


@pytest.mark.parametrize("case", ["Patient?_summary=data", "Encounter?patient={P}&_summary=data"])
async def test_summary_data_leaves_out_the_text(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    for resource, original in await subsetted(client, synthea, case):
        assert set(resource) == set(original) - {"text"}
        same_elements(resource, original, set(resource))


ELEMENT_CASES = [
    "Patient?_elements=gender,birthDate",
    "Observation?patient={P}&code=8302-2&_elements=subject,encounter",
]


@pytest.mark.parametrize("case", ELEMENT_CASES)
async def test_elements_returns_the_elements_asked_for_and_the_mandatory_ones(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """Servers SHOULD return the mandatory elements too; Flöde leaves out the rest."""
    asked = set(dict(case_query(synthea, case)[1])["_elements"].split(","))
    for resource, original in await subsetted(client, synthea, case):
        mandatory = MANDATORY[resource["resourceType"]]
        assert asked | mandatory <= set(resource)
        assert set(resource) <= asked | mandatory | {"resourceType", "id", "meta"}
        same_elements(resource, original, set(resource))


@pytest.mark.parametrize(
    "case", ["Patient?_summary=true", "Encounter?patient={P}&_summary=data", *ELEMENT_CASES]
)
async def test_subsetted_resources_carry_the_subsetted_tag(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """search.html#summary: the server SHOULD mark subsetted resources with SUBSETTED, so that an
    incomplete resource is not mistaken for the whole one."""
    for resource, _ in await subsetted(client, synthea, case):
        assert is_subsetted(resource)


async def test_summary_count_returns_only_the_total(
    synthea: Loaded, client: httpx.AsyncClient
) -> None:
    query = [("code", "8302-2"), ("_summary", "count")]
    pages = await search(client, synthea, "Observation", query)
    assert pages[0]["total"] == len(matches(synthea, "Observation", query))
    assert entries(pages) == []


# ---------------------------------------------------------------------------------------------
# _total (search.html#total)


async def test_total_accurate_counts_every_page(synthea: Loaded, client: httpx.AsyncClient) -> None:
    query = [("code", "8302-2"), ("_total", "accurate"), ("_count", "5")]
    response = await client.get("Observation", params=[*query, synthea.tag_param])
    bundle = response.json()
    assert len(bundle["entry"]) == 5
    assert bundle["total"] == len(matches(synthea, "Observation", query))


async def test_total_none_leaves_the_total_out_or_gets_it_right(
    synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """`none`: "there is no need to populate the total count" — a server may still do so."""
    query = [("code", "8302-2"), ("_total", "none"), ("_count", "5")]
    response = await client.get("Observation", params=[*query, synthea.tag_param])
    expected = len(matches(synthea, "Observation", query))
    assert response.json().get("total", expected) == expected


# ---------------------------------------------------------------------------------------------
# Searching across types (search.html#system; `_type`)


def everything(loaded: Loaded, types: set[str]) -> set[Key]:
    return {key(r) for r in loaded.dataset if r["resourceType"] in types}


async def test_system_search_finds_every_type(synthea: Loaded, client: httpx.AsyncClient) -> None:
    pages = await search(client, synthea, "", [])
    assert len(pages) > 1
    found = [key(r) for r in entries(pages)]
    assert len(found) == len(set(found))
    assert set(found) == set(synthea.dataset.resources)


async def test_system_search_is_at_the_base_url_itself(
    synthea: Loaded, client: httpx.AsyncClient
) -> None:
    """`GET [base]?…`, as search.html writes it: no slash after the base."""
    base = str(client.base_url).rstrip("/")
    params = [("_type", "Patient"), synthea.tag_param]
    response = await client.get(base, params=tuple(params), headers=STRICT)
    assert response.status_code == 200, f"{response.status_code} {response.headers}"
    assert {key(r) for r in entries([response.json()])} == everything(synthea, {"Patient"})


async def test_system_search_by_type(synthea: Loaded, client: httpx.AsyncClient) -> None:
    pages = await search(client, synthea, "", [("_type", "Patient,Organization")])
    assert {key(r) for r in entries(pages)} == everything(synthea, {"Patient", "Organization"})


async def test_system_search_by_id(synthea: Loaded, client: httpx.AsyncClient) -> None:
    patient = busiest_patient(synthea)
    pages = await search(client, synthea, "", [("_id", patient)])
    assert {key(r) for r in entries(pages)} == {("Patient", patient)}


@pytest.mark.parametrize(
    "query",
    [
        "_type=Condition,Observation&code=http://snomed.info/sct|38341003,http://loinc.org|2947-0",
        "_type=Condition,Encounter,Immunization&patient={P}",
    ],
)
async def test_system_search_with_parameters_the_types_share(
    query: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    _, params = case_query(synthea, "?" + query)
    types = dict(params)["_type"].split(",")
    expected = set().union(*(matches(synthea, t, params) for t in types))
    assert expected
    pages = await search(client, synthea, "", params)
    assert {key(r) for r in entries(pages)} == expected


# ---------------------------------------------------------------------------------------------
# Compartment search (search.html#compartments: GET Patient/{id}/Type?…)

COMPARTMENT_CASES = [
    "Observation?code=8302-2",
    "Encounter?",
    "Condition?clinical-status=active",
    "Claim?",
    "Immunization?date=ge2015",
]


@pytest.mark.parametrize("case", COMPARTMENT_CASES)
async def test_compartment_search_finds_the_patients_resources(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    patient = busiest_patient(synthea)
    resource_type, query = parse_case(case)
    in_compartment = {
        key(r) for r in synthea.dataset.of_type(resource_type) if in_patient_compartment(r, patient)
    }
    expected = matches(synthea, resource_type, query) & in_compartment
    assert expected
    pages = await search(client, synthea, f"Patient/{patient}/{resource_type}", query)
    assert {key(r) for r in entries(pages)} == expected


async def test_compartment_search_of_every_type(synthea: Loaded, client: httpx.AsyncClient) -> None:
    """`Patient/{id}/*`: everything in the compartment. Whether the Patient itself is, R4's
    compartment definition leaves open (it names only `link` for Patient); either is accepted."""
    patient = busiest_patient(synthea)
    expected = {key(r) for r in synthea.dataset if in_patient_compartment(r, patient)}
    pages = await search(client, synthea, f"Patient/{patient}/*", [])
    found = {key(r) for r in entries(pages)}
    assert expected <= found <= expected | {("Patient", patient)}
