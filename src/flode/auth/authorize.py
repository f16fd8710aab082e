"""The authorization endpoint and what follows it in the browser (RFC 6749 §4.1.1–4.1.2; SMART
App Launch: https://hl7.org/fhir/smart-app-launch/app-launch.html):

1. `GET /auth/authorize` checks the app's request: a registered, enabled client and one of its
   redirect URIs (else an error page: never redirect to an unchecked URI), then `code` with a
   PKCE S256 challenge, `aud` naming this FHIR server, scopes the module may have, and, for an
   EHR launch, a valid `launch` (else an error redirect to the app).
2. The clinician logs in (flode.auth.identity) and, with several commissions, chooses the one
   the session is for.
3. When `patient/` scopes need a patient and no launch gave one, the clinician picks one; a
   standalone launch asking for `launch/encounter` then picks one of the patient's encounters.
4. The app gets a code at its redirect URI; the code's tokens carry the clinician's claims.
"""

from __future__ import annotations

import dataclasses
import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flode.auth import directory, granting, modules
from flode.auth.errors import OAuthError
from flode.auth.forms import query, read_form
from flode.auth.grants import code_expiry, new_grant_id
from flode.auth.identity import Clinician, LoginFailed
from flode.auth.issuing import Grant, digest
from flode.auth.modules import Module, split_list
from flode.auth.pages import commission_page, encounter_page, error_page, picker_page
from flode.auth.pending import AUTHORIZE, LOGIN, Pending, open_signed, sign
from flode.auth.server import Authorization, accepted, urls_of
from flode.context import RequestContext

_CHALLENGE_LENGTH = range(43, 129)


def _redirect(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    values = {k: v for k, v in params.items() if v is not None}
    separator = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{separator}{urlencode(values)}", 302)


async def authorize(auth: Authorization, request: Request) -> Response:
    try:
        params = query(request)
    except OAuthError as exc:
        return error_page("The app's request is not valid", exc.description)
    client_id = params.get("client_id", "")
    module = await modules.get(auth.pool, client_id) if client_id else None
    if module is None or not module.enabled:
        return error_page(
            "Unknown app", f"No enabled module is registered with client_id '{client_id}'."
        )
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in module.redirect_uris:
        return error_page(
            "The app's request is not valid",
            f"redirect_uri '{redirect_uri}' is not registered for {module.name}.",
        )
    state = params.get("state")

    def fail(error: str, description: str) -> Response:
        return _redirect(
            redirect_uri, {"error": error, "error_description": description, "state": state}
        )

    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "response_type must be code")
    challenge = params.get("code_challenge")
    if not challenge:
        return fail("invalid_request", "PKCE is required: send code_challenge (S256)")
    if params.get("code_challenge_method") != "S256":
        return fail("invalid_request", "code_challenge_method must be S256")
    if len(challenge) not in _CHALLENGE_LENGTH:
        return fail("invalid_request", "code_challenge must be 43 to 128 characters")
    bases = [u.fhir_base for u in accepted(request, auth.config)]
    if params.get("aud", "").rstrip("/") not in bases:
        return fail("invalid_request", f"aud must be this FHIR server's base URL, {bases[-1]}")
    requested = split_list([params.get("scope", "")])
    patient = encounter = None
    launch = params.get("launch")
    if launch:
        row = await auth.pool.fetchrow(
            """UPDATE auth_launch SET used = now()
               WHERE id = $1 AND used IS NULL AND expires > now()
               RETURNING client_id, patient, encounter""",
            launch,
        )
        if row is None or row["client_id"] not in (None, module.client_id):
            return fail("invalid_request", "the launch is unknown, used or expired")
        patient, encounter = row["patient"], row["encounter"]
    else:
        requested = tuple(s for s in requested if s != "launch")
    scopes = granting.granted(requested, module.scopes, granting.USER_FACING)
    if not granting.has_data_access(scopes) and "openid" not in scopes:
        return fail(
            "invalid_scope",
            f"none of the requested scopes is allowed for {module.name} "
            f"(it may have: {' '.join(module.scopes)})",
        )
    if auth.identity is None:
        return fail(
            "temporarily_unavailable",
            "clinician login is not configured on this server (see docs/modules.md)",
        )
    pending = Pending(
        client_id=module.client_id,
        redirect_uri=redirect_uri,
        scopes=tuple(scopes),
        code_challenge=challenge,
        state=state,
        nonce=params.get("nonce"),
        patient=patient,
        encounter=encounter,
    )
    signed = sign(auth.tokens.keys(), pending)
    try:
        return await auth.identity.start(request, signed, module, scopes)
    except LoginFailed as exc:
        return error_page("Login is not possible", str(exc), 503)


