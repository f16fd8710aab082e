"""The few pages a person sees at the authorization server: the development login, the choice of
commission, the patient and encounter pickers and what went wrong. Plain server-rendered HTML;
every value is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from starlette.responses import HTMLResponse

from flode.auth.identity import Clinician

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem;
       color: #1b2733; }
h1 { font-size: 1.4rem; } .app { color: #35516b; } .error { color: #a61b1b; }
label.user { display: block; padding: .5rem; border: 1px solid #c9d3dc; border-radius: 4px;
             margin: .4rem 0; cursor: pointer; }
small { color: #58697a; } code { font-size: .85rem; }
button { margin-top: 1rem; padding: .5rem 1.4rem; font-size: 1rem; }
input[type=text] { padding: .4rem; font-size: 1rem; width: 18rem; }
"""
# The pages carry a signed request in a hidden field; nobody else may frame them.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}


def page(
    title: str,
    body: str,
    status: int = 200,
    *,
    style: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A page with `body` (HTML whose values the caller has escaped), in the pages' style and
    `style` added to it."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Flöde</title><style>{_STYLE}{style}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status, headers={**_HEADERS, **(headers or {})})


def _scopes(scopes: Sequence[str]) -> str:
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    return f"<details><summary>What it asks for</summary><ul>{items}</ul></details>"


def _commissions(user: Clinician) -> str:
    if user.must_choose:
        return f"{len(user.commissions)} commissions: chosen after login"
    return (
        f"commission {escape(user.commission_hsa_id or '-')} · care unit "
        f"{escape(user.care_unit_hsa_id or '-')}"
    )


def login_page(
    app_name: str,
    scopes: Sequence[str],
    users: Sequence[tuple[Clinician, str]],
    pending: str,
    error: str | None = None,
) -> HTMLResponse:
    """The development login: pick one of the demo staff (`users`: clinician and what they do)."""
    choices = "".join(
        f'<label class="user"><input type="radio" name="user" value="{escape(user.hsa_id)}"'
        f"{' checked' if index == 0 else ''}> <b>{escape(user.name)}</b>, {escape(role)}<br>"
        f"<small>HSA-id {escape(user.hsa_id)} · {_commissions(user)}</small></label>"
        for index, (user, role) in enumerate(users)
    )
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f'<h1>Log in to Flöde</h1><p class="app"><b>{escape(app_name)}</b> wants to use '
        "Flöde on your behalf.</p>"
        f"{_scopes(scopes)}{problem}"
        '<form method="post" action="/auth/login">'
        f'<input type="hidden" name="request" value="{escape(pending)}">'
        f'{choices}<button type="submit">Log in</button></form>'
        "<p><small>Development login: the demo region's staff, no password. In production "
        "clinicians log in with SITHS eID through the region's identity provider.</small></p>"
    )
    return page("Log in", body)


def picker_page(
    app_name: str, clinician: Clinician, login: str, error: str | None = None
) -> HTMLResponse:
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f"<h1>Choose a patient</h1><p>Logged in as <b>{escape(clinician.name)}</b> "
        f'({escape(clinician.hsa_id)}). <b class="app">{escape(app_name)}</b> will open '
        f"with this patient.</p>{problem}"
        '<form method="post" action="/auth/patient">'
        f'<input type="hidden" name="login" value="{escape(login)}">'
        "<label>Personnummer (12 digits) or Patient id<br>"
        '<input type="text" name="patient" autofocus required></label><br>'
        '<button type="submit">Continue</button></form>'
    )
    return page("Choose a patient", body)


def _logged_in(clinician: Clinician, app_name: str, what: str) -> str:
    return (
        f"<p>Logged in as <b>{escape(clinician.name)}</b> ({escape(clinician.hsa_id)}). "
        f'<b class="app">{escape(app_name)}</b> will open {what}.</p>'
    )


def _choices(name: str, choices: Sequence[tuple[str, str, str]]) -> str:
    """Radio buttons of (value, title, details), the first checked."""
    return "".join(
        f'<label class="user"><input type="radio" name="{name}" value="{escape(value)}"'
        f"{' checked' if index == 0 else ''}> <b>{escape(title)}</b><br>"
        f"<small>{escape(details)}</small></label>"
        for index, (value, title, details) in enumerate(choices)
    )


def _choice_page(
    title: str, action: str, intro: str, login: str, choices: str, error: str | None
) -> HTMLResponse:
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        f"<h1>{escape(title)}</h1>{intro}{problem}"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="login" value="{escape(login)}">'
        f'{choices}<button type="submit">Continue</button></form>'
    )
    return page(title, body)


def commission_page(
    app_name: str, clinician: Clinician, login: str, error: str | None = None
) -> HTMLResponse:
    """The clinician has several commissions (medarbetaruppdrag): which one is this for?"""
    choices = [
        (c.hsa_id, c.name or c.hsa_id, f"commission {c.hsa_id} · care unit {c.care_unit_hsa_id}")
        for c in clinician.commissions
    ]
    intro = _logged_in(clinician, app_name, "under the commission you choose")
    return _choice_page(
        "Choose a commission",
        "/auth/commission",
        intro,
        login,
        _choices("commission", choices),
        error,
    )


def encounter_page(
    app_name: str,
    clinician: Clinician,
    encounters: Sequence[tuple[str, str, str]],
    login: str,
    error: str | None = None,
) -> HTMLResponse:
    """Which of the patient's encounters (`encounters`: id, what, details) the app opens with."""
    intro = _logged_in(clinician, app_name, "with this encounter of the patient")
    return _choice_page(
        "Choose an encounter",
        "/auth/encounter",
        intro,
        login,
        _choices("encounter", encounters),
        error,
    )


def error_page(title: str, text: str, status: int = 400) -> HTMLResponse:
    body = f'<h1>{escape(title)}</h1><p class="error">{escape(text)}</p>'
    return page(title, body, status)
