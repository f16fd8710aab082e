"""SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html): a
module authenticates with a JWT signed by its own key and gets a `system/` token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flode.auth import modules
from serving import serving

from .conftest import (
    AuthServer,
    assertion,
    backend,
    client_credentials,
    es384_key,
    eventually,
    public_jwks,
    rs384_key,
    unique,
)


async def token_for(
    http: httpx.AsyncClient, server: AuthServer, signed: str, scope: str
) -> httpx.Response:
    return await http.post("/auth/token", data=client_credentials(signed, scope))


def refused(response: httpx.Response, error: str, status: int = 401) -> str:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    description: str = body["error_description"]
    return description


async def test_discovery_names_every_endpoint_under_the_issuer(
    http: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    smart = (await http.get("/fhir/.well-known/smart-configuration")).json()
    issuer = f"{auth_server.root}/auth"
    assert smart["issuer"] == issuer
    assert smart["token_endpoint"] == f"{issuer}/token"
    assert smart["authorization_endpoint"] == f"{issuer}/authorize"
    assert smart["jwks_uri"] == f"{issuer}/jwks"
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert set(smart["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert {
        "launch-ehr",
        "launch-standalone",
        "permission-v2",
        "client-confidential-asymmetric",
    } <= set(smart["capabilities"])
    oidc = (await http.get("/auth/.well-known/openid-configuration")).json()
    assert oidc["issuer"] == issuer
    assert (await http.get("/.well-known/openid-configuration")).json() == oidc
    jwks = (await http.get("/auth/jwks")).json()
    assert jwks["keys"]
    assert all("d" not in k for k in jwks["keys"])


async def test_an_es384_assertion_with_inline_keys_gets_a_system_token_that_the_api_accepts(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key)
    signed = assertion(key, module.client_id, auth_server.token_url)
    response = await token_for(http, auth_server, signed, "system/Patient.rs")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Patient.rs"
    assert body["expires_in"] == auth_server.config.token_lifetime
    assert "refresh_token" not in body
    claims = jwt.decode(
        body["access_token"], KeySet.import_key_set((await http.get("/auth/jwks")).json())
    ).claims
    assert claims["iss"] == f"{auth_server.root}/auth"
    assert claims["aud"] == auth_server.base
    assert claims["client_id"] == claims["sub"] == module.client_id
    api = await http.get(
        "/fhir/Patient",
        params={"_count": "1"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert api.status_code == 200, api.text


@pytest.fixture(scope="module")
def jwks_host() -> Iterator[tuple[str, dict[str, Any]]]:
    """A module's own web server, publishing its JWKS at a URL (the keys can be changed)."""
    published: dict[str, Any] = {"keys": []}

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(published)

    app = Starlette(routes=[Route("/.well-known/jwks.json", jwks)])
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/.well-known/jwks.json", published