async def login(auth: Authorization, request: Request) -> Response:
    """Where the identity provider hands the clinician back (`/auth/login`)."""
    if auth.identity is None:
        return error_page("Login is not possible", "No identity provider is configured.", 404)
    try:
        clinician, signed = await auth.identity.complete(request)
        pending, _ = open_signed(auth.tokens.keys(), signed, AUTHORIZE)
    except (LoginFailed, OAuthError) as exc:
        return error_page("Login failed", str(exc))
    return await _logged_in(auth, request, pending, clinician)


async def _step(
    auth: Authorization, request: Request
) -> tuple[dict[str, str], Pending, Clinician, Module] | Response:
    """The form of a step after login (`login`: the signed request and clinician), or the page
    that says why it cannot go on."""
    try:
        form = await read_form(request)
        pending, clinician = open_signed(auth.tokens.keys(), form.get("login", ""), LOGIN)
    except (LoginFailed, OAuthError) as exc:
        return error_page("Login failed", str(exc))
    assert clinician is not None
    module = await _module(auth, pending)
    if module is None:
        return error_page("Unknown app", "The app is no longer registered or was disabled.")
    return form, pending, clinician, module


async def pick_commission(auth: Authorization, request: Request) -> Response:
    """The commission chosen (`POST /auth/commission`): the tokens carry its HSA-id and its care
    unit and care provider (DOMAIN.md L1, L3)."""
    step = await _step(auth, request)
    if isinstance(step, Response):
        return step
    form, pending, clinician, module = step
    chosen = clinician.choose(form.get("commission", ""))
    if chosen is None:
        login_token = sign(auth.tokens.keys(), pending, clinician)
        return commission_page(module.name, clinician, login_token, "Choose one of the listed.")
    return await _continue(auth, request, module, pending, chosen)


async def pick_patient(auth: Authorization, request: Request) -> Response:
    """The patient picker's answer (`POST /auth/patient`)."""
    step = await _step(auth, request)
    if isinstance(step, Response):
        return step
    form, pending, clinician, module = step
    if clinician.must_choose:  # the commission first
        return await _continue(auth, request, module, pending, clinician)
    patient = await directory.find_patient(auth.services, form.get("patient", ""))
    if patient is None:
        login_token = sign(auth.tokens.keys(), pending, clinician)
        return picker_page(
            module.name, clinician, login_token, "No single patient has that personnummer or id."
        )
    return await _continue(
        auth, request, module, dataclasses.replace(pending, patient=patient), clinician
    )


async def pick_encounter(auth: Authorization, request: Request) -> Response:
    """The encounter picker's answer (`POST /auth/encounter`): one of the patient's encounters
    the clinician may see."""
    step = await _step(auth, request)
    if isinstance(step, Response):
        return step
    form, pending, clinician, module = step
    if clinician.must_choose or pending.patient is None:
        return await _continue(auth, request, module, pending, clinician)
    found = await _encounters(auth, request, module, pending.patient, clinician)
    chosen = form.get("encounter", "")
    if not found:  # none (any more) to choose from: the app opens without one
        return await _continue(auth, request, module, pending, clinician)
    if chosen not in {id for id, _, _ in found}:
        login_token = sign(auth.tokens.keys(), pending, clinician)
        return encounter_page(
            module.name, clinician, found, login_token, "Choose one of the listed encounters."
        )
    return await _continue(
        auth, request, module, dataclasses.replace(pending, encounter=chosen), clinician
    )


