"""An authorization request on its way through login and the patient picker, carried by the
browser as a short-lived JWT signed with the server's key, so any API node can continue it.

Nothing in it is secret (it is what the app put in the authorization URL, checked, plus who
logged in); the signature makes it tamper-proof, and its `typ` and `step` keep it from being
taken for an access token or for another step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from flode.auth.identity import Clinician, LoginFailed
from flode.auth.keys import ALGORITHM, SigningKeys

TYPE = "flode-authorization+jwt"
AUTHORIZE, LOGIN = "authorize", "login"
LIFETIME = 15 * 60


@dataclass(frozen=True, slots=True)
class Pending:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    patient: str | None = None
    encounter: str | None = None

    def claims(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Pending:
        return cls(
            client_id=str(claims["client_id"]),
            redirect_uri=str(claims["redirect_uri"]),
            scopes=tuple(str(s) for s in claims["scopes"]),
            code_challenge=str(claims["code_challenge"]),
            state=claims.get("state"),
            nonce=claims.get("nonce"),
            patient=claims.get("patient"),
            encounter=claims.get("encounter"),
        )


def sign(keys: SigningKeys, pending: Pending, clinician: Clinician | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "step": AUTHORIZE if clinician is None else LOGIN,
        "request": pending.claims(),
        "iat": now,
        "exp": now + LIFETIME,
    }
    if clinician is not None:
        claims["clinician"] = clinician.session()
    header = {"alg": ALGORITHM, "kid": keys.current.kid, "typ": TYPE}
    return jwt.encode(header, claims, keys.current)


def open_signed(keys: SigningKeys, raw: str, step: str) -> tuple[Pending, Clinician | None]:
    """The request (and, after login, the clinician) in `raw`; LoginFailed when it is not one
    of ours, not of this step, or too old."""
    try:
        token = jwt.decode(raw, keys.all, algorithms=[ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise LoginFailed("The login request is damaged; start again from the app.") from exc
    claims = token.claims
    if token.header.get("typ") != TYPE or claims.get("step") != step:
        raise LoginFailed("The login request is damaged; start again from the app.")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        raise LoginFailed("The login took too long; start again from the app.")
    pending = Pending.from_claims(claims["request"])
    clinician = claims.get("clinician")
    return pending, Clinician.from_session(clinician) if clinician else None
