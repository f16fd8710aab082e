"""The care unit and care provider a module acts for (docs/modules.md): given at its
registration, both or neither, each an HSA-id; carried by the module's own tokens (the token
endpoint's and `flode token issue --client`'s), never by a clinician's token through it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from flode.auth import demo, modules
from flode.auth.keys import KeyRing
from flode.auth.modules import InvalidModule
from flode.auth.tokens import AccessToken, Tokens, issuer_of
from flode.demo.organizations import PROVIDER, UNITS
from flode.identifiers import InvalidIdentifier, hsa_id, is_hsa_id

from .conftest import (
    AuthServer,
    assertion,
    backend,
    client_credentials,
    es384_key,
    keys_dir,
    register,
    unique,
)
from .test_app_launch import CLINICIAN, REDIRECT, Authorization, code_for

UNIT = "SE2321000131-E000000000901"
PROVIDER_ID = "SE2321000131-E000000000001"
OWNER = {"care_unit_hsa_id": UNIT, "care_provider_hsa_id": PROVIDER_ID}
NOT_HSA_IDS = [
    "",
    "se2321000131-E1",  # lower-case country
    "SE232100013-E1",  # nine digits
    "SE23210001311-E1",  # eleven digits
    "SE2321000131E1",  # no dash
    "SE2321000131-",  # nothing after the dash
    "SE2321000131-Vårdenhet",  # å
    "SE2321000131-unit@vgr",  # @
    "SE2321000131-E1 2",  # a blank inside
    "SE2321000131-" + "E" * 19,  # 32 characters
]


def verified(server: AuthServer, raw: str) -> AccessToken:
    """The token as the server's verification reads it (signature, issuer, audience, expiry)."""
    tokens = Tokens(KeyRing(keys_dir(server.config.data_dir)))
    return tokens.verify(raw, {issuer_of(server.root)}, {server.base})


