"""SMART App Launch (https://hl7.org/fhir/smart-app-launch/app-launch.html): standalone and EHR
launch with the authorization code flow, PKCE, the development login, the patient picker,
ID tokens and refresh tokens. The standalone launch is driven by `fhirclient`, a SMART client
library, with a headless browser made of httpx."""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fhirclient import client as smart_client
from fhirclient.models.patient import Patient
from joserfc import jwt
from joserfc.jwk import KeySet

from flode.auth.demo import demo_users
from flode.auth.modules import Declaration

from .conftest import (
    AuthServer,
    assertion,
    backend,
    client_credentials,
    es384_key,
    hidden,
    register,
    unique,
)

REDIRECT = "http://127.0.0.1:9/callback"
APP_SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "user/*.rs",
)
CLINICIAN = demo_users()[0][0]


def personnummer() -> str:
    """A made-up 12-digit personnummer with a valid check digit."""
    digits = f"19{random.randint(40, 99)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    digits += f"{random.randint(100, 999)}"
    total = 0
    for index, char in enumerate(digits[2:]):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


@pytest.fixture
async def browser(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=auth_server.root, follow_redirects=False, timeout=30
    ) as c:
        yield c


async def app(db: asyncpg.Connection, scopes: tuple[str, ...] = APP_SCOPES, **fields: Any) -> str:
    # It reads every type: a module's declaration holds as soon as the server has reloaded
    # the registry, which may be before or after the app's first request.
    fields.setdefault("declaration", Declaration(frozenset({"*"})))
    module = await register(db, scopes=scopes, redirect_uris=(REDIRECT,), **fields)
    return module.client_id


@pytest.fixture
def patient(auth_server: AuthServer) -> tuple[str, str]:
    """A new patient: its id and personnummer."""
    number = personnummer()
    created = httpx.post(
        f"{auth_server.base}/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [
                {"system": "http://electronichealth.se/identifier/personnummer", "value": number}
            ],
            "name": [{"family": "Testsson", "given": ["Tove"]}],
        },
        headers=auth_server.operator(),
    )
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    # The demo clinician's care unit cares for the patient (the care relationship, L1).
    encounter = httpx.post(
        f"{auth_server.base}/Encounter",
        json={
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{id}"},
            "serviceProvider": {
                "identifier": {
                    "system": "urn:oid:1.2.752.29.4.19",
                    "value": CLINICIAN.care_unit_hsa_id,
                }
            },
        },
        headers=auth_server.operator(),
    )
    assert encounter.status_code == 201, encounter.text
    return id, number


async def log_in(
    browser: httpx.AsyncClient, url: str, patient: str | None = None
) -> httpx.Response:
    """Go through the login page (and the picker): the response that sends the browser back."""
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    assert CLINICIAN.name in page.text
    after = await browser.post(
        "/auth/login", data={"request": hidden(page.text, "request"), "user": CLINICIAN.hsa_id}
    )
    if after.status_code == 200 and 'name="login"' in after.text:
        assert patient is not None, "the patient picker was shown"
        after = await browser.post(
            "/auth/patient", data={"login": hidden(after.text, "login"), "patient": patient}
        )
    return after


def returned(response: httpx.Response) -> dict[str, str]:
    """The parameters the app gets back at its redirect URI."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Authorization:
    """An app's authorization request, with its PKCE verifier."""

    def __init__(self, server: AuthServer, client_id: str, scope: str, **extra: str) -> None:
        self.verifier = secrets.token_urlsafe(48)
        self.client_id = client_id
        self.params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": secrets.token_urlsafe(8),
            "aud": server.base,
            "code_challenge": create_s256_code_challenge(self.verifier),
            "code_challenge_method": "S256",
            **extra,
        }

    def url(self, **changes: str | None) -> str:
        params = {k: v for k, v in {**self.params, **changes}.items() if v is not None}
        return f"/auth/authorize?{urlencode(params)}"

    def exchange(self, code: str, **changes: str | None) -> dict[str, str]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": self.client_id,
            "code_verifier": self.verifier,
            **changes,
        }
        return {k: v for k, v in form.items() if v is not None}


async def code_for(
    browser: httpx.AsyncClient, request: Authorization, patient: str | None = None, **changes: str
) -> str:
    back = returned(await log_in(browser, request.url(**changes), patient))
    assert back["state"] == request.params["state"]
    return back["code"]