async def test_an_rs384_assertion_with_keys_at_a_url_gets_a_token_also_after_a_key_rotation(
    http: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
    jwks_host: tuple[str, dict[str, Any]],
) -> None:
    url, published = jwks_host
    old, new = rs384_key(), rs384_key()
    published["keys"] = public_jwks(old)["keys"]
    module = await backend(db, old, jwks=None, jwks_url=url)
    first = await token_for(
        http,
        auth_server,
        assertion(old, module.client_id, auth_server.token_url),
        "system/Patient.read",
    )
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "system/Patient.rs"
    published["keys"] = public_jwks(old, new)["keys"]
    await asyncio.sleep(0)
    rotated = await token_for(
        http,
        auth_server,
        assertion(new, module.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    assert rotated.status_code == 200, rotated.text


async def test_a_jku_header_other_than_the_registered_url_is_refused(
    http: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
    jwks_host: tuple[str, dict[str, Any]],
) -> None:
    url, published = jwks_host
    key = rs384_key()
    published["keys"] = public_jwks(key)["keys"]
    module = await backend(db, key, jwks=None, jwks_url=url)
    now = int(time.time())
    claims = {
        "iss": module.client_id,
        "sub": module.client_id,
        "aud": auth_server.token_url,
        "exp": now + 60,
        "jti": unique("jti"),
    }
    header = {"alg": "RS384", "kid": key.kid, "jku": "https://attacker.example/jwks.json"}
    signed = jwt.encode(header, claims, key, algorithms=["RS384"])
    refused(await token_for(http, auth_server, signed, "system/Patient.rs"), "invalid_client")


async def test_a_replayed_jti_is_refused(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key)
    signed = assertion(key, module.client_id, auth_server.token_url)
    assert (await token_for(http, auth_server, signed, "system/Patient.rs")).status_code == 200
    again = assertion(key, module.client_id, auth_server.token_url, jti=_jti(signed))
    assert "jti" in refused(
        await token_for(http, auth_server, again, "system/Patient.rs"), "invalid_client"
    )


def _jti(signed: str) -> str:
    import json

    from joserfc import jws

    return str(json.loads(jws.extract_compact(signed.encode()).payload)["jti"])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"expires_in": 600}, "five minutes"),
        ({"expires_in": -120}, "expired"),
        ({"audience": "https://elsewhere.example/auth/token"}, "aud"),
        ({"alg": "RS256"}, "RS384 or ES384"),
        ({"sub": "someone-else"}, "iss and sub"),
    ],
)
async def test_an_assertion_is_refused_when(
    http: httpx.AsyncClient,
    auth_server: AuthServer,
    db: asyncpg.Connection,
    change: dict[str, Any],
    why: str,
) -> None:
    # A key that does not itself name an algorithm, so that it signs RS256 too.
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    module = await backend(db, key)
    audience = change.pop("audience", auth_server.token_url)
    signed = assertion(key, module.client_id, audience, **change)
    assert why in refused(
        await token_for(http, auth_server, signed, "system/Patient.rs"), "invalid_client"
    )


async def test_an_assertion_signed_with_a_key_the_module_did_not_register_is_refused(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    registered, other = es384_key(), es384_key()
    module = await backend(db, registered)
    impostor = ECKeyWithKid(other, registered.kid)
    signed = assertion(impostor, module.client_id, auth_server.token_url)
    assert "signature" in refused(
        await token_for(http, auth_server, signed, "system/Patient.rs"), "invalid_client"
    )


def ECKeyWithKid(key: Any, kid: str | None) -> Any:
    """`key` presenting another key's id."""
    data = key.as_dict(private=True)
    data["kid"] = kid
    return type(key).import_key(data)


async def test_an_unknown_client_is_refused(
    http: httpx.AsyncClient, auth_server: AuthServer
) -> None:
    key = es384_key()
    signed = assertion(key, unique("nobody"), auth_server.token_url)
    assert "unknown client" in refused(
        await token_for(http, auth_server, signed, "system/Patient.rs"), "invalid_client"
    )


async def test_client_credentials_without_an_assertion_is_refused(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    response = await http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": module.client_id,
            "scope": "system/Patient.rs",
        },
    )
    refused(response, "invalid_client")
    basic = await http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
        auth=(module.client_id, "secret"),
    )
    refused(basic, "invalid_client")


async def test_a_disabled_module_gets_no_token_and_its_tokens_are_refused_at_once(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key)
    response = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 200
    assert await modules.set_enabled(db, module.client_id, False)
    await eventually(http, "/fhir/Patient", headers, 401)
    later = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    assert "disabled" in refused(later, "invalid_client")
    # Enabled again, the module needs new tokens: the old ones stay revoked.
    assert await modules.set_enabled(db, module.client_id, True)
    await asyncio.sleep(1.5)
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 401
    fresh = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    assert fresh.status_code == 200


