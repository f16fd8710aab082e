"""The few pages a person sees at the authorization server: the development login, the patient
picker and what went wrong. Plain server-rendered HTML; every value is escaped."""

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


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Flöde</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status, headers=_HEADERS)


def _scopes(scopes: Sequence[str]) -> str:
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    return f"<details><summary>What it asks for</summary><ul>{items}</ul></details>"


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
        f"<small>HSA-id {escape(user.hsa_id)} · commission "
        f"{escape(user.commission_hsa_id or '-')} · care unit "
        f"{escape(user.care_unit_hsa_id or '-')}</small></label>"
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
    return _page("Log in", body)


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
    return _page("Choose a patient", body)


def error_page(title: str, text: str, status: int = 400) -> HTMLResponse:
    body = f'<h1>{escape(title)}</h1><p class="error">{escape(text)}</p>'
    return _page(title, body, status)
