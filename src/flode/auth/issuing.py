"""Making the token response (RFC 6749 §5.1 with SMART's additions): the access token, the
launch context (`patient`, `encounter`), an OpenID Connect ID token for `openid`, and a refresh
token for `offline_access` or `online_access`.

Refresh tokens and authorization codes are random strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from joserfc import jwt

from flode.auth import modules
from flode.auth.keys import ALGORITHM
from flode.auth.modules import Module
from flode.auth.server import Authorization, Urls

OFFLINE_SECONDS = 30 * 24 * 3600
ONLINE_SECONDS = 12 * 3600


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a user's authorization carries from code to tokens to refreshed tokens."""

    grant_id: uuid.UUID
    subject: str
    scopes: tuple[str, ...]
    context: Mapping[str, str]
    """The access token's context claims (flode.auth.tokens.CONTEXT_CLAIMS)."""
    profile: Mapping[str, str] = field(default_factory=dict)
    """What only the ID token says (the clinician's name)."""

    def stored(self) -> str:
        return json.dumps({"context": dict(self.context), "profile": dict(self.profile)})

    @classmethod
    def load(cls, grant_id: uuid.UUID, subject: str, scopes: Sequence[str], raw: str) -> Grant:
        stored = json.loads(raw)
        return cls(grant_id, subject, tuple(scopes), stored["context"], stored["profile"])


def _response(token: str, lifetime: int, scopes: Sequence[str]) -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(scopes),
    }


async def for_backend(
    auth: Authorization, urls: Urls, client: Module, scopes: Sequence[str]
) -> dict[str, Any]:
    """A backend service's own token: it carries the care unit and care provider the module
    acts for, when it was registered with them."""
    lifetime = auth.config.token_lifetime
    token, _ = auth.tokens.issue(
        issuer=urls.issuer,
        client_id=client.client_id,
        subject=client.client_id,
        scopes=scopes,
        audience=urls.fhir_base,
        lifetime=lifetime,
        context=client.owner_claims(),
    )
    await modules.count_token(auth.pool, client.client_id)
    return _response(token, lifetime, scopes)


def id_token(
    auth: Authorization, urls: Urls, client_id: str, grant: Grant, nonce: str | None
) -> str:
    """An OpenID Connect ID token, signed with the same key as the access tokens."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": urls.issuer,
        "sub": grant.subject,
        "aud": client_id,
        "iat": now,
        "exp": now + auth.config.token_lifetime,
    }
    if nonce:
        claims["nonce"] = nonce
    if "fhirUser" in grant.scopes and grant.context.get("fhirUser"):
        claims["fhirUser"] = grant.context["fhirUser"]
    if "profile" in grant.scopes and grant.profile.get("name"):
        claims["name"] = grant.profile["name"]
    keys = auth.tokens.keys()
    return jwt.encode(
        {"alg": ALGORITHM, "kid": keys.current.kid, "typ": "JWT"}, claims, keys.current
    )


async def for_user(
    auth: Authorization,
    conn: asyncpg.Connection | PoolConnectionProxy,
    urls: Urls,
    client: Module,
    grant: Grant,
    *,
    nonce: str | None = None,
    with_id_token: bool = True,
    refresh_expires: datetime | None = None,
    refresh_scopes: Sequence[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """The token response for a user's grant, and the id of the access token in it. A refresh
    token keeps `refresh_scopes` (the grant's when not given: an access token asked for with
    fewer scopes does not shrink what can be refreshed, RFC 6749 §6)."""
    kept = tuple(refresh_scopes) if refresh_scopes is not None else grant.scopes
    lifetime = auth.config.token_lifetime
    token, access = auth.tokens.issue(
        issuer=urls.issuer,
        client_id=client.client_id,
        subject=grant.subject,
        scopes=grant.scopes,
        audience=urls.fhir_base,
        lifetime=lifetime,
        context=grant.context,
    )
    response = _response(token, lifetime, grant.scopes)
    for name in ("patient", "encounter"):
        if grant.context.get(name):
            response[name] = grant.context[name]
    if grant.context.get("patient"):
        response["need_patient_banner"] = True
    if with_id_token and "openid" in grant.scopes:
        response["id_token"] = id_token(auth, urls, client.client_id, grant, nonce)
    if "offline_access" in kept or "online_access" in kept:
        if refresh_expires is None or "offline_access" in kept:
            seconds = OFFLINE_SECONDS if "offline_access" in kept else ONLINE_SECONDS
            refresh_expires = datetime.now(UTC) + timedelta(seconds=seconds)
        refresh = new_secret()
        await conn.execute(
            """INSERT INTO auth_refresh_token (token_hash, grant_id, client_id, subject, scopes,
                   claims, access_token_id, expires)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)""",
            digest(refresh),
            grant.grant_id,
            client.client_id,
            grant.subject,
            list(kept),
            grant.stored(),
            access.token_id,
            refresh_expires,
        )
        response["refresh_token"] = refresh
    await modules.count_token(conn, client.client_id)
    return response, access.token_id


async def revoke_grant(auth: Authorization, grant_id: uuid.UUID) -> None:
    """Every refresh token of the grant, and the access tokens issued with them (RFC 6749
    §4.1.2 and §10.4: a code or refresh token presented twice means one of them was stolen)."""
    rows = await auth.pool.fetch(
        """UPDATE auth_refresh_token SET revoked = coalesce(revoked, now())
           WHERE grant_id = $1 RETURNING access_token_id, client_id""",
        grant_id,
    )
    codes = await auth.pool.fetch(
        "SELECT access_token_id, client_id FROM auth_code WHERE grant_id = $1", grant_id
    )
    await auth.revoke_access_tokens(
        [(r["access_token_id"], r["client_id"]) for r in [*rows, *codes] if r["access_token_id"]]
    )
