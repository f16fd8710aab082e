"""Token introspection (RFC 7662), token revocation (RFC 7009) and EHR launch contexts.

- Introspection is for the module a token was issued to (authenticated by its signed JWT, or
  by presenting a valid access token of its own as a Bearer token) and for the operator's
  administrator token: anyone else learns only `"active": false`.
- Revocation is for the module a token was issued to; an unknown or expired token is not an
  error (RFC 7009 §2.2). Revoking a refresh token revokes its whole grant.
- An EHR module whose token has the `flode/launch` scope creates launches: an opaque id naming
  the patient (and encounter) the app it launches opens with.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flode.auth import directory, issuing, modules
from flode.auth.errors import OAuthError, invalid_request, unauthorized_client
from flode.auth.granting import LAUNCH as LAUNCH_SCOPE
from flode.auth.issuing import digest
from flode.auth.local import OPERATOR as ADMIN_CLIENT
from flode.auth.modules import Module
from flode.auth.server import Authorization, Urls
from flode.auth.tokens import AccessToken, InvalidToken

LAUNCH_SECONDS = 300


def verify(auth: Authorization, raw: str, accepted: list[Urls]) -> AccessToken:
    """An access token of this server (InvalidToken when not, or not any more)."""
    return auth.tokens.verify(raw, {u.issuer for u in accepted}, {u.fhir_base for u in accepted})


async def introspect(
    auth: Authorization, caller: str, form: Mapping[str, str], accepted: list[Urls]
) -> dict[str, Any]:
    raw = form.get("token")
    if not raw:
        raise invalid_request("token is missing")
    hint = form.get("token_type_hint")
    if hint != "refresh_token":
        try:
            token = verify(auth, raw, accepted)
        except InvalidToken:
            token = None
        if token is not None:
            if caller not in (token.client_id, ADMIN_CLIENT):
                return {"active": False}
            return {
                "active": True,
                "token_type": "Bearer",
                "scope": " ".join(sorted(token.scopes)),
                "client_id": token.client_id,
                "sub": token.subject,
                "iss": token.issuer,
                "aud": token.audience,
                "exp": token.expires,
                "iat": token.issued_at,
                "jti": token.token_id,
                **token.context,
            }
    row = await auth.pool.fetchrow(
        """SELECT client_id, subject, scopes, expires FROM auth_refresh_token
           WHERE token_hash = $1 AND revoked IS NULL AND used IS NULL AND expires > now()""",
        digest(raw),
    )
    if row is None or caller not in (row["client_id"], ADMIN_CLIENT):
        return {"active": False}
    client = auth.modules.get(row["client_id"])
    if client is not None and not client.enabled:
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": " ".join(row["scopes"]),
        "client_id": row["client_id"],
        "sub": row["subject"],
        "exp": int(row["expires"].timestamp()),
    }


async def revoke(
    auth: Authorization, client: Module, form: Mapping[str, str], accepted: list[Urls]
) -> None:
    raw = form.get("token")
    if not raw:
        raise invalid_request("token is missing")
    if form.get("token_type_hint") != "refresh_token":
        try:
            token = verify(auth, raw, accepted)
        except InvalidToken:
            token = None
        if token is not None:
            if token.client_id != client.client_id:
                raise unauthorized_client("the token was issued to another client")
            await auth.revoke_access_tokens([(token.token_id, token.client_id)])
            return
    row = await auth.pool.fetchrow(
        "SELECT grant_id, client_id FROM auth_refresh_token WHERE token_hash = $1", digest(raw)
    )
    if row is None:
        return
    if row["client_id"] != client.client_id:
        raise unauthorized_client("the token was issued to another client")
    await issuing.revoke_grant(auth, row["grant_id"])


async def create_launch(
    auth: Authorization, token: AccessToken, body: Mapping[str, Any]
) -> dict[str, Any]:
    if LAUNCH_SCOPE not in token.scopes:
        raise OAuthError(
            "insufficient_scope", f"creating a launch needs a token with scope {LAUNCH_SCOPE}", 403
        )
    values = {}
    for name in ("patient", "encounter", "client_id"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise invalid_request(f"{name} must be a non-empty string")
        values[name] = value
    patient = values["patient"]
    if patient is not None and not await directory.patient_exists(auth.services, patient):
        raise invalid_request(f"there is no Patient/{patient}")
    app = values["client_id"]
    if app is not None and await modules.get(auth.pool, app) is None:
        raise invalid_request(f"there is no module with client_id '{app}'")
    launch = secrets.token_urlsafe(24)
    await auth.pool.execute(
        """INSERT INTO auth_launch (id, created_by, client_id, patient, encounter, expires)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        launch,
        token.client_id,
        app,
        patient,
        values["encounter"],
        datetime.now(UTC) + timedelta(seconds=LAUNCH_SECONDS),
    )
    return {"launch": launch, "expires_in": LAUNCH_SECONDS}