async def _module(auth: Authorization, pending: Pending) -> Module | None:
    module = await modules.get(auth.pool, pending.client_id)
    return module if module is not None and module.enabled else None


async def _logged_in(
    auth: Authorization, request: Request, pending: Pending, clinician: Clinician
) -> Response:
    module = await _module(auth, pending)
    if module is None:
        return error_page("Unknown app", "The app is no longer registered or was disabled.")
    return await _continue(auth, request, module, pending, clinician)


def _picks_encounter(pending: Pending) -> bool:
    """A standalone launch (no `launch` scope: that is an EHR's) that asks for an encounter
    (`launch/encounter`) and has none yet, for a patient chosen."""
    return (
        "launch/encounter" in pending.scopes
        and "launch" not in pending.scopes
        and pending.encounter is None
        and pending.patient is not None
    )


async def _encounters(
    auth: Authorization, request: Request, module: Module, patient: str, clinician: Clinician
) -> list[tuple[str, str, str]]:
    """The patient's encounters, as the clinician may see them through the app."""
    ctx = RequestContext(
        request_id=f"authorization:{secrets.token_hex(8)}",
        base_url=urls_of(request, auth.config).fhir_base,
        user_hsa_id=clinician.hsa_id,
        commission_hsa_id=clinician.commission_hsa_id,
        care_unit_hsa_id=clinician.care_unit_hsa_id,
        care_provider_hsa_id=clinician.care_provider_hsa_id,
        personnummer=clinician.personnummer,
        client_id=module.client_id,
        subject=clinician.hsa_id,
        scopes=frozenset({"user/Encounter.rs"}),
        care_relationship_days=auth.config.care_relationship_days,
    )
    return await directory.encounters_of(auth.services, ctx, patient)


async def _continue(
    auth: Authorization, request: Request, module: Module, pending: Pending, clinician: Clinician
) -> Response:
    """The next step of a login: the commission to work under, the patient, the encounter, then
    the code for the app. Every step comes through here, so none can be skipped."""
    keys = auth.tokens.keys()
    if clinician.must_choose:
        return commission_page(module.name, clinician, sign(keys, pending, clinician))
    if "fhirUser" in pending.scopes and clinician.practitioner_id is None:
        found = await directory.practitioner_of(auth.services, clinician.hsa_id)
        clinician = dataclasses.replace(clinician, practitioner_id=found)
    if granting.needs_patient(pending.scopes) and pending.patient is None:
        return picker_page(module.name, clinician, sign(keys, pending, clinician))
    if _picks_encounter(pending):
        assert pending.patient is not None
        found_encounters = await _encounters(auth, request, module, pending.patient, clinician)
        if found_encounters:
            login_token = sign(keys, pending, clinician)
            return encounter_page(module.name, clinician, found_encounters, login_token)
    return await _issue_code(auth, request, pending, clinician)


async def _issue_code(
    auth: Authorization, request: Request, pending: Pending, clinician: Clinician
) -> Response:
    urls = urls_of(request, auth.config)
    context = {**clinician.claims(), "purpose_of_use": "TREAT"}
    if pending.patient:
        context["patient"] = pending.patient
    if pending.encounter:
        context["encounter"] = pending.encounter
    if "fhirUser" in pending.scopes and clinician.practitioner_id:
        context["fhirUser"] = f"{urls.fhir_base}/Practitioner/{clinician.practitioner_id}"
    profile = {"name": clinician.name} if clinician.name else {}
    grant = Grant(new_grant_id(), clinician.hsa_id, pending.scopes, context, profile)
    code = secrets.token_urlsafe(32)
    await auth.pool.execute(
        """INSERT INTO auth_code (code_hash, grant_id, client_id, redirect_uri, code_challenge,
               subject, scopes, claims, nonce, expires)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)""",
        digest(code),
        grant.grant_id,
        pending.client_id,
        pending.redirect_uri,
        pending.code_challenge,
        grant.subject,
        list(grant.scopes),
        grant.stored(),
        pending.nonce,
        code_expiry(),
    )
    return _redirect(pending.redirect_uri, {"code": code, "state": pending.state})
