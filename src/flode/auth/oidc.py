"""Clinician login at an upstream OpenID Connect provider (in Sweden: the region's or Inera's
IdP, where clinicians log in with SITHS eID; DOMAIN.md L3), with Authlib's OAuth 2.0 client:
authorization code with PKCE, `state` bound to the browser by a cookie, and the ID token's
signature, issuer, audience, expiry and nonce checked against the provider's published keys.

Which upstream claim holds the personnummer, the employee and commission HSA-ids, the care
unit and the care provider is configured (`FLODE_OIDC_CLAIMS`, docs/configuration.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flode.auth.identity import Clinician, LoginFailed
from flode.auth.modules import Module

COOKIE = "flode_login"
LOGIN_SECONDS = 15 * 60
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512"]
# Our name → the upstream claim that holds it, unless FLODE_OIDC_CLAIMS says otherwise.
DEFAULT_CLAIMS = {
    "employee_hsa_id": "employeeHsaId",
    "personnummer": "personalIdentityNumber",
    "commission_hsa_id": "commissionHsaId",
    "care_unit_hsa_id": "healthCareUnitHsaId",
    "care_provider_hsa_id": "healthCareProviderHsaId",
    "name": "name",
}


def claim_mapping(text: str) -> dict[str, str]:
    """`DEFAULT_CLAIMS` with the overrides in `name=claim,name=claim`."""
    mapping = dict(DEFAULT_CLAIMS)
    for item in text.replace(";", ",").split(","):
        name, _, claim = item.partition("=")
        if not item.strip():
            continue
        if name.strip() not in DEFAULT_CLAIMS or not claim.strip():
            raise ValueError(
                f"FLODE_OIDC_CLAIMS: '{item.strip()}' should be NAME=CLAIM with NAME one of "
                f"{', '.join(DEFAULT_CLAIMS)}"
            )
        mapping[name.strip()] = claim.strip()
    return mapping


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: str = "openid profile"
    claims: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))


class OidcLogin:
    """The production identity provider. `callback_of(request)` is this server's
    `/auth/login` URL as the upstream provider knows it."""

    def __init__(
        self,
        settings: OidcSettings,
        pool: asyncpg.Pool,
        http: httpx2.AsyncClient,
        callback_of: Callable[[Request], str],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.http = http
        self.callback_of = callback_of
        self._metadata: dict[str, Any] | None = None
        self._keys: tuple[float, KeySet] | None = None

    def _client(self, request: Request) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            token_endpoint_auth_method="client_secret_basic"
            if self.settings.client_secret
            else "none",
            scope=self.settings.scopes,
            redirect_uri=self.callback_of(request),
            code_challenge_method="S256",
        )

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = await self.http.get(url, timeout=10)
                response.raise_for_status()
                metadata = response.json()
            except (httpx2.HTTPError, ValueError) as exc:
                raise LoginFailed(
                    f"The identity provider cannot be reached ({url}): {exc}"
                ) from None
            if metadata.get("issuer") != self.settings.issuer:
                raise LoginFailed("The identity provider names another issuer than configured.")
            self._metadata = metadata
        return self._metadata

    async def start(
        self, request: Request, pending: str, client: Module, scopes: Sequence[str]
    ) -> Response:
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._client(request) as oauth:
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        await self.pool.execute(
            """INSERT INTO auth_login (state, request, nonce, code_verifier, expires)
               VALUES ($1, $2, $3, $4, $5)""",
            state,
            pending,
            nonce,
            verifier,
            datetime.now(UTC) + timedelta(seconds=LOGIN_SECONDS),
        )
        response = RedirectResponse(url, 302)
        response.set_cookie(
            COOKIE,
            state,
            max_age=LOGIN_SECONDS,
            path="/auth",
            httponly=True,
            samesite="lax",
            secure=self.callback_of(request).startswith("https:"),
        )
        return response

    async def complete(self, request: Request) -> tuple[Clinician, str]:
        params = request.query_params
        if "error" in params:
            reason = params.get("error_description") or params["error"]
            raise LoginFailed(f"The identity provider did not log you in: {reason}")
        state, code = params.get("state"), params.get("code")
        if not state or not code:
            raise LoginFailed("The identity provider sent no login back.")
        if request.cookies.get(COOKIE) != state:
            raise LoginFailed("This login was started in another browser window; start again.")
        row = await self.pool.fetchrow(
            "DELETE FROM auth_login WHERE state = $1 RETURNING request, nonce, code_verifier, "
            "expires",
            state,
        )
        if row is None or row["expires"] < datetime.now(UTC):
            raise LoginFailed("The login took too long or was already used; start again.")
        metadata = await self.metadata()
        try:
            async with self._client(request) as oauth:
                token = await oauth.fetch_token(
                    metadata["token_endpoint"], code=code, code_verifier=row["code_verifier"]
                )
                claims = await self._verified(token.get("id_token"), row["nonce"], metadata)
                if metadata.get("userinfo_endpoint"):
                    info = await oauth.get(metadata["userinfo_endpoint"], timeout=10)
                    if info.status_code == 200 and info.json().get("sub") == claims["sub"]:
                        claims = {**info.json(), **claims}
        except (AuthlibBaseError, httpx2.HTTPError, ValueError) as exc:
            raise LoginFailed(f"The identity provider's answer could not be used: {exc}") from None
        return self._clinician(claims), str(row["request"])

    async def _verified(
        self, id_token: Any, nonce: str, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise LoginFailed("The identity provider sent no ID token.")
        keys = await self._key_set(metadata["jwks_uri"])
        try:
            try:
                decoded = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            except JoseError:
                # A key the provider rotated in since the keys were fetched.
                keys = await self._key_set(metadata["jwks_uri"], again=True)
                decoded = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise LoginFailed(f"The identity provider's ID token is not valid: {exc}") from None
        return dict(decoded.claims)

    async def _key_set(self, url: str, again: bool = False) -> KeySet:
        if self._keys is not None and not again and time.monotonic() - self._keys[0] < 3600:
            return self._keys[1]
        response = await self.http.get(url, timeout=10)
        response.raise_for_status()
        keys = KeySet.import_key_set(response.json())
        self._keys = (time.monotonic(), keys)
        return keys

    def _clinician(self, claims: Mapping[str, Any]) -> Clinician:
        def claim(name: str) -> str | None:
            value = claims.get(self.settings.claims[name])
            return str(value) if value not in (None, "") else None

        hsa_id = claim("employee_hsa_id")
        if hsa_id is None:
            raise LoginFailed(
                "The identity provider did not say who you are: no employee HSA-id (claim "
                f"'{self.settings.claims['employee_hsa_id']}')."
            )
        return Clinician(
            hsa_id=hsa_id,
            name=claim("name") or hsa_id,
            personnummer=claim("personnummer"),
            commission_hsa_id=claim("commission_hsa_id"),
            care_unit_hsa_id=claim("care_unit_hsa_id"),
            care_provider_hsa_id=claim("care_provider_hsa_id"),
        )
