"""Clinician login at an upstream OpenID Connect provider: a small but real provider runs in the
test (its own HTTP server), and a Flöde server is configured to log clinicians in there."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import asyncpg
import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from flode.app import build_app
from flode.config import Config
from serving import serving

from .conftest import register

REDIRECT = "http://127.0.0.1:9/callback"
CLIENT_ID, CLIENT_SECRET = "flode-test", "s3cret"
CLINICIAN = {
    "employeeHsaId": "SE2321000131-P000000000999",
    "pnr": "197803142384",
    "commissionHsaId": "SE2321000131-C000000000999",
    "healthCareUnitHsaId": "SE2321000131-E000000000101",
    "healthCareProviderHsaId": "SE2321000131-E000000000001",
    "name": "Vera Vårdsson",
}


@dataclass
class Provider:
    """An OpenID Connect provider's state, and how it should misbehave."""

    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    access: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse: bool = False
    wrong_nonce: bool = False


def provider_app(provider: Provider) -> Starlette:
    provider.key.ensure_kid()

    async def configuration(request: Request) -> Response:
        issuer = provider.issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "userinfo_endpoint": f"{issuer}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        assert params["client_id"] == CLIENT_ID
        assert params["code_challenge_method"] == "S256"
        assert "openid" in params["scope"].split()
        back = params["redirect_uri"]
        if provider.refuse:
            query = {"error": "access_denied", "error_description": "SITHS card not accepted"}
        else:
            code = secrets.token_urlsafe(16)
            provider.codes[code] = params
            query = {"code": code}
        return RedirectResponse(f"{back}?{urlencode({**query, 'state': params['state']})}", 302)

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, 401)
        asked = provider.codes.pop(form.get("code", ""), None)
        if asked is None or asked["redirect_uri"] != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        if create_s256_code_challenge(form.get("code_verifier", "")) != asked["code_challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        now = int(time.time())
        claims = {
            "iss": provider.issuer,
            "sub": "user-1",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": "forged" if provider.wrong_nonce else asked["nonce"],
            **{k: v for k, v in CLINICIAN.items() if k != "commissionHsaId"},
        }
        header = {"alg": "RS256", "kid": provider.key.kid}
        access = secrets.token_urlsafe(16)
        # The commission is only told by the userinfo endpoint.
        provider.access[access] = {"sub": "user-1", "commissionHsaId": CLINICIAN["commissionHsaId"]}
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": jwt.encode(header, claims, provider.key),
            }
        )

    async def userinfo(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        info = provider.access.get(token)
        return JSONResponse(info) if info else JSONResponse({"error": "invalid_token"}, 401)

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [provider.key.as_dict(private=False)]})

    return Starlette(
        routes=[
            Route("/idp/.well-known/openid-configuration", configuration),
            Route("/idp/authorize", authorize),
            Route("/idp/token", token, methods=["POST"]),
            Route("/idp/userinfo", userinfo),
            Route("/idp/jwks", jwks),
        ]
    )


@dataclass(frozen=True)
class Setup:
    provider: Provider
    root: str


