"""The module registry through the FHIR API, for the administrator (docs/modules.md): operations
on the base URL that take and answer `Parameters` (flode.api.module_parameters), each one
action of flode.auth.administration, as `flode module …` is.

- `POST [base]/$module-add`: register a module; answers it, with its new client id.
- `GET|POST [base]/$module-list`: every module.
- `GET|POST [base]/$module-show?client=ID`: one module.
- `POST [base]/$module-update`: change a registration (what is given replaces what it had).
- `POST [base]/$module-disable`, `POST [base]/$module-enable`: its tokens are refused at once.
- `POST [base]/$module-rotate-key`: a new signing key for Flöde's tokens.

And `/admin/modules`, the registry as a page. All of them are for the built-in administrator's
token alone (`flode token issue` without --client or --user): anyone else gets 403. This server
reloads the registry at once after a change; every other server within seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asyncpg.pool import PoolConnectionProxy
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flode.access import policy
from flode.api import module_parameters, routes
from flode.api.body import read_optional_json
from flode.api.module_parameters import FLAGS, NUMBERS, REPEATED, SINGLE, Given
from flode.api.responses import respond
from flode.auth import administration, modules
from flode.auth.admin_page import modules_page, token_page
from flode.auth.administration import Administrator, UnknownModule
from flode.auth.errors import OAuthError
from flode.auth.forms import read_form
from flode.auth.local import OPERATOR
from flode.auth.modules import InvalidModule, Module
from flode.auth.server import Authorization
from flode.context import RequestContext
from flode.fhir.errors import FhirError, bad_request, not_found
from flode.interactions.outcome import Outcome

_NO_STORE = {"Cache-Control": "no-store"}
_CLIENT = ("client",)
_UPDATE = (*SINGLE, *REPEATED, *FLAGS)


def require_administrator(ctx: RequestContext, what: str) -> None:
    """403 unless the request carries the built-in administrator's token: every scope
    (`system/*.cruds`), issued to the operator's client and to no clinician. A module's token
    is refused whatever its scopes."""
    if ctx.trusted:
        return
    policy.require_admin(ctx, what)
    if ctx.client_id != OPERATOR or ctx.user_hsa_id is not None:
        raise policy.forbidden(
            f"{what} is for the administrator: use the token `flode token issue` makes "
            "without --client or --user"
        )


def _auth(request: Request) -> Authorization:
    auth: Authorization = request.app.state.auth
    return auth


def _administrator(request: Request, what: str) -> tuple[RequestContext, Administrator]:
    ctx = routes.context(request)
    require_administrator(ctx, what)
    who = ctx.subject or ctx.client_id or "insecure-dev"
    return ctx, Administrator("api", who, ctx.request_id)


async def _given(request: Request, allowed: Iterable[str]) -> Given:
    """The parameters of the URL and, for a POST, of its Parameters body."""
    limit = routes.config_of(request).max_body_bytes
    body = await read_optional_json(request, limit) if request.method == "POST" else None
    return module_parameters.read(routes.params(request), body, allowed)


def _client(given: Given) -> str:
    client = given.text("client")
    if not client:
        raise bad_request("Parameter 'client' (the module's client id) is required", "client")
    return client


async def _administer(
    request: Request, work: Callable[[PoolConnectionProxy], Awaitable[Module]]
) -> Module:
    """Run one change of the registry, then reload this server's copy of it (its revocations
    included): a disabled module's tokens are refused here from the next request on."""
    auth = _auth(request)
    try:
        async with auth.pool.acquire() as conn:
            changed = await work(conn)
    except InvalidModule as exc:
        raise module_parameters.invalid(exc) from None
    except UnknownModule as exc:
        raise not_found(str(exc)) from None
    await auth.reload()
    return changed


def _answer(request: Request, ctx: RequestContext, body: dict[str, Any]) -> Response:
    return respond(request, ctx, Outcome(200, body=body, headers=_NO_STORE))


async def add(request: Request) -> Response:
    ctx, by = _administrator(request, "$module-add")
    given = await _given(request, SINGLE + REPEATED)
    client = given.text("client") or modules.new_client_id(given.text("name") or "module")
    wanted = administration.new_module(client, module_parameters.changes(given))
    added = await _administer(request, lambda conn: administration.add(conn, wanted, by))
    return _answer(request, ctx, module_parameters.one(added))


