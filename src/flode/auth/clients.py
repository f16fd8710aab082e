"""Who is calling the token, revocation or introspection endpoint (RFC 6749 §2.3): a module
with keys proves it with a signed JWT (flode.auth.assertions); a public client (a user-facing
app without keys, protected by PKCE) only names itself. Client secrets are not used.

Failures are counted per client; past the limit the caller gets 429 (flode.auth.ratelimit).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.requests import Request

from flode.auth import assertions, modules
from flode.auth.errors import OAuthError, invalid_client, too_many_failures
from flode.auth.modules import Module
from flode.auth.server import Authorization


async def authenticate(
    auth: Authorization,
    request: Request,
    form: Mapping[str, str],
    audiences: Collection[str],
    *,
    public_allowed: bool,
) -> Module:
    assertion_type = form.get("client_assertion_type")
    assertion = form.get("client_assertion")
    claimed = form.get("client_id") or (
        assertions.unverified_client_id(assertion) if assertion else ""
    )
    retry = auth.limiter.retry_after(claimed)
    if retry is not None:
        raise too_many_failures(retry)
    try:
        if request.headers.get("authorization", "").lower().startswith("basic "):
            raise invalid_client(
                "client secrets are not used: authenticate with client_assertion (a JWT signed "
                "with your key), or send client_id as a public client"
            )
        if assertion_type is not None or assertion is not None:
            if assertion_type != assertions.JWT_BEARER:
                raise invalid_client(f"client_assertion_type must be {assertions.JWT_BEARER}")
            if not assertion:
                raise invalid_client("client_assertion is empty")
            return await assertions.verify(
                auth.pool, auth.key_sets, assertion, audiences, form.get("client_id")
            )
        if not claimed:
            raise invalid_client("say who you are: client_assertion, or client_id")
        module = await modules.get(auth.pool, claimed)
        if module is None:
            raise invalid_client(f"unknown client '{claimed}'")
        if not module.enabled:
            raise invalid_client(f"client '{claimed}' is disabled")
        if module.confidential:
            raise invalid_client(
                f"client '{claimed}' has registered keys: authenticate with client_assertion"
            )
        if not public_allowed:
            raise invalid_client("this request needs client_assertion (a JWT signed by you)")
        return module
    except OAuthError as exc:
        if exc.error == "invalid_client":
            auth.limiter.failed(claimed)
        raise
