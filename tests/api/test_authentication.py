"""The FHIR API admits only requests with a valid access token (SMART on FHIR, RFC 6750):
every refusal is a 401 with a `WWW-Authenticate` challenge and an OperationOutcome that says
what was wrong with the token and nothing about the data."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Protocol

import httpx
import orjson
import pytest

from flode.auth.keys import KeyRing
from flode.auth.local import issue_local
from flode.auth.tokens import Tokens, issuer_of
from flode.config import Config


class Server(Protocol):
    """The session's test server (tests/conftest.py)."""

    base_url: str
    root_url: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(server: Server, headers: dict[str, str], reason: str | None) -> None:
    async with httpx.AsyncClient(base_url=server.base_url + "/") as client:
        response = await client.get("Patient", headers=headers)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="flode"')
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert "entry" not in outcome
    if reason is not None:
        assert 'error="invalid_token"' in challenge
        assert reason in outcome["issue"][0]["diagnostics"]


async def test_a_request_with_the_operators_token_is_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("Patient", params={"_count": 1})).status_code == 200


async def test_a_request_without_a_token_is_refused_with_a_challenge(server: Server) -> None:
    await refused(server, {}, None)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Token abc"])
async def test_a_request_with_another_scheme_or_no_token_is_refused(
    server: Server, header: str
) -> None:
    await refused(server, {"Authorization": header}, "")


async def test_a_malformed_token_is_refused(server: Server) -> None:
    await refused(server, bearer("not.a.jwt"), "malformed")


async def test_a_token_signed_by_another_key_is_refused(
    server: Server, test_config: Config, tmp_path: Path
) -> None:
    other = Config(data_dir=tmp_path)
    await refused(server, bearer(issue_local(other, server.root_url)), "signature")


async def test_a_tampered_token_is_refused(server: Server, test_config: Config) -> None:
    header, payload, signature = issue_local(test_config, server.root_url).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.cruds patient/*.cruds"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
    await refused(server, bearer(f"{header}.{forged}.{signature}"), "signature")


async def test_an_expired_token_is_refused(server: Server, test_config: Config) -> None:
    token = issue_local(test_config, server.root_url, lifetime=-1)
    await refused(server, bearer(token), "expired")


async def test_a_token_for_another_server_is_refused(server: Server, test_config: Config) -> None:
    tokens = Tokens(KeyRing(test_config.keys_dir))
    wrong_audience, _ = tokens.issue(
        issuer=issuer_of(server.root_url),
        client_id="x",
        subject="x",
        scopes=["system/*.cruds"],
        audience="https://elsewhere.example/fhir",
    )
    await refused(server, bearer(wrong_audience), "(aud)")
    wrong_issuer, _ = tokens.issue(
        issuer="https://elsewhere.example/auth",
        client_id="x",
        subject="x",
        scopes=["system/*.cruds"],
        audience=server.base_url,
    )
    await refused(server, bearer(wrong_issuer), "(iss)")


async def test_the_capability_statement_needs_no_token(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url + "/") as client:
        response = await client.get("metadata")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"