async def _listing(auth: Authorization) -> list[Module]:
    """Every module, with the requests this server counted so far added first."""
    await modules.record_activity(auth.pool, auth.revocations.take_activity())
    return await administration.listing(auth.pool)


async def list_modules(request: Request) -> Response:
    ctx, _ = _administrator(request, "$module-list")
    await _given(request, ())
    found = await _listing(_auth(request))
    return _answer(request, ctx, module_parameters.many(found))


async def show(request: Request) -> Response:
    ctx, _ = _administrator(request, "$module-show")
    client = _client(await _given(request, _CLIENT))
    auth = _auth(request)
    await modules.record_activity(auth.pool, auth.revocations.take_activity())
    try:
        found = await administration.show(auth.pool, client)
    except UnknownModule as exc:
        raise not_found(str(exc)) from None
    return _answer(request, ctx, module_parameters.one(found))


async def update(request: Request) -> Response:
    ctx, by = _administrator(request, "$module-update")
    given = await _given(request, _UPDATE)
    client, changes = _client(given), module_parameters.changes(given)
    if not changes.given():
        raise bad_request("Nothing to change: give the parameters to change besides 'client'")
    updated = await _administer(
        request, lambda conn: administration.update(conn, client, changes, by)
    )
    return _answer(request, ctx, module_parameters.one(updated))


async def _set_enabled(request: Request, on: bool) -> Response:
    ctx, by = _administrator(request, "$module-enable" if on else "$module-disable")
    client = _client(await _given(request, _CLIENT))
    changed = await _administer(
        request, lambda conn: administration.set_enabled(conn, client, on, by)
    )
    return _answer(request, ctx, module_parameters.one(changed))


async def disable(request: Request) -> Response:
    return await _set_enabled(request, False)


async def enable(request: Request) -> Response:
    return await _set_enabled(request, True)


async def rotate_key(request: Request) -> Response:
    ctx, by = _administrator(request, "$module-rotate-key")
    config = routes.config_of(request)
    retain = (await _given(request, NUMBERS)).number("retain")
    seconds = retain if retain is not None else config.token_lifetime
    keys = administration.rotate_key(config.keys_dir, seconds, by)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "keyId", "valueString": keys.current.kid},
            {"name": "retain", "valueInteger": seconds},
        ],
    }
    return _answer(request, ctx, body)


async def page(request: Request) -> Response:
    """`GET /admin/modules` with the administrator's bearer token, or `POST` with it as the
    form field `token` (from the page's own form: a token never goes into a URL)."""
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"accept"]
    given = request.headers.get("authorization") is not None
    if request.method == "POST":
        try:
            token = (await read_form(request)).get("token", "").strip()
        except OAuthError as exc:
            return token_page(exc.description, 400)
        headers = [(k, v) for k, v in headers if k != b"authorization"]
        headers.append((b"authorization", f"Bearer {token}".encode()))
        given = True
    # Who is asking is decided as for any FHIR request; the answer is a page, not JSON.
    scope = {**request.scope, "headers": headers, "query_string": b""}
    try:
        ctx = routes.context(Request(scope, request.receive))
        require_administrator(ctx, "The module registry")
    except FhirError as exc:
        problem = str(exc) if given else None
        return token_page(problem, exc.status if exc.status in (401, 403) else 400)
    return modules_page(await _listing(_auth(request)))


def module_routes() -> list[Route]:
    """The operations, on the FHIR base (before its generic `/{type}` routes)."""
    return [
        Route("/$module-add", add, methods=["POST"]),
        Route("/$module-list", list_modules, methods=["GET", "POST"]),
        Route("/$module-show", show, methods=["GET", "POST"]),
        Route("/$module-update", update, methods=["POST"]),
        Route("/$module-disable", disable, methods=["POST"]),
        Route("/$module-enable", enable, methods=["POST"]),
        Route("/$module-rotate-key", rotate_key, methods=["POST"]),
    ]


def admin_routes() -> list[Route]:
    """The administrator's pages, at the server's root."""
    return [Route("/admin/modules", page, methods=["GET", "POST"])]
