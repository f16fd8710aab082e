"""Every failure is an OperationOutcome with the status the spec prescribes
(https://hl7.org/fhir/R4/http.html#summary), never a stack trace, and the server keeps serving."""

from __future__ import annotations

import uuid

import httpx
import pytest

FHIR_JSON = "application/fhir+json"
# What would betray a stack trace or the implementation behind it.
LEAKS = ("Traceback", 'File "', ".py", "asyncpg", "starlette", "Error(")


def assert_outcome(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"]
    for issue in outcome["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"]
    for leak in LEAKS:
        assert leak not in response.text, leak


async def still_serving(client: httpx.AsyncClient) -> None:
    response = await client.post("Patient", json={"resourceType": "Patient"})
    assert response.status_code == 201
    assert (await client.get(f"Patient/{response.json()['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PATCH", "Patient"),
        ("POST", "Patient/{id}"),
        ("POST", "Patient/{id}/_history"),
        ("DELETE", "Patient/{id}/_history/1"),
        ("PATCH", "metadata"),
        ("PATCH", "_history"),
        ("POST", "Patient/_history"),
    ],
)
async def test_a_method_an_endpoint_does_not_support_returns_405(
    client: httpx.AsyncClient, method: str, url: str
) -> None:
    new = await client.post("Patient", json={"resourceType": "Patient"})
    id = new.json()["id"]
    response = await client.request(
        method, url.format(id=id), json={"resourceType": "Patient", "id": id}
    )
    assert_outcome(response, 405)
    assert response.headers["allow"]
    assert (await client.get(f"Patient/{id}/_history")).json()["total"] == 1
    await still_serving(client)


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Patient/1/_history/1/more",
        "/nothing",
        "/fhir/Patient/1/frobnicate",
        "/fhir/Patient/1/Observation/x",
    ],
)
async def test_an_unknown_path_returns_404_with_an_operation_outcome(
    client: httpx.AsyncClient, path: str
) -> None:
    root = str(client.base_url).removesuffix("/").removesuffix("/fhir")
    response = await client.get(root + path)
    assert_outcome(response, 404)
    await still_serving(client)


async def test_an_unknown_resource_type_returns_404_at_every_level(
    client: httpx.AsyncClient,
) -> None:
    for method, url in (
        ("GET", "Unicorn"),
        ("GET", "Unicorn/1"),
        ("GET", "Unicorn/_history"),
        ("GET", "Unicorn/1/_history/1"),
        ("DELETE", "Unicorn/1"),
        ("DELETE", "Unicorn?_id=1"),
    ):
        assert_outcome(await client.request(method, url), 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b"[" * 100_000, 400),
        (b'{"resourceType": "Patient", "x": ' + b"[" * 500 + b"]" * 500 + b"}", 400),
        (b'{"resourceType": "Patient", "birthDate": 1970}', 422),
        (b'{"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}', 422),
        (b'{"resourceType": "Patient", "active": true, "active": false}', 201),
        (b'{"resourceType": "Patient", "name": [{"family": "\\u0000"}]}', 422),
    ],
)
async def test_bad_bodies_never_cause_a_500_or_leak_a_stack_trace(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await client.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
    if status == 201:
        assert response.status_code == 201, response.text
    else:
        assert_outcome(response, status)
    await still_serving(client)


async def test_bad_headers_are_400_not_500(client: httpx.AsyncClient) -> None:
    new = await client.post("Patient", json={"resourceType": "Patient"})
    id = new.json()["id"]
    for value in ("*", 'W/"x"', 'W/"99999999999999999999"', ""):
        response = await client.put(
            f"Patient/{id}",
            json={"resourceType": "Patient", "id": id},
            headers={"If-Match": value},
        )
        assert_outcome(response, 400)
    for value in ("not a date", ""):
        response = await client.get(f"Patient/{id}", headers={"If-Modified-Since": value})
        assert response.status_code == 200
    assert (await client.get(f"Patient/{id}/_history")).json()["total"] == 1


async def test_head_answers_like_get_and_writes_nothing(client: httpx.AsyncClient) -> None:
    system = f"urn:uuid:{uuid.uuid4()}"
    new = await client.post(
        "Patient",
        json={"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]},
    )
    id = new.json()["id"]
    for url in (f"Patient/{id}", f"Patient?identifier={system}|1", f"Patient/{id}/_history"):
        response = await client.head(url)
        assert response.status_code == 200, url
        assert response.content == b""
    assert (await client.head(f"Patient/{uuid.uuid4()}")).status_code == 404
    assert (await client.get(f"Patient/{id}")).status_code == 200
    assert (await client.get(f"Patient/{id}/_history")).json()["total"] == 1


async def test_a_request_id_longer_than_usual_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("metadata", headers={"X-Request-Id": "r" * 1000})
    assert response.status_code == 200


async def test_a_nul_character_anywhere_in_the_url_is_a_400(client: httpx.AsyncClient) -> None:
    for method, url in (
        ("GET", "Patient/a%00b"),
        ("GET", "Patient/a%00b/_history"),
        ("GET", "Patient/x/_history/1%00"),
        ("GET", "Patient?_id=a%00b"),
        ("GET", "Patient?identifier=sys%7Ca%00b"),
        ("GET", "Patient?a%00b=1"),
        ("GET", "Patient/_history?_since=2024%00"),
        ("DELETE", "Patient/a%00b"),
        ("DELETE", "Patient?identifier=a%00b"),
    ):
        assert_outcome(await client.request(method, url), 400)
    response = await client.post(
        "Patient",
        json={"resourceType": "Patient"},
        headers={"If-None-Exist": "identifier=a%00b"},
    )
    assert_outcome(response, 400)
    await still_serving(client)


async def test_writes_to_the_get_only_system_endpoints_return_405(
    client: httpx.AsyncClient,
) -> None:
    for method, path in [("PUT", "metadata"), ("POST", "metadata"), ("DELETE", "_history")]:
        response = await client.request(method, path + "?_id=x")
        assert response.status_code == 405, (method, path)
        assert response.json()["resourceType"] == "OperationOutcome"