def test_standalone_launch_with_a_smart_client_library(
    auth_server: AuthServer, patient: tuple[str, str]
) -> None:
    patient_id, number = patient
    client_id = asyncio.run(_register_app(auth_server))
    smart = httpx.get(f"{auth_server.base}/.well-known/smart-configuration").json()
    state = {
        "app_id": client_id,
        "scope": "openid fhirUser profile offline_access patient/*.rs",
        "redirect": REDIRECT,
        "server": {
            "base_uri": auth_server.base + "/",
            "auth_type": "oauth2",
            "auth": {
                "app_id": client_id,
                "aud": auth_server.base,
                "authorize_uri": smart["authorization_endpoint"],
                "token_uri": smart["token_endpoint"],
                "redirect_uri": REDIRECT,
            },
        },
    }
    fhir = smart_client.FHIRClient(state=state)
    authorize_url = fhir.authorize_url
    assert "code_challenge_method=S256" in authorize_url

    # The user's browser: the login page, the patient picker, back to the app.
    with httpx.Client(base_url=auth_server.root, follow_redirects=False) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200
        picker = browser.post(
            "/auth/login", data={"request": hidden(page.text, "request"), "user": CLINICIAN.hsa_id}
        )
        assert "Choose a patient" in picker.text
        back = browser.post(
            "/auth/patient", data={"login": hidden(picker.text, "login"), "patient": number}
        )
    returned(back)
    fhir.handle_callback(back.headers["location"])
    assert fhir.patient_id == patient_id
    auth = fhir.server.auth
    assert auth.access_token
    assert auth.refresh_token

    keys = KeySet.import_key_set(httpx.get(smart["jwks_uri"]).json())
    claims = jwt.decode(auth.access_token, keys).claims
    assert claims["patient"] == patient_id
    assert claims["sub"] == CLINICIAN.hsa_id
    assert claims["employee_hsa_id"] == CLINICIAN.hsa_id
    assert claims["commission_hsa_id"] == CLINICIAN.commission_hsa_id
    assert claims["care_unit_hsa_id"] == CLINICIAN.care_unit_hsa_id
    assert claims["care_provider_hsa_id"] == CLINICIAN.care_provider_hsa_id
    assert claims["personnummer"] == CLINICIAN.personnummer
    assert claims["scope"].split() == sorted(
        ["fhirUser", "launch/patient", "offline_access", "openid", "patient/*.rs", "profile"]
    )

    read = Patient.read(patient_id, fhir.server)
    assert read.id == patient_id

    first = auth.access_token
    assert fhir.reauthorize()
    assert fhir.server.auth.access_token != first
    assert jwt.decode(fhir.server.auth.access_token, keys).claims["patient"] == patient_id


async def _register_app(server: AuthServer) -> str:
    conn = await asyncpg.connect(server.database_url)
    try:
        return await app(conn)
    finally:
        await conn.close()


async def test_the_token_response_carries_the_context_an_id_token_and_a_refresh_token(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    patient: tuple[str, str],
) -> None:
    patient_id, _ = patient
    request = Authorization(
        auth_server,
        await app(db),
        "openid fhirUser profile launch/patient online_access patient/*.rs",
        nonce="n-0S6_WzA2Mj",
    )
    code = await code_for(browser, request, patient=patient_id)
    response = await browser.post("/auth/token", data=request.exchange(code))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["patient"] == patient_id
    assert body["need_patient_banner"] is True
    assert body["refresh_token"]
    keys = KeySet.import_key_set((await browser.get("/auth/jwks")).json())
    id_token = jwt.decode(body["id_token"], keys)
    assert id_token.header["alg"] == "ES256"
    claims = id_token.claims
    assert claims["iss"] == f"{auth_server.root}/auth"
    assert claims["aud"] == request.client_id
    assert claims["sub"] == CLINICIAN.hsa_id
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["name"] == CLINICIAN.name
    assert claims["fhirUser"] == f"{auth_server.base}/Practitioner/{CLINICIAN.practitioner_id}"


async def test_the_picker_asks_again_for_a_patient_it_cannot_find(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "launch/patient patient/*.rs")
    page = await browser.get(request.url())
    picker = await browser.post(
        "/auth/login", data={"request": hidden(page.text, "request"), "user": CLINICIAN.hsa_id}
    )
    assert 'name="login"' in picker.text
    again = await browser.post(
        "/auth/patient", data={"login": hidden(picker.text, "login"), "patient": "000000000000"}
    )
    assert again.status_code == 200
    assert "No single patient" in again.text


