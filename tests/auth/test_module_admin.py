"""The module registry through the FHIR API (docs/modules.md, "Administration through the
API"): `[base]/$module-add`, `$module-list`, `$module-show`, `$module-update`,
`$module-disable`, `$module-enable` and `$module-rotate-key`, for the administrator alone,
against a real server and its database."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from flode.auth.keys import KeyRing

from .conftest import (
    AuthServer,
    assertion,
    backend,
    client_credentials,
    es384_key,
    eventually,
    keys_dir,
    public_jwks,
    unique,
)

UNIT = "SE2321000131-E000000000901"
PROVIDER = "SE2321000131-E000000000001"
HSA = "urn:oid:1.2.752.29.4.19"
LAB_TOPIC = "http://example.org/SubscriptionTopic/lab-order"


def parameters(*pairs: tuple[str, str, Any]) -> dict[str, Any]:
    """A Parameters resource of (name, value[x] type, value)."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, f"value{kind}": value} for name, kind, value in pairs],
    }


def values(body: dict[str, Any], name: str) -> list[Any]:
    """The values of every parameter (or part) called `name`."""
    found = []
    for parameter in body.get("parameter", body.get("part", [])):
        if parameter["name"] == name:
            found += [v for k, v in parameter.items() if k.startswith("value")]
    return found


