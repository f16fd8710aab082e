"""Client authentication with a signed JWT (RFC 7523 §2.2, `private_key_jwt`), as SMART Backend
Services asks for it (https://hl7.org/fhir/smart-app-launch/backend-services.html):

- signed RS384 or ES384 with a key from the client's registered JWKS (inline, or fetched from
  its URL; a `jku` header must name that same URL), picked by `kid`;
- `iss` and `sub` are the client id, `aud` is the token endpoint URL;
- `exp` is at most five minutes away, and `jti` is never seen twice (kept until `exp`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import httpx2
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from flode.auth import modules
from flode.auth.errors import invalid_client
from flode.auth.modules import Module

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_LIFETIME = 300
LEEWAY = 30
JWKS_CACHE_SECONDS = 300.0


class KeySets:
    """Clients' key sets published at URLs, fetched and kept a few minutes. A `kid` not in the
    kept set makes it fetch again, so a rotated key works at once (a wrong kid fails the client
    authentication, which the failure limit counts)."""

    def __init__(self, http: httpx2.AsyncClient) -> None:
        self.http = http
        self._kept: dict[str, tuple[float, KeySet]] = {}

    async def get(self, url: str, kid: str | None) -> KeySet:
        now = time.monotonic()
        kept = self._kept.get(url)
        if kept is not None:
            fetched, keys = kept
            known = kid is None or any(k.kid == kid for k in keys.keys)
            if known and now - fetched < JWKS_CACHE_SECONDS:
                return keys
        try:
            response = await self.http.get(url, timeout=10)
            response.raise_for_status()
            keys = _key_set(modules.public_jwks(response.json()))
        except (httpx2.HTTPError, ValueError, JoseError) as exc:
            raise invalid_client(f"the client's JWKS at {url} cannot be fetched: {exc}") from None
        self._kept[url] = (now, keys)
        return keys


def _key_set(jwks: Any) -> KeySet:
    return KeySet.import_key_set(cast(KeySetSerialization, jwks))


def unverified_client_id(assertion: str) -> str:
    """Who the assertion says it comes from, before anything is checked (to count failures)."""
    try:
        claims = json.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError, UnicodeDecodeError):
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else ""


async def verify(
    conn: asyncpg.Pool,
    key_sets: KeySets,
    assertion: str,
    audiences: Collection[str],
    client_id: str | None = None,
) -> Module:
    """The client the assertion authenticates, or OAuthError invalid_client saying why not."""
    try:
        compact = jws.extract_compact(assertion.encode())
        header: dict[str, Any] = dict(compact.headers())
        claims: Any = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeDecodeError):
        raise invalid_client("client_assertion is not a signed JWT") from None
    if not isinstance(claims, dict):
        raise invalid_client("client_assertion does not hold a JSON object")
    if header.get("alg") not in ALGORITHMS:
        raise invalid_client(f"client_assertion must be signed with {' or '.join(ALGORITHMS)}")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or claims.get("sub") != issuer:
        raise invalid_client("client_assertion must name the client id as both iss and sub")
    if client_id is not None and client_id != issuer:
        raise invalid_client("client_id and the client_assertion's iss differ")
    module = await modules.get(conn, issuer)
    if module is None:
        raise invalid_client(f"unknown client '{issuer}'")
    if not module.enabled:
        raise invalid_client(f"client '{issuer}' is disabled")
    keys = await _keys(module, key_sets, header)
    try:
        verified = jwt.decode(assertion, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError):
        raise invalid_client(
            "client_assertion's signature does not verify with the client's registered keys"
        ) from None
    _check_claims(verified.claims, audiences)
    await _remember(conn, issuer, str(verified.claims["jti"]), int(verified.claims["exp"]))
    return module


async def _keys(module: Module, key_sets: KeySets, header: dict[str, Any]) -> KeySet:
    kid = header.get("kid")
    jku = header.get("jku")
    if module.jwks is not None:
        if jku is not None:
            raise invalid_client("the client's keys are registered inline: no jku")
        return _key_set(module.jwks)
    if module.jwks_url is None:
        raise invalid_client(f"client '{module.client_id}' has no keys: it cannot use JWTs")
    if jku is not None and jku != module.jwks_url:
        raise invalid_client("the jku header is not the client's registered JWKS URL")
    return await key_sets.get(module.jwks_url, kid if isinstance(kid, str) else None)


def _check_claims(claims: dict[str, Any], audiences: Collection[str]) -> None:
    now = time.time()
    audience = claims.get("aud")
    named = audience if isinstance(audience, list) else [audience]
    if not any(a in audiences for a in named):
        raise invalid_client("client_assertion's aud must be the token endpoint URL")
    exp = claims.get("exp")
    if not isinstance(exp, int):
        raise invalid_client("client_assertion has no exp")
    if exp <= now - LEEWAY:
        raise invalid_client("client_assertion has expired")
    if exp > now + MAX_LIFETIME + LEEWAY:
        raise invalid_client("client_assertion's exp must be at most five minutes from now")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if isinstance(value, int | float) and value > now + LEEWAY:
            raise invalid_client(f"client_assertion's {name} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise invalid_client("client_assertion has no jti")


async def _remember(conn: asyncpg.Pool, client_id: str, jti: str, exp: int) -> None:
    added = await conn.fetchval(
        """INSERT INTO auth_seen_jti (client_id, jti, expires) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        client_id,
        jti,
        datetime.fromtimestamp(exp + LEEWAY, UTC),
    )
    if added is None:
        raise invalid_client("client_assertion's jti was used before: make a new assertion")
