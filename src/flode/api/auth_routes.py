"""The authorization server's routes (SMART App Launch and Backend Services, RFC 6749, 7009,
7662): each parses its request, calls flode.auth and shapes the answer. OAuth errors are JSON
(RFC 6749 §5.2); pages a person sees are HTML.

All of them are at the server's root (`/auth/…`, `/.well-known/…`) except SMART's discovery
document, which belongs to the FHIR base (`[base]/.well-known/smart-configuration`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flode.auth import authorize, clients, discovery, grants, introspection
from flode.auth.errors import OAuthError, invalid_request
from flode.auth.forms import read_form
from flode.auth.server import Authorization, accepted, urls_of
from flode.auth.tokens import AccessToken, InvalidToken
from flode.config import Config

# RFC 6749 §5.1: token responses are never cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _auth(request: Request) -> Authorization:
    auth: Authorization = request.app.state.auth
    return auth


def _config(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def _error(exc: OAuthError) -> JSONResponse:
    headers = {**_NO_STORE, **exc.headers}
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="flode"')
    return JSONResponse(exc.body(), exc.status, headers=headers)


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status, headers=_NO_STORE)


async def smart_configuration(request: Request) -> Response:
    body = discovery.smart_configuration(urls_of(request, _config(request)))
    return JSONResponse(body, headers={"Cache-Control": "max-age=300"})


async def openid_configuration(request: Request) -> Response:
    body = discovery.openid_configuration(urls_of(request, _config(request)))
    return JSONResponse(body, headers={"Cache-Control": "max-age=300"})


async def jwks(request: Request) -> Response:
    # Short-lived in caches: a rotated key must be fetched before its tokens arrive.
    body = _auth(request).tokens.keys().public_jwks()
    return JSONResponse(body, headers={"Cache-Control": "max-age=60"})


async def authorize_endpoint(request: Request) -> Response:
    return await authorize.authorize(_auth(request), request)


async def login_endpoint(request: Request) -> Response:
    return await authorize.login(_auth(request), request)


async def patient_endpoint(request: Request) -> Response:
    return await authorize.pick_patient(_auth(request), request)


async def commission_endpoint(request: Request) -> Response:
    return await authorize.pick_commission(_auth(request), request)


async def encounter_endpoint(request: Request) -> Response:
    return await authorize.pick_encounter(_auth(request), request)


async def token_endpoint(request: Request) -> Response:
    auth, config = _auth(request), _config(request)
    try:
        form = await read_form(request)
        body = await grants.token(
            auth, request, urls_of(request, config), accepted(request, config), form
        )
    except OAuthError as exc:
        return _error(exc)
    return _json(body)


def _bearer(request: Request, auth: Authorization) -> AccessToken | None:
    """The request's own access token, if it sends one; OAuthError when it is not valid."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    kind, _, raw = header.partition(" ")
    if kind.lower() != "bearer":
        return None
    try:
        return introspection.verify(auth, raw.strip(), accepted(request, _config(request)))
    except InvalidToken as exc:
        raise OAuthError("invalid_token", str(exc), 401) from None


async def introspect_endpoint(request: Request) -> Response:
    auth, config = _auth(request), _config(request)
    urls = accepted(request, config)
    try:
        form = await read_form(request)
        token = _bearer(request, auth)
        if token is not None:
            caller = token.client_id
        else:
            module = await clients.authenticate(
                auth, request, form, grants.audiences(urls, "introspect"), public_allowed=False
            )
            caller = module.client_id
        body = await introspection.introspect(auth, caller, form, urls)
    except OAuthError as exc:
        return _error(exc)
    return _json(body)


async def revoke_endpoint(request: Request) -> Response:
    auth, config = _auth(request), _config(request)
    urls = accepted(request, config)
    try:
        form = await read_form(request)
        module = await clients.authenticate(
            auth, request, form, grants.audiences(urls, "revoke"), public_allowed=True
        )
        await introspection.revoke(auth, module, form, urls)
    except OAuthError as exc:
        return _error(exc)
    return Response(status_code=200, headers=_NO_STORE)


async def launch_endpoint(request: Request) -> Response:
    """`POST /auth/launch` by an EHR module: `{"patient": …, "encounter": …, "client_id": …}`
    (JSON or form) → `{"launch": …, "expires_in": …}`."""
    auth = _auth(request)
    try:
        token = _bearer(request, auth)
        if token is None:
            raise OAuthError("invalid_token", "send the EHR module's access token (Bearer)", 401)
        if request.headers.get("content-type", "").startswith("application/x-www-form"):
            body: Any = await read_form(request)
        else:
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise invalid_request("send a JSON object or a form") from None
        if not isinstance(body, dict):
            raise invalid_request("send a JSON object or a form")
        created = await introspection.create_launch(auth, token, body)
    except OAuthError as exc:
        return _error(exc)
    return _json(created, 201)


def auth_routes(base_path: str = "/fhir") -> list[Route]:
    return [
        Route(f"{base_path}/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/auth/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/auth/jwks", jwks, methods=["GET"]),
        Route("/auth/authorize", authorize_endpoint, methods=["GET"]),
        Route("/auth/login", login_endpoint, methods=["GET", "POST"]),
        Route("/auth/patient", patient_endpoint, methods=["POST"]),
        Route("/auth/commission", commission_endpoint, methods=["POST"]),
        Route("/auth/encounter", encounter_endpoint, methods=["POST"]),
        Route("/auth/token", token_endpoint, methods=["POST"]),
        Route("/auth/introspect", introspect_endpoint, methods=["POST"]),
        Route("/auth/revoke", revoke_endpoint, methods=["POST"]),
        Route("/auth/launch", launch_endpoint, methods=["POST"]),
    ]