async def test_a_token_never_carries_more_than_the_module_may_have(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key, scopes=("system/Patient.rs", "system/Observation.cruds"))
    wide = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/*.cruds system/Encounter.rs",
    )
    assert wide.status_code == 200, wide.text
    assert wide.json()["scope"] == "system/Observation.cruds system/Patient.rs"
    beyond = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/Encounter.rs patient/*.rs",
    )
    assert "allowed" in refused(beyond, "invalid_scope", 400)


async def test_failed_client_authentications_are_rate_limited_per_client(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key, wrong = es384_key(), es384_key()
    module = await backend(db, key)
    limit = auth_server.config.auth_failures_per_minute
    for _ in range(limit):
        bad = assertion(ECKeyWithKid(wrong, key.kid), module.client_id, auth_server.token_url)
        refused(await token_for(http, auth_server, bad, "system/Patient.rs"), "invalid_client")
    good = assertion(key, module.client_id, auth_server.token_url)
    limited = await token_for(http, auth_server, good, "system/Patient.rs")
    refused(limited, "temporarily_unavailable", 429)
    assert 0 < int(limited.headers["retry-after"]) <= 60
    # Other clients are not held up.
    other_key = es384_key()
    other = await backend(db, other_key)
    fine = await token_for(
        http,
        auth_server,
        assertion(other_key, other.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    assert fine.status_code == 200


async def test_an_unknown_grant_type_and_a_json_body_are_refused(http: httpx.AsyncClient) -> None:
    assert refused(
        await http.post("/auth/token", data={"grant_type": "password"}),
        "unsupported_grant_type",
        400,
    )
    refused(
        await http.post("/auth/token", json={"grant_type": "client_credentials"}),
        "invalid_request",
        400,
    )


async def test_a_module_introspects_and_revokes_its_own_tokens(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key)

    def authenticated(endpoint: str, **form: str) -> dict[str, str]:
        signed = assertion(key, module.client_id, auth_server.url(f"/auth/{endpoint}"))
        return {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed,
            **form,
        }

    issued = await token_for(
        http,
        auth_server,
        assertion(key, module.client_id, auth_server.token_url),
        "system/Patient.rs",
    )
    access = issued.json()["access_token"]
    facts = (
        await http.post("/auth/introspect", data=authenticated("introspect", token=access))
    ).json()
    assert facts["active"] is True
    assert facts["client_id"] == module.client_id
    assert facts["scope"] == "system/Patient.rs"
    by_bearer = await http.post(
        "/auth/introspect", data={"token": access}, headers={"Authorization": f"Bearer {access}"}
    )
    assert by_bearer.json()["active"] is True

    # Another module learns nothing about it.
    other_key = es384_key()
    other = await backend(db, other_key)
    other_token = (
        await token_for(
            http,
            auth_server,
            assertion(other_key, other.client_id, auth_server.token_url),
            "system/Patient.rs",
        )
    ).json()["access_token"]
    nosy = await http.post(
        "/auth/introspect",
        data={"token": access},
        headers={"Authorization": f"Bearer {other_token}"},
    )
    assert nosy.json() == {"active": False}
    unauthenticated = await http.post("/auth/introspect", data={"token": access})
    refused(unauthenticated, "invalid_client")

    revoked = await http.post("/auth/revoke", data=authenticated("revoke", token=access))
    assert revoked.status_code == 200
    api = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {access}"})
    assert api.status_code == 401
    after = (
        await http.post("/auth/introspect", data=authenticated("introspect", token=access))
    ).json()
    assert after == {"active": False}
    # RFC 7009 §2.2: an unknown token is not an error.
    assert (
        await http.post("/auth/revoke", data=authenticated("revoke", token="nonsense"))
    ).status_code == 200


async def test_a_module_is_refused_a_type_it_did_not_declare_even_with_the_scope(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    module = await backend(db, key)  # declares reads: Patient, writes: Observation
    signed = assertion(key, module.client_id, auth_server.token_url)
    response = await token_for(http, auth_server, signed, "system/Observation.cruds")
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    deadline = time.monotonic() + 10  # the registry reaches the API within seconds
    while True:
        read = await http.get("/fhir/Observation", headers=headers)
        if read.status_code == 403 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert read.status_code == 403, read.text
    assert "has not declared that it reads Observation" in read.text
    created = await http.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
