"""Who is asking: the bearer token of a request, verified and turned into the fields of its
RequestContext (https://hl7.org/fhir/smart-app-launch/ — the resource server's side).

A request without a valid token is refused with 401 and a `WWW-Authenticate` challenge
(RFC 6750) whose text says what was wrong and leaks nothing else. In insecure development mode
every request is trusted.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flode.auth.tokens import InvalidToken, Tokens, issuer_of, root_of
from flode.config import Config
from flode.fhir.errors import FhirError, Issue

INSECURE_HEADER = "X-Flode-Insecure-Dev"
INSECURE_WARNING = "authentication is off: every request may read and write everything"


def _unauthorized(description: str | None) -> FhirError:
    challenge = 'Bearer realm="flode"'
    if description is not None:
        challenge += f', error="invalid_token", error_description="{description}"'
    text = (
        "This request needs an access token: send 'Authorization: Bearer <token>' "
        "(see docs/modules.md for how a module gets one)"
        if description is None
        else f"The access token was refused: {description}"
    )
    return FhirError(401, [Issue("error", "login", text)], {"WWW-Authenticate": challenge})


def authenticate(request: Request, config: Config, tokens: Tokens, base_url: str) -> dict[str, Any]:
    """The RequestContext fields of the request's token; 401 without a valid one."""
    if config.insecure_dev:
        return {"trusted": True}
    header = request.headers.get("authorization")
    if header is None:
        raise _unauthorized(None)
    kind, _, raw = header.partition(" ")
    if kind.lower() != "bearer" or not raw.strip():
        raise _unauthorized("use the Bearer scheme")
    audiences = {base_url}
    issuers = {issuer_of(root_of(base_url, config.base_path))}
    if config.public_base_url:
        public = config.public_base_url.rstrip("/")
        audiences.add(public)
        issuers.add(issuer_of(root_of(public, config.base_path)))
    try:
        token = tokens.verify(raw.strip(), issuers, audiences)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from None
    context = token.context
    auth = getattr(request.app.state, "auth", None)
    declaration = auth.modules.declared(token.client_id) if auth is not None else None
    return {
        "reads": None if declaration is None else declaration.reads,
        "writes": None if declaration is None else declaration.writes,
        "client_id": token.client_id,
        "subject": token.subject,
        "scopes": token.scopes,
        "token_id": token.token_id,
        "patient": context.get("patient"),
        "encounter": context.get("encounter"),
        "fhir_user": context.get("fhirUser"),
        "personnummer": context.get("personnummer"),
        "user_hsa_id": context.get("employee_hsa_id"),
        "commission_hsa_id": context.get("commission_hsa_id"),
        "care_unit_hsa_id": context.get("care_unit_hsa_id"),
        "care_provider_hsa_id": context.get("care_provider_hsa_id"),
        "purpose_of_use": context.get("purpose_of_use", "TREAT"),
        "emergency_reason": context.get("emergency_reason"),
    }


class InsecureDevHeader:
    """In insecure development mode, say so on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_warning(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(INSECURE_HEADER, INSECURE_WARNING)
            await send(message)

        await self.app(scope, receive, send_with_warning)