def flode(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    if data_dir is not None:
        env["FLODE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "flode", *args], capture_output=True, text=True, timeout=120, env=env
    )


def cli_token(server: AuthServer, database_url: str, client_id: str) -> AccessToken:
    """A token `flode token issue --client` signs with the server's keys, verified."""
    issued = flode(
        "token", "issue", "--database-url", database_url, "--client", client_id,
        "--audience", server.base, data_dir=server.config.data_dir,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    return verified(server, issued.stdout.strip().splitlines()[-1])


@pytest.fixture
async def browser(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=auth_server.root, follow_redirects=False, timeout=30
    ) as c:
        yield c


def test_an_hsa_id_is_se_an_organisation_number_a_dash_and_letters_or_digits() -> None:
    for valid in ("SE2321000131-E000000000001", "SE1234567890-a1", "SE2321000131-" + "E" * 18):
        assert is_hsa_id(valid), valid
        assert hsa_id(valid) == valid
    assert hsa_id("  SE2321000131-E000000000001\n") == "SE2321000131-E000000000001"
    for invalid in NOT_HSA_IDS:
        assert not is_hsa_id(invalid), invalid
        with pytest.raises(InvalidIdentifier, match="is not an HSA-id"):
            hsa_id(invalid)
    with pytest.raises(InvalidIdentifier, match="at most 31"):
        hsa_id("SE2321000131-" + "E" * 19)


async def test_a_module_registered_with_a_care_unit_and_provider_keeps_both(
    db: asyncpg.Connection,
) -> None:
    added = await register(
        db,
        scopes=("system/Patient.rs",),
        redirect_uris=(REDIRECT,),
        care_unit_hsa_id=f" {UNIT} ",
        care_provider_hsa_id=PROVIDER_ID,
    )
    assert (added.care_unit_hsa_id, added.care_provider_hsa_id) == (UNIT, PROVIDER_ID)
    stored = await modules.get(db, added.client_id)
    assert stored is not None
    assert stored.owner_claims() == OWNER

    plain = await register(db, scopes=("system/Patient.rs",), redirect_uris=(REDIRECT,))
    assert plain.care_unit_hsa_id is None
    assert plain.care_provider_hsa_id is None
    assert plain.owner_claims() == {}


@pytest.mark.parametrize(
    ("owner", "given", "missing"),
    [
        ({"care_unit_hsa_id": UNIT}, "care unit", "care provider"),
        ({"care_provider_hsa_id": PROVIDER_ID}, "care provider", "care unit"),
        ({"care_unit_hsa_id": UNIT, "care_provider_hsa_id": " "}, "care unit", "care provider"),
    ],
)
async def test_a_care_unit_without_its_provider_or_the_other_way_round_is_refused(
    db: asyncpg.Connection, owner: dict[str, str], given: str, missing: str
) -> None:
    client_id = unique("half")
    with pytest.raises(InvalidModule) as refused:
        await register(
            db, client_id=client_id, scopes=("system/Patient.rs",), redirect_uris=(REDIRECT,),
            **owner,
        )  # fmt: skip
    message = str(refused.value)
    assert f"the {given} is given but not the {missing}" in message
    assert "give both or neither" in message
    assert refused.value.about == missing.replace(" ", "_")  # the CLI and the API name it
    assert await modules.get(db, client_id) is None


@pytest.mark.parametrize("invalid", NOT_HSA_IDS[1:])
async def test_a_care_unit_or_provider_that_is_not_an_hsa_id_is_refused(
    db: asyncpg.Connection, invalid: str
) -> None:
    for which, owner in (
        ("care unit", {"care_unit_hsa_id": invalid, "care_provider_hsa_id": PROVIDER_ID}),
        ("care provider", {"care_unit_hsa_id": UNIT, "care_provider_hsa_id": invalid}),
    ):
        with pytest.raises(InvalidModule, match=f"the {which}: .* is not an HSA-id"):
            await register(db, scopes=("system/Patient.rs",), redirect_uris=(REDIRECT,), **owner)


async def test_the_owner_is_changed_and_removed_together(db: asyncpg.Connection) -> None:
    module = await register(db, scopes=("system/Patient.rs",), redirect_uris=(REDIRECT,))
    changed = await modules.set_owner(db, module.client_id, UNIT, PROVIDER_ID)
    assert changed is not None
    assert changed.owner_claims() == OWNER
    with pytest.raises(InvalidModule, match="given but not the care provider"):
        await modules.set_owner(db, module.client_id, UNIT, None)
    with pytest.raises(InvalidModule, match="the care unit: 'SE1-x' is not an HSA-id"):
        await modules.set_owner(db, module.client_id, "SE1-x", PROVIDER_ID)
    removed = await modules.set_owner(db, module.client_id, None, None)
    assert removed is not None
    assert removed.owner_claims() == {}
    assert await modules.set_owner(db, unique("nobody"), UNIT, PROVIDER_ID) is None


async def test_a_client_credentials_token_carries_the_modules_care_unit_and_provider(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    key = es384_key()
    owned = await backend(db, key, care_unit_hsa_id=UNIT, care_provider_hsa_id=PROVIDER_ID)
    signed = assertion(key, owned.client_id, auth_server.token_url)
    response = await http.post("/auth/token", data=client_credentials(signed, "system/*.rs"))
    assert response.status_code == 200, response.text
    token = verified(auth_server, response.json()["access_token"])
    assert token.client_id == token.subject == owned.client_id
    assert token.context == OWNER
    api = await http.get(
        "/fhir/Patient",
        params={"_count": "1"},
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )
    assert api.status_code == 200, api.text

    # Without an owner, a module's token carries neither claim.
    other = es384_key()
    plain = await backend(db, other)
    signed = assertion(other, plain.client_id, auth_server.token_url)
    response = await http.post("/auth/token", data=client_credentials(signed, "system/*.rs"))
    assert response.status_code == 200, response.text
    context = verified(auth_server, response.json()["access_token"]).context
    assert "care_unit_hsa_id" not in context
    assert "care_provider_hsa_id" not in context


async def test_a_clinicians_token_through_the_module_keeps_the_clinicians_unit(
    auth_server: AuthServer, db: asyncpg.Connection, browser: httpx.AsyncClient
) -> None:
    assert CLINICIAN.care_unit_hsa_id not in (None, UNIT)
    app = await register(
        db,
        scopes=("openid", "fhirUser", "online_access", "user/*.rs"),
        redirect_uris=(REDIRECT,),
        **OWNER,
    )
    request = Authorization(auth_server, app.client_id, "openid online_access user/*.rs")
    code = await code_for(browser, request)
    response = await browser.post("/auth/token", data=request.exchange(code))
    assert response.status_code == 200, response.text
    body = response.json()
    clinicians = {
        "care_unit_hsa_id": CLINICIAN.care_unit_hsa_id,
        "care_provider_hsa_id": CLINICIAN.care_provider_hsa_id,
    }
    token = verified(auth_server, body["access_token"])
    assert token.subject == CLINICIAN.hsa_id
    assert token.client_id == app.client_id
    assert {k: token.context.get(k) for k in clinicians} == clinicians

    refreshed = await browser.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    again = verified(auth_server, refreshed.json()["access_token"])
    assert {k: again.context.get(k) for k in clinicians} == clinicians


def test_the_cli_registers_shows_updates_and_issues_tokens_with_the_owner(
    auth_server: AuthServer, database_url: str
) -> None:
    base = ["--database-url", database_url]
    half = flode(
        "module", "add", *base, "--name", "Half", "--scopes", "system/Patient.rs",
        "--redirect-uri", REDIRECT, "--care-unit", UNIT,
    )  # fmt: skip
    assert half.returncode == 1
    assert "was not registered" in half.stderr
    assert "care provider" in half.stderr
    wrong = flode(
        "module", "add", *base, "--name", "Wrong", "--scopes", "system/Patient.rs",
        "--redirect-uri", REDIRECT, "--care-unit", "SE-unit", "--care-provider", PROVIDER_ID,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "is not an HSA-id" in wrong.stderr

    added = flode(
        "module", "add", *base, "--name", "Lab system", "--scopes", "system/Patient.rs",
        "--redirect-uri", REDIRECT, "--care-unit", UNIT, "--care-provider", PROVIDER_ID,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.strip().splitlines()[-1]
    shown = flode("module", "show", client_id, *base)
    assert shown.returncode == 0, shown.stderr
    assert UNIT in shown.stdout
    assert PROVIDER_ID in shown.stdout
    listed = flode("module", "list", *base)
    assert listed.returncode == 0, listed.stderr
    assert UNIT in listed.stdout

    token = cli_token(auth_server, database_url, client_id)
    assert token.client_id == client_id
    assert token.context["care_unit_hsa_id"] == UNIT
    assert token.context["care_provider_hsa_id"] == PROVIDER_ID
    # A module's token is for the unit it is registered with, not one given here.
    other = flode(
        "token", "issue", *base, "--client", client_id, "--audience", auth_server.base,
        "--care-unit", "SE2321000131-E000000000201", "--care-provider", PROVIDER_ID,
        data_dir=auth_server.config.data_dir,
    )  # fmt: skip
    assert other.returncode == 2
    assert "registered with" in other.stderr

    moved = "SE2321000131-E000000000902"
    updated = flode(
        "module", "update", client_id, *base, "--care-unit", moved, "--care-provider", PROVIDER_ID
    )
    assert updated.returncode == 0, updated.stderr
    assert moved in updated.stdout
    context = cli_token(auth_server, database_url, client_id).context
    assert context["care_unit_hsa_id"] == moved
    half_update = flode("module", "update", client_id, *base, "--care-provider", PROVIDER_ID)
    assert half_update.returncode == 1
    assert "not changed" in half_update.stderr

    cleared = flode("module", "update", client_id, *base, "--no-care-unit")
    assert cleared.returncode == 0, cleared.stderr
    context = cli_token(auth_server, database_url, client_id).context
    assert "care_unit_hsa_id" not in context
    assert "care_provider_hsa_id" not in context


async def test_the_demo_laboratory_acts_for_a_unit_of_the_demo_region(
    db: asyncpg.Connection, tmp_path: Path
) -> None:
    unit = demo.lab_unit()
    assert unit in UNITS.values()
    transaction = db.transaction()
    await transaction.start()
    try:
        await demo.seed_modules(db, tmp_path)
        lab = await modules.get(db, demo.LAB)
    finally:
        await transaction.rollback()
    assert lab is not None
    assert lab.care_unit_hsa_id == unit["identifier"][0]["value"]
    assert lab.care_provider_hsa_id == PROVIDER["identifier"][0]["value"]
