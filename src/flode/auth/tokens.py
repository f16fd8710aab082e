"""Access tokens: JWTs signed with the server's key (RFC 9068 style), verified on every request.

A token names its client (`client_id`), its subject (`sub`: a user's HSA-id, or the client), its
scopes (`scope`), the FHIR base it is for (`aud`), and the context of a launch or a login:
`patient`, `encounter`, `fhirUser`, and the Swedish claims the access rules need (employee and
commission HSA-ids, care unit, care provider, purpose of use; DOMAIN.md L1, L3). Verification
checks signature, issuer, audience, expiry and revocation; a verified token is remembered until
it expires, so a request pays for the signature check once per token, not once per request.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from flode.auth.keys import ALGORITHM, SigningKeys

# Claims a token may carry beyond the registered ones, with what they mean to Flöde.
CONTEXT_CLAIMS = (
    "patient",  # launch patient: patient/ scopes are confined to this compartment
    "encounter",
    "fhirUser",
    "personnummer",
    "employee_hsa_id",
    "commission_hsa_id",
    "care_unit_hsa_id",
    "care_provider_hsa_id",
    "purpose_of_use",
    "emergency_reason",
)


def root_of(base_url: str, base_path: str) -> str:
    """The server's root URL from its FHIR base URL (`…/fhir` → `…`)."""
    return base_url.removesuffix(base_path) if base_path else base_url


def issuer_of(root: str) -> str:
    """The authorization server's issuer for the server at `root` (its `iss` claim)."""
    return f"{root}/auth"


class InvalidToken(Exception):
    """Why a token is refused; the text is safe to show the client."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token_id: str
    client_id: str
    subject: str
    scopes: frozenset[str]
    issuer: str
    audience: str
    expires: int
    context: Mapping[str, str] = field(default_factory=dict)
    issued_at: int = 0


def _token(claims: Mapping[str, Any]) -> AccessToken:
    scope = claims.get("scope", "")
    return AccessToken(
        token_id=str(claims.get("jti", "")),
        client_id=str(claims.get("client_id", "")),
        subject=str(claims.get("sub", "")),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        issuer=str(claims.get("iss", "")),
        audience=str(claims.get("aud", "")),
        expires=int(claims["exp"]),
        context={k: str(claims[k]) for k in CONTEXT_CLAIMS if claims.get(k) is not None},
        issued_at=int(claims.get("iat", 0)),
    )


class Tokens:
    """Issues and verifies access tokens. `keys` is asked for the current keys on every
    issue (so a rotation takes effect at once); `revoked` says whether a verified token has
    been revoked since (its id, its client)."""

    def __init__(
        self,
        keys: Callable[[], SigningKeys],
        revoked: Callable[[AccessToken], bool] = lambda token: False,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.revoked = revoked
        self._verified: OrderedDict[str, AccessToken] = OrderedDict()
        self._cache_size = cache_size

    def issue(
        self,
        *,
        issuer: str,
        client_id: str,
        subject: str,
        scopes: Collection[str],
        audience: str,
        lifetime: int = 3600,
        context: Mapping[str, str] | None = None,
    ) -> tuple[str, AccessToken]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            **(context or {}),
        }
        keys = self.keys()
        header = {"alg": ALGORITHM, "kid": keys.current.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, keys.current), _token(claims)

    def verify(self, raw: str, issuers: Collection[str], audiences: Collection[str]) -> AccessToken:
        """The token's contents, or InvalidToken saying why not. `issuers` and `audiences` are
        the names this server goes by (its configured URL, the URL the request used)."""
        token = self._verified.get(raw) or self._check(raw)
        if token.issuer not in issuers:
            raise InvalidToken("the token was issued by another server (iss)")
        if token.audience not in audiences:
            raise InvalidToken("the token is for another server (aud)")
        if token.expires <= time.time():
            self._verified.pop(raw, None)
            raise InvalidToken("the token has expired")
        if self.revoked(token):
            self._verified.pop(raw, None)
            raise InvalidToken("the token has been revoked")
        self._verified[raw] = token
        self._verified.move_to_end(raw)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return token

    def _check(self, raw: str) -> AccessToken:
        try:
            decoded = jwt.decode(raw, self.keys().all, algorithms=[ALGORITHM])
        except (JoseError, ValueError) as exc:
            raise InvalidToken("the token is malformed or its signature does not verify") from exc
        if decoded.header.get("typ") != "at+jwt":
            # An ID token or another JWT signed with the same key is not an access token
            # (RFC 9068 section 4).
            raise InvalidToken("the token is not an access token (typ)")
        claims = decoded.claims
        if not isinstance(claims.get("iss"), str):
            raise InvalidToken("the token names no issuer (iss)")
        if not isinstance(claims.get("aud"), str):
            raise InvalidToken("the token names no server it is for (aud)")
        if not isinstance(claims.get("exp"), int):
            raise InvalidToken("the token has no expiry")
        return _token(claims)
