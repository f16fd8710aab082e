"""The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6; SMART App Launch and Backend
Services):

- `authorization_code`: the code from /auth/authorize, once, within minutes, by the client it
  was issued to, with the same redirect_uri and the PKCE verifier of its S256 challenge
  (RFC 7636). A code presented twice revokes what was issued for it.
- `refresh_token`: rotates the refresh token; one presented twice revokes the grant.
- `client_credentials`: a backend module, authenticated by its signed JWT, for `system/` scopes.

A token never carries more than its module may have (flode.auth.granting).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from starlette.requests import Request

from flode.auth import clients, granting, issuing
from flode.auth.errors import (
    invalid_grant,
    invalid_request,
    invalid_scope,
    unsupported_grant_type,
)
from flode.auth.granting import USER_ONLY
from flode.auth.issuing import Grant, digest
from flode.auth.modules import Module, split_list
from flode.auth.server import Authorization, Urls

CODE_SECONDS = 120
# RFC 7636 §4.1.
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def audiences(urls: list[Urls], endpoint: str) -> set[str]:
    """What a client assertion's `aud` may be: the token endpoint (SMART), or the endpoint
    called, or the issuer (RFC 7523 §3), under any name the server goes by."""
    names = set()
    for u in urls:
        names.update({u.endpoint("token"), u.endpoint(endpoint), u.issuer})
    return names


async def token(
    auth: Authorization, request: Request, urls: Urls, accepted: list[Urls], form: Mapping[str, str]
) -> dict[str, Any]:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise invalid_request("grant_type is missing")
    if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
        raise unsupported_grant_type(grant_type)
    client = await clients.authenticate(
        auth,
        request,
        form,
        audiences(accepted, "token"),
        public_allowed=grant_type != "client_credentials",
    )
    if grant_type == "client_credentials":
        return await client_credentials(auth, urls, client, form)
    if grant_type == "authorization_code":
        return await authorization_code(auth, urls, client, form)
    return await refresh_token(auth, urls, client, form)


async def client_credentials(
    auth: Authorization, urls: Urls, client: Module, form: Mapping[str, str]
) -> dict[str, Any]:
    requested = split_list([form.get("scope", "")])
    if not requested:
        raise invalid_scope("ask for scopes, e.g. scope=system/Patient.rs")
    allowed = [s for s in client.scopes if s not in USER_ONLY]
    scopes = granting.granted(requested, allowed, granting.BACKEND)
    if not scopes:
        raise invalid_scope(
            f"none of the requested scopes is allowed for '{client.client_id}' "
            f"(it may have: {' '.join(allowed) or 'nothing'})"
        )
    return await issuing.for_backend(auth, urls, client, scopes)


async def authorization_code(
    auth: Authorization, urls: Urls, client: Module, form: Mapping[str, str]
) -> dict[str, Any]:
    code = form.get("code")
    if not code:
        raise invalid_request("code is missing")
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE auth_code SET used = now() WHERE code_hash = $1 AND used IS NULL
               RETURNING *""",
            digest(code),
        )
        if row is None:
            reused = await conn.fetchval(
                "SELECT grant_id FROM auth_code WHERE code_hash = $1", digest(code)
            )
        else:
            reused = None
    if row is None:
        if reused is not None:
            await issuing.revoke_grant(auth, reused)
            raise invalid_grant(
                "the authorization code was used before; the tokens issued for it are revoked"
            )
        raise invalid_grant("unknown authorization code")
    if row["client_id"] != client.client_id:
        raise invalid_grant("the authorization code was issued to another client")
    if row["expires"] < datetime.now(UTC):
        raise invalid_grant("the authorization code has expired")
    if form.get("redirect_uri") != row["redirect_uri"]:
        raise invalid_grant("redirect_uri is not the one of the authorization request")
    verifier = form.get("code_verifier")
    if not verifier:
        raise invalid_request("code_verifier is missing (PKCE, RFC 7636)")
    if not _VERIFIER.match(verifier) or (
        create_s256_code_challenge(verifier) != row["code_challenge"]
    ):
        raise invalid_grant("code_verifier does not match the code_challenge")
    grant = Grant.load(row["grant_id"], row["subject"], row["scopes"], row["claims"])
    async with auth.pool.acquire() as conn, conn.transaction():
        response, token_id = await issuing.for_user(
            auth, conn, urls, client, grant, nonce=row["nonce"]
        )
        await conn.execute(
            "UPDATE auth_code SET access_token_id = $2 WHERE code_hash = $1",
            digest(code),
            token_id,
        )
    return response


async def refresh_token(
    auth: Authorization, urls: Urls, client: Module, form: Mapping[str, str]
) -> dict[str, Any]:
    raw = form.get("refresh_token")
    if not raw:
        raise invalid_request("refresh_token is missing")
    async with auth.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM auth_refresh_token WHERE token_hash = $1 FOR UPDATE", digest(raw)
        )
        if row is None:
            raise invalid_grant("unknown refresh token")
        if row["client_id"] != client.client_id:
            raise invalid_grant("the refresh token was issued to another client")
        if row["revoked"] is not None:
            raise invalid_grant("the refresh token has been revoked")
        if row["expires"] < datetime.now(UTC):
            raise invalid_grant("the refresh token has expired")
        if row["used"] is None:
            return await _rotate(auth, conn, urls, client, row, form.get("scope"))
    await issuing.revoke_grant(auth, row["grant_id"])
    raise invalid_grant(
        "the refresh token was used before; every token of this authorization is revoked"
    )


async def _rotate(
    auth: Authorization,
    conn: PoolConnectionProxy,
    urls: Urls,
    client: Module,
    row: asyncpg.Record,
    scope: str | None,
) -> dict[str, Any]:
    """New tokens for an unused refresh token, which is used up in the same transaction."""
    # Never more than was granted, nor than the module may have now; a narrower scope may be
    # asked for (§6).
    original = granting.granted(row["scopes"], client.scopes, granting.USER_FACING)
    requested = split_list([scope]) if scope else original
    scopes = granting.granted(requested, original, granting.USER_FACING)
    if not scopes:
        raise invalid_scope("none of the requested scopes was granted before")
    await conn.execute(
        "UPDATE auth_refresh_token SET used = now() WHERE token_hash = $1", row["token_hash"]
    )
    grant = Grant.load(row["grant_id"], row["subject"], scopes, row["claims"])
    # With `openid`, a fresh ID token too (OpenID Connect Core §12.2), without the nonce of
    # the login.
    response, _ = await issuing.for_user(
        auth,
        conn,
        urls,
        client,
        grant,
        refresh_expires=row["expires"],
        refresh_scopes=original,
    )
    return response


def new_grant_id() -> uuid.UUID:
    return uuid.uuid4()


def code_expiry() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=CODE_SECONDS)
