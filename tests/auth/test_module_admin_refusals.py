"""What the module operations (`[base]/$module-…`) refuse: every token but the built-in
administrator's (403), a missing token (401), and registrations and changes that cannot work
(400 naming the parameter, 404 for an unknown client), with nothing changed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc.jwk import OctKey

from flode.auth.local import OPERATOR, issue_local

from .conftest import AuthServer, backend, es384_key, unique
from .test_module_admin import PROVIDER, UNIT, lab, parameters, refusal, value

OPERATIONS = [
    ("POST", "$module-add"),
    ("GET", "$module-list"),
    ("POST", "$module-list"),
    ("GET", "$module-show"),
    ("POST", "$module-update"),
    ("POST", "$module-disable"),
    ("POST", "$module-enable"),
    ("POST", "$module-rotate-key"),
]


@pytest.fixture
async def fhir(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_server.base + "/", timeout=30) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    fhir: httpx.AsyncClient, method: str, operation: str, headers: dict[str, str]
) -> httpx.Response:
    body = parameters(("client", "String", "anything"))
    if method == "GET":
        return await fhir.get(operation, headers=headers)
    return await fhir.post(operation, json=body, headers=headers)


@pytest.mark.parametrize(("method", "operation"), OPERATIONS)
async def test_refuses_a_module_token_with_403_even_with_every_system_scope(
    fhir: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
    method: str,
    operation: str,
) -> None:
    module = await backend(db, es384_key(), scopes=("system/*.cruds",))
    token = issue_local(
        auth_server.config, auth_server.root, ["system/*.cruds"], client_id=module.client_id
    )
    issue = refusal(await call(fhir, method, operation, bearer(token)), 403)
    assert issue["code"] == "forbidden"
    assert "administrator" in issue["diagnostics"]


@pytest.mark.parametrize(("method", "operation"), OPERATIONS)
async def test_refuses_a_clinicians_token_of_the_operator_with_403(
    fhir: httpx.AsyncClient, auth_server: AuthServer, method: str, operation: str
) -> None:
    token = issue_local(
        auth_server.config,
        auth_server.root,
        ["system/*.cruds"],
        subject="SE2321000131-P000000000111",
        context={
            "employee_hsa_id": "SE2321000131-P000000000111",
            "care_unit_hsa_id": UNIT,
            "care_provider_hsa_id": PROVIDER,
        },
    )
    refusal(await call(fhir, method, operation, bearer(token)), 403)


async def test_refuses_the_operators_token_without_every_scope_with_403(
    fhir: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    token = issue_local(auth_server.config, auth_server.root, ["system/*.rs"], client_id=OPERATOR)
    issue = refusal(await fhir.get("$module-list", headers=bearer(token)), 403)
    assert "system/*.cruds" in issue["diagnostics"]


@pytest.mark.parametrize(("method", "operation"), OPERATIONS)
async def test_answers_401_without_a_token(
    fhir: httpx.AsyncClient, method: str, operation: str
) -> None:
    response = await call(fhir, method, operation, {})
    refusal(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_refuses_a_module_token_before_it_looks_at_the_body(
    fhir: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    token = issue_local(auth_server.config, auth_server.root, client_id=module.client_id)
    response = await fhir.post("$module-add", content=b"not json", headers=bearer(token))
    refusal(response, 403)


def _jwks(value: Any) -> tuple[str, str, Any]:
    return ("jwks", "String", value if isinstance(value, str) else json.dumps(value))


OCT = OctKey.generate_key(256, private=True).as_dict(private=True)
A_KEY = es384_key().as_dict(private=False)
# (what is wrong, parameters added, parameters left out, the parameter the answer names)
BAD_REGISTRATIONS: list[tuple[str, list[tuple[str, str, Any]], set[str], str]] = [
    ("no name", [], {"name"}, "name"),
    ("no scopes", [], {"scopes"}, "scopes"),
    (
        "a care unit that is no HSA-id",
        [("careUnit", "String", "SE-unit"), ("careProvider", "String", PROVIDER)],
        set(),
        "careUnit",
    ),
    (
        "a care provider that is no HSA-id",
        [("careUnit", "String", UNIT), ("careProvider", "String", "SE2321000131-vård")],
        set(),
        "careProvider",
    ),
    ("a care unit without its provider", [("careUnit", "String", UNIT)], set(), "careProvider"),
    ("a care provider without its unit", [("careProvider", "String", PROVIDER)], set(), "careUnit"),
    (
        "a scope with letters out of order",
        [("scopes", "String", "system/Patient.sr")],
        set(),
        "scopes",
    ),
    ("a scope Flöde does not know", [("scopes", "String", "read-everything")], set(), "scopes"),
    ("a scope of no context", [("scopes", "String", "admin/Patient.rs")], set(), "scopes"),
    ("a JWKS that is not JSON", [_jwks("{not json")], set(), "jwks"),
    ("a JWKS without keys", [_jwks({"keys": []})], set(), "jwks"),
    ("a JWKS of a symmetric key", [_jwks({"keys": [OCT]})], set(), "jwks"),
    ("a JWKS that is a list", [_jwks([1, 2])], set(), "jwks"),
    (
        "a JWKS and a JWKS URL",
        [_jwks({"keys": [A_KEY]}), ("jwksUrl", "Uri", "https://keys.example.se")],
        set(),
        "jwks",
    ),
    ("a JWKS URL that is not http(s)", [("jwksUrl", "Uri", "ftp://keys.se")], set(), "jwksUrl"),
    ("a redirect URI that is no URL", [("redirectUri", "Uri", "journal")], set(), "redirectUri"),
    ("neither keys nor a redirect URI", [], {"redirectUri"}, "redirectUri"),
    ("a read that is no resource type", [("reads", "Code", "patient")], set(), "reads"),
    ("a write that is no resource type", [("writes", "Code", "Observation;DROP")], set(), "writes"),
    ("a topic that is no URL", [("topics", "Canonical", "lab-order")], set(), "topics"),
    ("the administrator's client id", [("client", "String", OPERATOR)], set(), "client"),
    ("a client id that cannot be used", [("client", "String", "-x y")], set(), "client"),
    ("a parameter it does not take", [("scope", "String", "openid")], set(), "scope"),
    ("a name given twice", [("name", "String", "Again")], set(), "name"),
    ("a number where text belongs", [("vendor", "Integer", 7)], set(), "vendor"),
    ("a value type it never takes", [("contact", "Quantity", {"value": 1})], set(), "contact"),
]


def _registration(name: str, added: list[tuple[str, str, Any]], left_out: set[str]) -> Any:
    """A working registration of an app, with `added` and without `left_out`."""
    good = [
        ("name", "String", name),
        ("scopes", "String", "openid user/*.rs"),
        ("redirectUri", "Uri", "https://app.example.se/callback"),
    ]
    return parameters(*(p for p in good if p[0] not in left_out), *added)


@pytest.mark.parametrize(
    ("added", "left_out", "name"),
    [(a, o, n) for _, a, o, n in BAD_REGISTRATIONS],
    ids=[what for what, _, _, _ in BAD_REGISTRATIONS],
)
async def test_refuses_a_registration_that_cannot_work_with_400_naming_the_parameter(
    admin: httpx.AsyncClient,
    db: asyncpg.Connection,
    added: list[Any],
    left_out: set[str],
    name: str,
) -> None:
    marker = unique("refused")
    before = await db.fetchval("SELECT count(*) FROM auth_client")
    body = _registration(marker, added, left_out)
    issue = refusal(await admin.post("$module-add", json=body), 400)
    assert issue["code"] == "invalid"
    assert issue["expression"] == [name]
    assert name in issue["diagnostics"]
    assert await db.fetchval("SELECT count(*) FROM auth_client") == before
    assert not await db.fetchval("SELECT count(*) FROM auth_client WHERE name = $1", marker)


async def test_refuses_a_client_id_that_is_taken_and_keeps_the_first(
    admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    body = _registration("Impostor", [("client", "String", module.client_id)], set())
    issue = refusal(await admin.post("$module-add", json=body), 400)
    assert issue["expression"] == ["client"]
    assert await db.fetchval("SELECT name FROM auth_client WHERE id = $1", module.client_id) == (
        module.name
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{not json", 400),
        (json.dumps({"resourceType": "Patient"}).encode(), 400),
        (json.dumps({"resourceType": "Parameters", "parameter": {}}).encode(), 400),
        (
            json.dumps(
                {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}
            ).encode(),
            400,
        ),
        (
            json.dumps({"resourceType": "Parameters", "parameter": [{"name": "name"}]}).encode(),
            400,
        ),
    ],
    ids=["empty", "not JSON", "not Parameters", "parameter not a list", "no name", "no value"],
)
async def test_refuses_a_body_that_is_not_parameters_with_400(
    admin: httpx.AsyncClient, db: asyncpg.Connection, body: bytes, status: int
) -> None:
    before = await db.fetchval("SELECT count(*) FROM auth_client")
    response = await admin.post(
        "$module-add", content=body, headers={"Content-Type": "application/fhir+json"}
    )
    refusal(response, status)
    assert await db.fetchval("SELECT count(*) FROM auth_client") == before


async def test_refuses_an_update_that_cannot_work_and_changes_nothing(
    admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    key = es384_key()
    added = await admin.post("$module-add", json=lab("Stays", key))
    client_id = value(added.json(), "client")
    before = await db.fetchrow("SELECT * FROM auth_client WHERE id = $1", client_id)
    wrong_changes: list[tuple[list[tuple[str, str, Any]], str]] = [
        (
            [("careUnit", "String", "SE2321000131-E1 2"), ("careProvider", "String", PROVIDER)],
            "careUnit",
        ),
        ([("careUnit", "String", UNIT)], "careProvider"),
        ([("scopes", "String", "system/Patient.rs bogus")], "scopes"),
        ([("name", "String", "Renamed"), ("reads", "Code", "observation")], "reads"),
        ([("jwks", "String", "[]")], "jwks"),
        ([("careUnit", "String", UNIT), ("noCareUnit", "Boolean", True)], "noCareUnit"),
        ([("noCareUnit", "String", "maybe")], "noCareUnit"),
    ]
    for wrong, name in wrong_changes:
        body = parameters(("client", "String", client_id), *wrong)
        issue = refusal(await admin.post("$module-update", json=body), 400)
        assert issue["expression"] == [name], wrong
    nothing = refusal(
        await admin.post("$module-update", json=parameters(("client", "String", client_id))), 400
    )
    assert "Nothing to change" in nothing["diagnostics"]
    assert await db.fetchrow("SELECT * FROM auth_client WHERE id = $1", client_id) == before


async def test_refuses_a_retain_that_is_no_number_and_keeps_the_key(
    admin: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    keys = (auth_server.config.data_dir / "keys" / "jwks.json").read_text()
    for retain in (("retain", "String", "soon"), ("retain", "Integer", -1)):
        issue = refusal(await admin.post("$module-rotate-key", json=parameters(retain)), 400)
        assert issue["expression"] == ["retain"]
    assert (auth_server.config.data_dir / "keys" / "jwks.json").read_text() == keys
