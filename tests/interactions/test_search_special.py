"""The parameters for all resources (https://hl7.org/fhir/R4/search.html#all): full text
(`_text`, `_content`), `_list`, and `_tag`, `_profile`, `_security`, `_source` on every type,
end to end over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from .test_search_by_type import create, ids


async def refused(client: httpx.AsyncClient, query: str) -> str:
    """The diagnostics of a 400 answer, which must name the parameter."""
    response = await client.get(query)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    return f"{issue['diagnostics']} {' '.join(issue.get('expression', []))}"


def narrative(xhtml: str) -> dict[str, str]:
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>',
    }


@pytest.fixture
def tag() -> str:
    """A word unique to one test, so tests sharing the database never see each other."""
    return uuid.uuid4().hex[:10]


# _text and _content (search.html#_text, #_content)


async def test_text_finds_a_word_of_the_narrative_regardless_of_accents(
    client: httpx.AsyncClient, tag: str
) -> None:
    found = await create(
        client,
        {
            "resourceType": "Patient",
            "text": narrative(f"<p>Bor i <b>Östersund{tag}</b> sedan 2019</p>"),
        },
    )
    assert await ids(client, f"Patient?_text=Ostersund{tag}") == {found}
    assert await ids(client, f"Patient?_text=ÖSTERSUND{tag}") == {found}
    assert await ids(client, f"Observation?_text=ostersund{tag}") == set()


async def test_text_searches_only_the_narrative_and_content_the_whole_resource(
    client: httpx.AsyncClient, tag: str
) -> None:
    found = await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "text": narrative(f"<p>Puls {tag}</p>"),
            "code": {"coding": [{"system": "http://loinc.org", "display": f"Hjärtfrekvens{tag}"}]},
            "note": [{"text": f"Mätt i vila{tag}"}],
        },
    )
    assert await ids(client, f"Observation?_text=hjartfrekvens{tag}") == set()
    assert await ids(client, f"Observation?_content=hjartfrekvens{tag}") == {found}
    assert await ids(client, f"Observation?_content=vila{tag}") == {found}
    assert await ids(client, f"Observation?_content=puls {tag}") == {found}


async def test_every_word_must_match_and_or_and_commas_give_alternatives(
    client: httpx.AsyncClient, tag: str
) -> None:
    bone = await create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/x"},
            "text": narrative(f"<p>Metastases{tag} in bone{tag}</p>"),
        },
    )
    liver = await create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/x"},
            "text": narrative(f"<p>Metastases{tag} in liver{tag}</p>"),
        },
    )
    base = "Condition?_text="
    assert await ids(client, f"{base}metastases{tag} bone{tag}") == {bone}
    either = f"{base}(bone{tag} OR liver{tag}) and metastases{tag}"
    assert await ids(client, either) == {bone, liver}
    assert await ids(client, f"{base}bone{tag},liver{tag}") == {bone, liver}
    assert await ids(client, f"{base}bone{tag}&_text=liver{tag}") == set()
    assert await ids(client, f"{base}bone{tag} liver{tag}") == set()


async def test_a_final_star_matches_the_beginning_of_a_word(
    client: httpx.AsyncClient, tag: str
) -> None:
    found = await create(
        client, {"resourceType": "Patient", "text": narrative(f"<p>hjärtsvikt{tag}</p>")}
    )
    assert await ids(client, f"Patient?_text=Hjärtsvikt{tag[:5]}") == set()
    assert await ids(client, f"Patient?_text=Hjärtsvikt{tag[:5]}*") == {found}


async def test_an_update_replaces_the_words_and_a_delete_removes_them(
    client: httpx.AsyncClient, tag: str
) -> None:
    id = await create(client, {"resourceType": "Patient", "text": narrative(f"<p>first{tag}</p>")})
    changed = {"resourceType": "Patient", "id": id, "text": narrative(f"<p>second{tag}</p>")}
    assert (await client.put(f"Patient/{id}", json=changed)).status_code == 200
    assert await ids(client, f"Patient?_text=first{tag}") == set()
    assert await ids(client, f"Patient?_text=second{tag}") == {id}
    assert (await client.delete(f"Patient/{id}")).status_code == 204
    assert await ids(client, f"Patient?_content=second{tag}") == set()


async def test_text_missing_finds_resources_without_narrative(
    client: httpx.AsyncClient, tag: str
) -> None:
    system = f"urn:test:{tag}"
    told = await create(
        client,
        {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": "1"}],
            "text": narrative("<p>Berättad</p>"),
        },
    )
    bare = await create(
        client, {"resourceType": "Patient", "identifier": [{"system": system, "value": "2"}]}
    )
    query = f"Patient?identifier={system}|&_text:missing="
    assert await ids(client, query + "true") == {bare}
    assert await ids(client, query + "false") == {told}


async def test_text_and_content_follow_chains_and_reverse_chains(
    client: httpx.AsyncClient, tag: str
) -> None:
    patient = await create(
        client, {"resourceType": "Patient", "text": narrative(f"<p>Kedja{tag}</p>")}
    )
    observation = await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f"Omvänd{tag}"},
            "subject": {"reference": f"Patient/{patient}"},
        },
    )
    assert await ids(client, f"Observation?subject:Patient._text=kedja{tag}") == {observation}
    assert await ids(client, f"Patient?_has:Observation:subject:_content=omvand{tag}") == {patient}


async def test_text_on_a_type_without_narrative_is_an_unknown_parameter(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("Bundle?_text=anything")
    assert response.status_code == 200
    outcome = response.json()["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    strict = await client.get("Bundle?_text=anything", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert (await client.get("Bundle?_content=anything")).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "Patient?_text=",
        "Patient?_text=%20%20",
        "Patient?_content=a,",
        "Patient?_text=(bone",
        "Patient?_text=bone%20OR",
        "Patient?_text:exact=bone",
        "Patient?_content:contains=bone",
        "Patient?_text:missing=maybe",
    ],
)
async def test_an_empty_malformed_or_modified_text_search_is_a_bad_request(
    client: httpx.AsyncClient, query: str
) -> None:
    name = query.split("?")[1].split("=")[0].split(":")[0]
    assert name in await refused(client, query)


# _list (search.html#list)


async def test_list_finds_the_resources_a_list_has_as_entries_of_the_searched_type(
    client: httpx.AsyncClient, tag: str
) -> None:
    anna = await create(client, {"resourceType": "Patient", "name": [{"family": f"A{tag}"}]})
    bo = await create(client, {"resourceType": "Patient", "name": [{"family": f"B{tag}"}]})
    outside = await create(client, {"resourceType": "Patient", "name": [{"family": f"C{tag}"}]})
    group = await create(client, {"resourceType": "Group", "type": "person", "actual": True})
    listed = await create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [
                {"item": {"reference": f"Patient/{anna}"}},
                {"item": {"reference": f"Patient/{bo}"}},
                {"item": {"reference": f"Group/{group}"}},
            ],
        },
    )
    assert await ids(client, f"Patient?_list={listed}") == {anna, bo}
    assert await ids(client, f"Patient?_list=List/{listed}") == {anna, bo}
    assert await ids(client, f"Group?_list={listed}") == {group}
    assert outside not in await ids(client, f"Patient?_list={listed}")
    assert await ids(client, f"Patient?_list={listed}&family=A{tag}") == {anna}


async def test_list_values_separated_by_commas_are_alternatives(
    client: httpx.AsyncClient,
) -> None:
    one = await create(client, {"resourceType": "Patient"})
    two = await create(client, {"resourceType": "Patient"})
    first = await create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{one}"}}],
        },
    )
    second = await create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{two}"}}],
        },
    )
    assert await ids(client, f"Patient?_list={first},{second}") == {one, two}
    assert await ids(client, f"Patient?_list={first}&_list={second}") == set()


async def test_list_of_a_missing_or_deleted_list_finds_nothing(
    client: httpx.AsyncClient,
) -> None:
    member = await create(client, {"resourceType": "Patient"})
    listed = await create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{member}"}}],
        },
    )
    assert await ids(client, f"Patient?_list={listed}") == {member}
    assert await ids(client, f"Patient?_list=no-such-list-{uuid.uuid4().hex}") == set()
    assert (await client.delete(f"List/{listed}")).status_code == 204
    assert await ids(client, f"Patient?_list={listed}") == set()


async def test_list_follows_the_lists_current_version(client: httpx.AsyncClient) -> None:
    kept = await create(client, {"resourceType": "Patient"})
    dropped = await create(client, {"resourceType": "Patient"})
    listed: dict[str, Any] = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "entry": [
            {"item": {"reference": f"Patient/{kept}"}},
            {"item": {"reference": f"Patient/{dropped}"}},
        ],
    }
    listed["id"] = await create(client, listed)
    listed["entry"] = listed["entry"][:1]
    assert (await client.put(f"List/{listed['id']}", json=listed)).status_code == 200
    assert await ids(client, f"Patient?_list={listed['id']}") == {kept}


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("Patient?_list=$current-allergies", "not supported"),
        ("Patient?_list=", "_list"),
        ("Patient?_list=Group/1", "_list"),
        ("Patient?_list:missing=true", "_list"),
    ],
)
async def test_functional_lists_empty_values_and_modifiers_are_bad_requests(
    client: httpx.AsyncClient, query: str, says: str
) -> None:
    assert says in await refused(client, query)


# _tag, _profile, _security, _source (search.html#all): the registry's parameters on every type


@pytest.mark.parametrize("resource_type", ["Observation", "Patient", "List", "Bundle"])
async def test_tag_profile_security_and_source_work_on_every_type(
    client: httpx.AsyncClient, tag: str, resource_type: str
) -> None:
    required: dict[str, dict[str, Any]] = {
        "Observation": {"status": "final", "code": {"text": "x"}},
        "List": {"status": "current", "mode": "working"},
        "Bundle": {"type": "collection"},
    }
    meta = {
        "tag": [{"system": f"urn:tag:{tag}", "code": "granskad"}],
        "profile": [f"http://example.org/fhir/StructureDefinition/{tag}/profil"],
        "security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
            {"system": f"urn:security:{tag}", "code": "skyddad"},
        ],
        "source": f"http://journal.example.org/{tag}#abc",
    }
    found = await create(
        client, {"resourceType": resource_type, "meta": meta, **required.get(resource_type, {})}
    )
    other = await create(client, {"resourceType": resource_type, **required.get(resource_type, {})})
    base = f"{resource_type}?"
    assert await ids(client, f"{base}_tag=urn:tag:{tag}|granskad") == {found}
    assert await ids(client, f"{base}_tag=urn:tag:{tag}|") == {found}
    assert await ids(client, f"{base}_tag=granskad&_id={found},{other}") == {found}
    assert await ids(client, f"{base}_tag=urn:tag:{tag}|other") == set()
    profile = f"http://example.org/fhir/StructureDefinition/{tag}/profil"
    assert await ids(client, f"{base}_profile={profile}") == {found}
    below = f"{base}_profile:below=http://example.org/fhir/StructureDefinition/{tag}/"
    assert await ids(client, below) == {found}
    assert await ids(client, f"{base}_security=urn:security:{tag}|skyddad") == {found}
    assert await ids(client, f"{base}_source=http://journal.example.org/{tag}%23abc") == {found}
    assert await ids(client, f"{base}_source=http://journal.example.org/{tag}") == set()
    untagged = await ids(client, f"{base}_tag:not=urn:tag:{tag}|granskad&_id={found},{other}")
    assert untagged == {other}
    assert other in await ids(client, f"{base}_profile:missing=true&_id={found},{other}")
    assert await ids(client, f"{base}_profile:missing=true&_id={found}") == set()
