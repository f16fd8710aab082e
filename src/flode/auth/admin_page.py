"""The administrator's view of the module registry (`/admin/modules`): who is connected, what
each may do and declares, the care unit it acts for, when it was last seen, how many requests
it made and tokens it got; the same as `flode module list` and `[base]/$module-list`. Plain
server-rendered HTML; every value is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from starlette.responses import HTMLResponse

from flode.auth.modules import Module
from flode.auth.pages import page

_STYLE = """
body { max-width: 96rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; vertical-align: top; padding: .45rem .5rem;
         border-bottom: 1px solid #c9d3dc; }
th { background: #eef2f5; } td.count { text-align: right; white-space: nowrap; }
.disabled { color: #a61b1b; font-weight: bold; } .enabled { color: #1d6b35; }
ul.values { margin: 0; padding: 0; list-style: none; }
input[type=password] { padding: .4rem; font-size: 1rem; width: 100%; max-width: 40rem; }
"""
_COLUMNS = (
    "client id",
    "module",
    "status",
    "acts for",
    "may have (scopes)",
    "declares",
    "keys",
    "last seen",
    "requests",
    "tokens issued",
)


def _values(values: Iterable[str]) -> str:
    items = "".join(f"<li><code>{escape(v)}</code></li>" for v in values)
    return f'<ul class="values">{items}</ul>' if items else "-"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    text = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{escape(moment.isoformat())}">{escape(text)}</time>'


def _keys(module: Module) -> str:
    if module.jwks is not None:
        ids = [str(k.get("kid") or k.get("kty") or "?") for k in module.jwks.get("keys", [])]
        return "JWKS: " + _values(ids)
    if module.jwks_url is not None:
        return f"JWKS at <code>{escape(module.jwks_url)}</code>"
    return "none (public client, PKCE)"


def _row(module: Module) -> str:
    who = f"<b>{escape(module.name)}</b>"
    who += "".join(f"<br><small>{escape(v)}</small>" for v in (module.vendor, module.contact) if v)
    status = (
        '<span class="enabled">enabled</span>'
        if module.enabled
        else '<span class="disabled">disabled</span>'
    )
    acts_for = (
        f"unit <code>{escape(module.care_unit_hsa_id)}</code><br>"
        f"provider <code>{escape(module.care_provider_hsa_id or '-')}</code>"
        if module.care_unit_hsa_id
        else "-"
    )
    declares = "".join(
        f"<div>{label}: {_values(values)}</div>" for label, values in module.declaration.listed()
    )
    cells = (
        f"<code>{escape(module.client_id)}</code>",
        who,
        status,
        acts_for,
        _values(module.scopes),
        declares or "-",
        _keys(module),
        _when(module.last_seen),
        f"{module.requests:,}",
        f"{module.tokens_issued:,}",
    )
    counts = len(cells) - 2
    return (
        "<tr>"
        + "".join(
            f'<td class="count">{cell}</td>' if index >= counts else f"<td>{cell}</td>"
            for index, cell in enumerate(cells)
        )
        + "</tr>"
    )


def modules_page(found: Sequence[Module]) -> HTMLResponse:
    header = "".join(f'<th scope="col">{escape(c)}</th>' for c in _COLUMNS)
    rows = "".join(_row(m) for m in found)
    table = (
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        if found
        else "<p>No modules are registered yet: see <code>flode module add --help</code> or "
        "<code>POST [base]/$module-add</code>.</p>"
    )
    enabled = sum(1 for m in found if m.enabled)
    body = (
        f"<h1>Modules</h1><p>{len(found)} registered, {enabled} enabled. Requests are counted "
        "by each server and added here every few seconds.</p>"
        f"{table}"
    )
    return page("Modules", body, style=_STYLE)


def token_page(problem: str | None, status: int) -> HTMLResponse:
    """Asks for the administrator's token (sent as a form field, never in the URL)."""
    shown = f'<p class="error">{escape(problem)}</p>' if problem else ""
    body = (
        "<h1>Modules</h1><p>The module registry is for the administrator. Send the "
        "administrator's access token as <code>Authorization: Bearer …</code>, or paste it "
        "here (<code>flode token issue</code> makes one).</p>"
        f"{shown}"
        '<form method="post" action="/admin/modules">'
        '<label>Access token<br><input type="password" name="token" autocomplete="off" '
        'required autofocus></label><br><button type="submit">Show the modules</button></form>'
    )
    headers = {"WWW-Authenticate": 'Bearer realm="flode"'} if status == 401 else None
    return page("Modules", body, status, style=_STYLE, headers=headers)
