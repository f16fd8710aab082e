"""What a clinician chooses during an app's login, and what the app then gets: the commission
(medarbetaruppdrag) the session is for when they have several (DOMAIN.md L1, L3), the encounter
of a standalone launch that asks for `launch/encounter`, and a fresh ID token with each
refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from flode.auth.demo import demo_users
from flode.auth.identity import Clinician

from .conftest import AuthServer, hidden, unique
from .test_app_launch import CLINICIAN, Authorization, app, personnummer, returned

HSA = "urn:oid:1.2.752.29.4.19"
TWO_COMMISSIONS = next(user for user, _ in demo_users() if user.must_choose)


@pytest.fixture
async def browser(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=auth_server.root, follow_redirects=False, timeout=30
    ) as c:
        yield c


async def logged_in(browser: httpx.AsyncClient, url: str, user: Clinician) -> httpx.Response:
    """The page (or redirect) after the login page."""
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    return await browser.post(
        "/auth/login", data={"request": hidden(page.text, "request"), "user": user.hsa_id}
    )


async def exchange(http: httpx.AsyncClient, request: Authorization, after: httpx.Response) -> Any:
    back = returned(after)
    response = await http.post("/auth/token", data=request.exchange(back["code"]))
    assert response.status_code == 200, response.text
    return response.json()


async def claims_of(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set((await http.get("/auth/jwks")).json())
    found: dict[str, Any] = jwt.decode(token, keys).claims
    return found


async def patient_with_encounters(
    admin: httpx.AsyncClient, unit: str, count: int
) -> tuple[str, list[str]]:
    """A new patient and `count` encounters of theirs at the care unit `unit`, oldest first."""
    created = await admin.post(
        "Patient",
        json={
            "resourceType": "Patient",
            "identifier": [
                {
                    "system": "http://electronichealth.se/identifier/personnummer",
                    "value": personnummer(),
                }
            ],
        },
    )
    assert created.status_code == 201, created.text
    patient = created.json()["id"]
    encounters = []
    for day in range(1, count + 1):
        encounter = await admin.post(
            "Encounter",
            json={
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                    "display": "ambulatory",
                },
                "type": [{"text": f"Besök {day}"}],
                "subject": {"reference": f"Patient/{patient}"},
                "period": {"start": f"2026-01-{day:02d}T08:00:00+01:00"},
                "serviceProvider": {"identifier": {"system": HSA, "value": unit}},
            },
        )
        assert encounter.status_code == 201, encounter.text
        encounters.append(encounter.json()["id"])
    return patient, encounters


async def test_a_clinician_with_two_commissions_chooses_one_and_the_token_carries_it(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
) -> None:
    first, second = TWO_COMMISSIONS.commissions
    assert first.care_unit_hsa_id != second.care_unit_hsa_id
    request = Authorization(auth_server, await app(db), "openid user/*.rs")
    page = await browser.get(request.url())
    assert "2 commissions" in page.text
    chooser = await logged_in(browser, request.url(), TWO_COMMISSIONS)
    assert chooser.status_code == 200, chooser.text
    assert "Choose a commission" in chooser.text
    assert first.hsa_id in chooser.text
    assert second.hsa_id in chooser.text
    assert second.name in chooser.text

    after = await browser.post(
        "/auth/commission",
        data={"login": hidden(chooser.text, "login"), "commission": second.hsa_id},
    )
    body = await exchange(http, request, after)
    claims = await claims_of(http, body["access_token"])
    assert claims["employee_hsa_id"] == TWO_COMMISSIONS.hsa_id
    assert claims["commission_hsa_id"] == second.hsa_id
    assert claims["care_unit_hsa_id"] == second.care_unit_hsa_id
    assert claims["care_provider_hsa_id"] == second.care_provider_hsa_id


async def test_a_commission_that_is_not_the_clinicians_is_refused_and_asked_again(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "openid user/*.rs")
    chooser = await logged_in(browser, request.url(), TWO_COMMISSIONS)
    login = hidden(chooser.text, "login")
    for wrong in (CLINICIAN.commission_hsa_id or "", "", unique("SE2321000131-C")):
        again = await browser.post("/auth/commission", data={"login": login, "commission": wrong})
        assert again.status_code == 200, again.text
        assert "Choose one of the listed." in again.text
    damaged = await browser.post(
        "/auth/commission", data={"login": login[:-4], "commission": wrong}
    )
    assert damaged.status_code == 400
    assert "damaged" in damaged.text


async def test_the_choice_of_commission_cannot_be_skipped(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    request = Authorization(auth_server, await app(db), "openid launch/patient patient/*.rs")
    chooser = await logged_in(browser, request.url(), TWO_COMMISSIONS)
    login = hidden(chooser.text, "login")
    # The chooser's request sent straight to the patient and encounter pickers.
    for step, field in (("/auth/patient", "patient"), ("/auth/encounter", "encounter")):
        skipped = await browser.post(step, data={"login": login, field: "anything"})
        assert skipped.status_code == 200, skipped.text
        assert "Choose a commission" in skipped.text


async def test_a_clinician_with_one_commission_is_not_asked(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
) -> None:
    request = Authorization(auth_server, await app(db), "openid user/*.rs")
    body = await exchange(http, request, await logged_in(browser, request.url(), CLINICIAN))
    claims = await claims_of(http, body["access_token"])
    assert claims["commission_hsa_id"] == CLINICIAN.commission_hsa_id
    assert claims["care_unit_hsa_id"] == CLINICIAN.care_unit_hsa_id


async def test_a_standalone_launch_asking_for_an_encounter_picks_one_of_the_patients(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    unit = CLINICIAN.care_unit_hsa_id or ""
    patient, (older, newer) = await patient_with_encounters(admin, unit, 2)
    client_id = await app(db, scopes=("openid", "launch/patient", "launch/encounter", "user/*.rs"))
    request = Authorization(auth_server, client_id, "openid launch/patient launch/encounter")
    picker = await logged_in(browser, request.url(), CLINICIAN)
    assert "Choose a patient" in picker.text
    page = await browser.post(
        "/auth/patient", data={"login": hidden(picker.text, "login"), "patient": patient}
    )
    assert page.status_code == 200, page.text
    assert "Choose an encounter" in page.text
    assert page.text.index(newer) < page.text.index(older)  # newest first
    assert "Besök 2" in page.text

    after = await browser.post(
        "/auth/encounter", data={"login": hidden(page.text, "login"), "encounter": older}
    )
    body = await exchange(http, request, after)
    assert body["patient"] == patient
    assert body["encounter"] == older
    claims = await claims_of(http, body["access_token"])
    assert claims["encounter"] == older


async def test_an_encounter_that_is_not_the_patients_is_refused_and_asked_again(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    unit = CLINICIAN.care_unit_hsa_id or ""
    patient, _ = await patient_with_encounters(admin, unit, 1)
    _, (elsewhere,) = await patient_with_encounters(admin, unit, 1)
    client_id = await app(db, scopes=("launch/patient", "launch/encounter", "user/*.rs"))
    request = Authorization(auth_server, client_id, "launch/patient launch/encounter user/*.rs")
    picker = await logged_in(browser, request.url(), CLINICIAN)
    page = await browser.post(
        "/auth/patient", data={"login": hidden(picker.text, "login"), "patient": patient}
    )
    again = await browser.post(
        "/auth/encounter", data={"login": hidden(page.text, "login"), "encounter": elsewhere}
    )
    assert again.status_code == 200, again.text
    assert "Choose one of the listed encounters." in again.text
    assert elsewhere not in again.text.replace(hidden(page.text, "login"), "")


async def test_a_patient_without_encounters_opens_the_app_without_one(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    patient, _ = await patient_with_encounters(admin, CLINICIAN.care_unit_hsa_id or "", 0)
    client_id = await app(db, scopes=("launch/patient", "launch/encounter", "user/*.rs"))
    request = Authorization(auth_server, client_id, "launch/patient launch/encounter user/*.rs")
    picker = await logged_in(browser, request.url(), CLINICIAN)
    after = await browser.post(
        "/auth/patient", data={"login": hidden(picker.text, "login"), "patient": patient}
    )
    body = await exchange(http, request, after)
    assert body["patient"] == patient
    assert "encounter" not in body


async def test_a_refresh_gives_a_fresh_id_token_for_the_same_clinician(
    auth_server: AuthServer,
    db: asyncpg.Connection,
    browser: httpx.AsyncClient,
    http: httpx.AsyncClient,
) -> None:
    scopes = ("openid", "fhirUser", "profile", "offline_access", "user/*.rs")
    request = Authorization(
        auth_server, await app(db, scopes=scopes), " ".join(scopes), nonce="n-0S6_WzA2Mj"
    )
    body = await exchange(http, request, await logged_in(browser, request.url(), CLINICIAN))
    first = await claims_of(http, body["id_token"])
    assert first["nonce"] == "n-0S6_WzA2Mj"

    refreshed = await http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": request.client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    again = await claims_of(http, refreshed.json()["id_token"])
    for claim in ("iss", "sub", "aud", "fhirUser", "name"):
        assert again[claim] == first[claim], claim
    assert again["iat"] >= first["iat"]
    assert "nonce" not in again  # the nonce belongs to the login (OpenID Connect Core §12.2)

    # Refreshed to fewer scopes, without openid: no ID token.
    narrower = await http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed.json()["refresh_token"],
            "client_id": request.client_id,
            "scope": "user/*.rs",
        },
    )
    assert narrower.status_code == 200, narrower.text
    assert "id_token" not in narrower.json()


def test_the_demo_region_has_a_clinician_with_commissions_at_two_units() -> None:
    units = {c.care_unit_hsa_id for c in TWO_COMMISSIONS.commissions}
    assert len(units) == 2
    assert TWO_COMMISSIONS.care_unit_hsa_id in units


async def test_discovery_says_a_standalone_launch_may_ask_for_an_encounter(
    http: httpx.AsyncClient,
) -> None:
    smart = (await http.get("/fhir/.well-known/smart-configuration")).json()
    assert "context-standalone-encounter" in smart["capabilities"]
    assert "launch/encounter" in smart["scopes_supported"]