async def test_a_request_without_pkce_or_with_plain_pkce_is_refused(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    missing = returned(
        await browser.get(request.url(code_challenge=None, code_challenge_method=None))
    )
    assert missing["error"] == "invalid_request"
    assert "PKCE" in missing["error_description"]
    assert missing["state"] == request.params["state"]
    plain = returned(await browser.get(request.url(code_challenge_method="plain")))
    assert plain["error"] == "invalid_request"


async def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    response = await browser.get(request.url(redirect_uri="https://attacker.example/cb"))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "not registered" in response.text
    unknown = await browser.get(request.url(client_id=unique("nobody")))
    assert unknown.status_code == 400
    assert "location" not in unknown.headers


async def test_aud_must_be_this_fhir_server(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    back = returned(await browser.get(request.url(aud="https://other.example/fhir")))
    assert back["error"] == "invalid_request"
    assert "aud" in back["error_description"]


async def test_scopes_beyond_what_the_app_may_have_are_not_granted(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    client_id = await app(db, scopes=("openid", "user/Observation.rs"))
    request = Authorization(auth_server, client_id, "openid user/*.cruds patient/*.rs")
    code = await code_for(browser, request)
    body = (await browser.post("/auth/token", data=request.exchange(code))).json()
    assert body["scope"] == "openid user/Observation.rs"
    nothing = returned(await browser.get(request.url(scope="user/Patient.rs system/*.rs")))
    assert nothing["error"] == "invalid_scope"


async def test_a_wrong_code_verifier_a_missing_one_or_another_redirect_uri_is_refused(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    code = await code_for(browser, request)
    wrong = await browser.post("/auth/token", data=request.exchange(code, code_verifier="x" * 50))
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"

    code = await code_for(browser, request)
    missing = await browser.post("/auth/token", data=request.exchange(code, code_verifier=None))
    assert missing.json()["error"] == "invalid_request"

    code = await code_for(browser, request)
    elsewhere = await browser.post(
        "/auth/token", data=request.exchange(code, redirect_uri="http://127.0.0.1:9/other")
    )
    assert elsewhere.json()["error"] == "invalid_grant"


async def test_a_code_used_twice_is_refused_and_its_tokens_are_revoked(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs offline_access")
    code = await code_for(browser, request)
    first = (await browser.post("/auth/token", data=request.exchange(code))).json()
    headers = {"Authorization": f"Bearer {first['access_token']}"}
    assert (await browser.get("/fhir/Patient", headers=headers)).status_code != 401
    again = await browser.post("/auth/token", data=request.exchange(code))
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert (await browser.get("/fhir/Patient", headers=headers)).status_code == 401
    refreshed = await browser.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": request.client_id,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_an_expired_code_is_refused(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    code = await code_for(browser, request)
    await db.execute(
        "UPDATE auth_code SET expires = now() - interval '1 second' WHERE code_hash = $1",
        hashlib.sha256(code.encode()).hexdigest(),
    )
    response = await browser.post("/auth/token", data=request.exchange(code))
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the authorization code has expired",
    }


async def test_a_code_of_another_app_is_refused(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    code = await code_for(browser, request)
    other = await app(db)
    response = await browser.post("/auth/token", data=request.exchange(code, client_id=other))
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_tokens_rotate_and_a_replayed_one_revokes_the_grant(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs offline_access")
    code = await code_for(browser, request)
    first = (await browser.post("/auth/token", data=request.exchange(code))).json()

    async def refresh(token: str, **extra: str) -> httpx.Response:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": request.client_id,
        }
        return await browser.post("/auth/token", data={**form, **extra})

    second = await refresh(first["refresh_token"], scope="user/Patient.rs")
    assert second.status_code == 200, second.text
    assert second.json()["scope"] == "user/Patient.rs"
    assert second.json()["refresh_token"] != first["refresh_token"]
    # Never more than was granted: asked for more, it gets what it had; for other things, none.
    wider = await refresh(second.json()["refresh_token"], scope="user/*.cruds")
    assert wider.json()["scope"] == "user/*.rs"
    other = await refresh(wider.json()["refresh_token"], scope="patient/*.rs system/*.rs")
    assert other.json()["error"] == "invalid_scope"

    replay = await refresh(first["refresh_token"])
    assert replay.json()["error"] == "invalid_grant"
    latest = {"Authorization": f"Bearer {wider.json()['access_token']}"}
    assert (await browser.get("/fhir/Patient", headers=latest)).status_code == 401


async def test_a_revoked_refresh_token_cannot_be_used(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs offline_access")
    code = await code_for(browser, request)
    tokens = (await browser.post("/auth/token", data=request.exchange(code))).json()
    revoked = await browser.post(
        "/auth/revoke",
        data={
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": request.client_id,
        },
    )
    assert revoked.status_code == 200
    response = await browser.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": request.client_id,
        },
    )
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the refresh token has been revoked",
    }


async def test_an_app_with_keys_must_sign_its_token_requests(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    key = es384_key()
    module = await register(
        db,
        scopes=("user/*.rs",),
        redirect_uris=(REDIRECT,),
        jwks={"keys": [key.as_dict(private=False)]},
    )
    request = Authorization(auth_server, module.client_id, "user/*.rs")
    code = await code_for(browser, request)
    unsigned = await browser.post("/auth/token", data=request.exchange(code))
    assert unsigned.status_code == 401
    assert unsigned.json()["error"] == "invalid_client"
    code = await code_for(browser, request)
    signed = assertion(key, module.client_id, auth_server.token_url)
    form = request.exchange(
        code,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=signed,
    )
    assert (await browser.post("/auth/token", data=form)).status_code == 200


async def test_an_ehr_launch_opens_the_app_with_the_ehrs_patient(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    patient: tuple[str, str],
) -> None:
    patient_id, _ = patient
    key = es384_key()
    ehr = await backend(db, key, scopes=("flode/launch", "system/Patient.rs"))
    ehr_token = (
        await browser.post(
            "/auth/token",
            data=client_credentials(
                assertion(key, ehr.client_id, auth_server.token_url), "flode/launch"
            ),
        )
    ).json()["access_token"]
    client_id = await app(db)
    created = await browser.post(
        "/auth/launch",
        json={"patient": patient_id, "encounter": "enc-1", "client_id": client_id},
        headers={"Authorization": f"Bearer {ehr_token}"},
    )
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]

    request = Authorization(
        auth_server, client_id, "launch openid fhirUser patient/*.rs", launch=launch
    )
    code = await code_for(browser, request)
    body = (await browser.post("/auth/token", data=request.exchange(code))).json()
    assert body["patient"] == patient_id
    assert body["encounter"] == "enc-1"
    assert "launch" in body["scope"].split()
    assert "id_token" in body

    used = returned(await browser.get(request.url()))
    assert used["error"] == "invalid_request"
    assert "launch" in used["error_description"]


async def test_creating_a_launch_needs_the_launch_scope_and_a_real_patient(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    key = es384_key()
    module = await backend(db, key, scopes=("system/Patient.rs", "flode/launch"))

    async def token(scope: str) -> dict[str, str]:
        response = await browser.post(
            "/auth/token",
            data=client_credentials(assertion(key, module.client_id, auth_server.token_url), scope),
        )
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    forbidden = await browser.post(
        "/auth/launch", json={"patient": "x"}, headers=await token("system/Patient.rs")
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "insufficient_scope"
    missing = await browser.post(
        "/auth/launch", json={"patient": unique("nobody")}, headers=await token("flode/launch")
    )
    assert missing.status_code == 400
    anonymous = await browser.post("/auth/launch", json={})
    assert anonymous.status_code == 401


async def test_a_disabled_app_cannot_start_a_login(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    from flode.auth import modules

    client_id = await app(db)
    await modules.set_enabled(db, client_id, False)
    request = Authorization(auth_server, client_id, "user/*.rs")
    response = await browser.get(request.url())
    assert response.status_code == 400
    assert "Unknown app" in response.text


async def test_a_tampered_login_request_is_refused(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "user/*.rs")
    page = await browser.get(request.url())
    forged = hidden(page.text, "request")[:-4] + "AAAA"
    response = await browser.post("/auth/login", data={"request": forged, "user": CLINICIAN.hsa_id})
    assert response.status_code == 400
    assert "Login failed" in response.text
    unknown_user = await browser.post(
        "/auth/login", data={"request": hidden(page.text, "request"), "user": "SE000-nobody"}
    )
    assert unknown_user.status_code == 400