def listed(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The modules of a `$module-list` answer, by client id."""
    found = [p for p in body["parameter"] if p["name"] == "module"]
    assert len(found) == len(body["parameter"])
    return {value(m, "client"): m for m in found}


def value(body: dict[str, Any], name: str) -> Any:
    found = values(body, name)
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def lab(name: str, key: Any, *extra: tuple[str, str, Any]) -> dict[str, Any]:
    return parameters(
        ("name", "String", name),
        ("vendor", "String", "Labbolaget AB"),
        ("contact", "String", "support@labbolaget.se"),
        ("jwks", "String", json.dumps({"keys": [key.as_dict(private=True)]})),
        ("scopes", "String", "system/Patient.rs system/Observation.cruds"),
        ("reads", "Code", "Patient"),
        ("reads", "Code", "ServiceRequest"),
        ("writes", "Code", "Observation"),
        ("topics", "Canonical", LAB_TOPIC),
        ("careUnit", "Identifier", {"system": HSA, "value": UNIT}),
        ("careProvider", "String", PROVIDER),
        *extra,
    )


async def add(admin: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await admin.post("$module-add", json=body)
    assert response.status_code == 200, response.text
    added: dict[str, Any] = response.json()
    return added


async def system_token(
    http: httpx.AsyncClient, server: AuthServer, client_id: str, key: Any, scope: str
) -> httpx.Response:
    signed = assertion(key, client_id, server.token_url)
    return await http.post("/auth/token", data=client_credentials(signed, scope))


async def connected(
    http: httpx.AsyncClient, server: AuthServer, db: asyncpg.Connection
) -> tuple[str, Any, dict[str, str]]:
    """A backend module registered straight into the registry: its client id, its key and the
    headers of a token it got from the token endpoint."""
    key = es384_key()
    module = await backend(db, key)
    issued = await system_token(http, server, module.client_id, key, "system/Patient.rs")
    assert issued.status_code == 200, issued.text
    return module.client_id, key, {"Authorization": f"Bearer {issued.json()['access_token']}"}


def refusal(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = outcome["issue"][0]
    return issue


async def test_registers_a_backend_module_and_answers_it_with_its_new_client_id(
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
) -> None:
    key = es384_key()
    added = await add(admin, lab("Lab system", key))
    client_id = value(added, "client")
    assert client_id.startswith("lab-system-")
    assert value(added, "name") == "Lab system"
    assert value(added, "vendor") == "Labbolaget AB"
    assert value(added, "enabled") is True
    assert values(added, "scopes") == ["system/Patient.rs", "system/Observation.cruds"]
    assert values(added, "reads") == ["Patient", "ServiceRequest"]
    assert values(added, "writes") == ["Observation"]
    assert values(added, "topics") == [LAB_TOPIC]
    assert value(added, "careUnit") == {"system": HSA, "value": UNIT}
    assert value(added, "careProvider") == {"system": HSA, "value": PROVIDER}
    assert value(added, "keyId") == key.kid
    assert value(added, "requests") == 0
    # The private key given by mistake: only its public part is kept.
    stored = await db.fetchval("SELECT jwks FROM auth_client WHERE id = $1", client_id)
    assert json.loads(stored) == public_jwks(key)

    issued = await system_token(http, auth_server, client_id, key, "system/Patient.rs")
    assert issued.status_code == 200, issued.text


async def test_registers_an_app_with_redirect_uris_a_jwks_url_and_a_chosen_client_id(
    admin: httpx.AsyncClient,
) -> None:
    client_id = unique("journal")
    added = await add(
        admin,
        parameters(
            ("client", "String", client_id),
            ("name", "String", "Journal"),
            ("jwksUrl", "Uri", "https://journal.example.se/jwks.json"),
            ("scopes", "String", "openid fhirUser launch/patient, patient/*.rs"),
            ("redirectUri", "Uri", "https://journal.example.se/callback"),
            ("reads", "Code", "*"),
        ),
    )
    assert value(added, "client") == client_id
    assert value(added, "jwksUrl") == "https://journal.example.se/jwks.json"
    assert values(added, "scopes") == ["openid", "fhirUser", "launch/patient", "patient/*.rs"]
    assert value(added, "redirectUri") == "https://journal.example.se/callback"
    assert values(added, "careUnit") == []
    assert values(added, "jwks") == []


async def test_lists_every_module_with_its_last_request_and_counts(
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
) -> None:
    client_id, _key, headers = await connected(http, auth_server, db)
    before = time.time()
    for _ in range(3):
        response = await http.get("/fhir/Patient?_count=1", headers=headers)
        assert response.status_code == 200, response.text

    listed_response = await admin.get("$module-list")
    assert listed_response.status_code == 200, listed_response.text
    assert listed_response.headers["cache-control"] == "no-store"
    mine = listed(response_body := listed_response.json())[client_id]
    assert value(mine, "requests") == 3
    assert value(mine, "tokensIssued") == 1
    assert value(mine, "enabled") is True
    assert values(mine, "reads") == ["Patient"]
    seen = value(mine, "lastSeen")
    assert seen.endswith("Z")
    assert datetime.fromisoformat(seen).timestamp() >= before - 1
    # POST answers the same.
    posted = await admin.post("$module-list", json={"resourceType": "Parameters"})
    assert posted.status_code == 200, posted.text
    assert client_id in listed(posted.json())
    assert len(listed(response_body)) >= 1


async def test_shows_one_module_by_get_and_by_post(
    admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    got = await admin.get("$module-show", params={"client": module.client_id})
    assert got.status_code == 200, got.text
    assert value(got.json(), "client") == module.client_id
    posted = await admin.post(
        "$module-show", json=parameters(("client", "String", module.client_id))
    )
    assert posted.status_code == 200, posted.text
    assert posted.json() == got.json()


async def test_shows_404_for_an_unknown_client_and_400_without_one(
    admin: httpx.AsyncClient,
) -> None:
    nobody = unique("nobody")
    issue = refusal(await admin.get("$module-show", params={"client": nobody}), 404)
    assert issue["code"] == "not-found"
    assert nobody in issue["diagnostics"]
    issue = refusal(await admin.get("$module-show"), 400)
    assert issue["expression"] == ["client"]
    for operation in ("$module-update", "$module-disable", "$module-enable"):
        body = parameters(("client", "String", nobody), ("name", "String", "X"))
        if operation != "$module-update":
            body = parameters(("client", "String", nobody))
        assert (await admin.post(operation, json=body)).status_code == 404, operation


async def test_updates_scopes_declaration_and_owner_and_the_next_token_has_them(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    key = es384_key()
    client_id = value(await add(admin, lab("Lab to change", key)), "client")
    moved = "SE2321000131-E000000000902"
    response = await admin.post(
        "$module-update",
        json=parameters(
            ("client", "String", client_id),
            ("name", "String", "Lab, renamed"),
            ("scopes", "String", "system/Patient.rs"),
            ("scopes", "String", "system/DiagnosticReport.cruds"),
            ("writes", "Code", "DiagnosticReport"),
            ("careUnit", "String", moved),
            ("careProvider", "String", PROVIDER),
        ),
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert value(updated, "name") == "Lab, renamed"
    assert value(updated, "vendor") == "Labbolaget AB"  # not given: kept
    assert values(updated, "scopes") == ["system/Patient.rs", "system/DiagnosticReport.cruds"]
    assert values(updated, "writes") == ["DiagnosticReport"]
    assert values(updated, "reads") == ["Patient", "ServiceRequest"]
    assert value(updated, "careUnit")["value"] == moved

    issued = await system_token(http, auth_server, client_id, key, "system/*.cruds")
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "system/DiagnosticReport.cruds system/Patient.rs"

    cleared = await admin.post(
        "$module-update",
        json=parameters(("client", "String", client_id), ("noCareUnit", "Boolean", True)),
    )
    assert cleared.status_code == 200, cleared.text
    assert values(cleared.json(), "careUnit") == []


async def test_a_new_key_through_update_replaces_the_old_one(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    old, new = es384_key(), es384_key()
    client_id = value(await add(admin, lab("Lab with a new key", old)), "client")
    attachment = base64.b64encode(json.dumps(public_jwks(new)).encode()).decode()
    response = await admin.post(
        "$module-update",
        json=parameters(
            ("client", "String", client_id),
            ("jwks", "Attachment", {"contentType": "application/json", "data": attachment}),
        ),
    )
    assert response.status_code == 200, response.text
    assert value(response.json(), "keyId") == new.kid
    assert (
        await system_token(http, auth_server, client_id, old, "system/Patient.rs")
    ).status_code == 401
    assert (
        await system_token(http, auth_server, client_id, new, "system/Patient.rs")
    ).status_code == 200


async def test_disable_refuses_the_modules_tokens_here_at_once_and_on_another_server_soon(
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
) -> None:
    client_id, key, headers = await connected(http, auth_server, db)
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 200

    disabled = await admin.post("$module-disable", json=parameters(("client", "String", client_id)))
    assert disabled.status_code == 200, disabled.text
    assert value(disabled.json(), "enabled") is False
    # This server refuses it with the very next request.
    response = await http.get("/fhir/Patient", headers=headers)
    assert response.status_code == 401, response.text
    refused = await system_token(http, auth_server, client_id, key, "system/Patient.rs")
    assert refused.status_code == 401

    enabled = await admin.post("$module-enable", json=parameters(("client", "String", client_id)))
    assert value(enabled.json(), "enabled") is True
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 401
    fresh = await system_token(http, auth_server, client_id, key, "system/Patient.rs")
    assert fresh.status_code == 200, fresh.text


async def test_another_server_sees_a_module_disabled_through_this_one(
    http: httpx.AsyncClient, auth_server: AuthServer, server: Any, db: asyncpg.Connection
) -> None:
    """`server` (tests/conftest.py) and `auth_server` share the database, each with its own
    copy of the registry."""
    client_id, _key, headers = await connected(http, auth_server, db)
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 200
    async with httpx.AsyncClient(timeout=30) as other:
        response = await other.post(
            f"{server.base_url}/$module-disable",
            json=parameters(("client", "String", client_id)),
            headers=server.auth,
        )
    assert response.status_code == 200, response.text
    await eventually(http, "/fhir/Patient", headers, 401, seconds=5)


async def test_rotate_key_signs_new_tokens_with_a_new_key_and_old_ones_still_verify(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    before = KeyRing(keys_dir(auth_server.config.data_dir))().current.kid
    response = await admin.post("$module-rotate-key", json=parameters(("retain", "Integer", 3600)))
    assert response.status_code == 200, response.text
    kid = value(response.json(), "keyId")
    assert kid != before
    assert KeyRing(keys_dir(auth_server.config.data_dir))().current.kid == kid
    published = (await http.get("/auth/jwks")).json()
    assert {kid, before} <= {k["kid"] for k in published["keys"]}
    # The administrator's token of before the rotation still works.
    assert (await admin.get("$module-list")).status_code == 200


async def test_the_capability_statement_lists_the_module_operations(
    http: httpx.AsyncClient,
    auth_server: AuthServer,
) -> None:
    statement = (await http.get("/fhir/metadata")).json()
    names = {o["name"] for o in statement["rest"][0]["operation"]}
    assert {
        "module-add",
        "module-list",
        "module-show",
        "module-update",
        "module-disable",
        "module-enable",
        "module-rotate-key",
    } <= names