@pytest.fixture(scope="module")
def oidc(
    database_url: str, test_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    provider = Provider()
    with serving(provider_app(provider)) as idp_port:
        provider.issuer = f"http://127.0.0.1:{idp_port}/idp"
        config = replace(
            test_config,
            data_dir=tmp_path_factory.mktemp("flode-oidc"),
            oidc_issuer=provider.issuer,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            oidc_scopes="openid profile",
            oidc_claims="personnummer=pnr",
        )
        with serving(build_app(config, database_url, access_log=False)) as port:
            yield Setup(provider, f"http://127.0.0.1:{port}")


@pytest.fixture
async def browser(oidc: Setup) -> AsyncIterator[httpx.AsyncClient]:
    oidc.provider.refuse = oidc.provider.wrong_nonce = False
    async with httpx.AsyncClient(base_url=oidc.root, timeout=30) as c:
        yield c


async def app_authorization(oidc: Setup, database_url: str) -> tuple[str, str, str]:
    """A registered app's authorization URL, its client id and PKCE verifier."""
    conn = await asyncpg.connect(database_url)
    try:
        module = await register(
            conn, scopes=("openid", "fhirUser", "user/*.rs"), redirect_uris=(REDIRECT,)
        )
    finally:
        await conn.close()
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": module.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser user/*.rs",
        "state": "app-state",
        "aud": f"{oidc.root}/fhir",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    return f"/auth/authorize?{urlencode(params)}", module.client_id, verifier


async def to_provider_and_back(browser: httpx.AsyncClient, url: str) -> httpx.Response:
    """Flöde sends the browser to the provider, which sends it back to /auth/login."""
    out = await browser.get(url)
    assert out.status_code == 302, out.text
    assert out.headers["location"].startswith(f"{browser.base_url.scheme}://127.0.0.1")
    assert "flode_login" in out.headers["set-cookie"]
    upstream = await browser.get(out.headers["location"])
    assert upstream.status_code == 302
    back = upstream.headers["location"]
    assert urlsplit(back).path == "/auth/login"
    return await browser.get(back)


async def test_a_clinician_logs_in_upstream_and_the_token_carries_the_mapped_claims(
    oidc: Setup, database_url: str, browser: httpx.AsyncClient
) -> None:
    url, client_id, verifier = await app_authorization(oidc, database_url)
    done = await to_provider_and_back(browser, url)
    assert done.status_code == 302, done.text
    back = {k: v[0] for k, v in parse_qs(urlsplit(done.headers["location"]).query).items()}
    assert back["state"] == "app-state"
    response = await browser.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": back["code"],
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    keys = KeySet.import_key_set((await browser.get("/auth/jwks")).json())
    claims = jwt.decode(response.json()["access_token"], keys).claims
    assert claims["sub"] == CLINICIAN["employeeHsaId"]
    assert claims["employee_hsa_id"] == CLINICIAN["employeeHsaId"]
    assert claims["personnummer"] == CLINICIAN["pnr"]
    assert claims["commission_hsa_id"] == CLINICIAN["commissionHsaId"]
    assert claims["care_unit_hsa_id"] == CLINICIAN["healthCareUnitHsaId"]
    assert claims["care_provider_hsa_id"] == CLINICIAN["healthCareProviderHsaId"]
    id_token = jwt.decode(response.json()["id_token"], keys).claims
    assert id_token["iss"] == f"{oidc.root}/auth"
    assert id_token["sub"] == CLINICIAN["employeeHsaId"]


async def test_a_login_the_provider_refused_is_not_a_login(
    oidc: Setup, database_url: str, browser: httpx.AsyncClient
) -> None:
    oidc.provider.refuse = True
    url, _, _ = await app_authorization(oidc, database_url)
    done = await to_provider_and_back(browser, url)
    assert done.status_code == 400
    assert "SITHS card not accepted" in done.text


async def test_an_id_token_with_another_nonce_is_refused(
    oidc: Setup, database_url: str, browser: httpx.AsyncClient
) -> None:
    oidc.provider.wrong_nonce = True
    url, _, _ = await app_authorization(oidc, database_url)
    done = await to_provider_and_back(browser, url)
    assert done.status_code == 400
    assert "ID token is not valid" in done.text


async def test_the_answer_must_come_back_to_the_browser_that_started_the_login(
    oidc: Setup, database_url: str, browser: httpx.AsyncClient
) -> None:
    url, _, _ = await app_authorization(oidc, database_url)
    out = await browser.get(url)
    upstream = await browser.get(out.headers["location"])
    back = upstream.headers["location"]
    async with httpx.AsyncClient(timeout=30) as elsewhere:
        stolen = await elsewhere.get(back)
    assert stolen.status_code == 400
    assert "another browser" in stolen.text
    assert (await browser.get(back)).status_code == 302
    again = await browser.get(back)
    assert again.status_code == 400
