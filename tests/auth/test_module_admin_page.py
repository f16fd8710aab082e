"""The administrator's page of the module registry (`/admin/modules`), over real HTTP: only for
the administrator's token (as a bearer token, or pasted into its form), every value escaped."""

from __future__ import annotations

from html.parser import HTMLParser

import asyncpg
import httpx

from flode.auth import modules
from flode.auth.local import issue_local

from .conftest import AuthServer, backend, es384_key, register, unique
from .test_module_admin import PROVIDER, UNIT

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


class Rows(HTMLParser):
    """The text of each table cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data + " ")


def rows_of(html: str) -> dict[str, list[str]]:
    """The table's rows by their first cell (the client id)."""
    parser = Rows()
    parser.feed(html)
    return {row[0]: row for row in parser.rows if row}


def admin_headers(server: AuthServer) -> dict[str, str]:
    return {**BROWSER, **server.operator()}


async def test_lists_every_module_with_the_same_columns_as_the_cli(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key(), care_unit_hsa_id=UNIT, care_provider_hsa_id=PROVIDER)
    page = await http.get("/admin/modules", headers=admin_headers(auth_server))
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    rows = rows_of(page.text)
    assert rows["client id"][1:] == [
        "module",
        "status",
        "acts for",
        "may have (scopes)",
        "declares",
        "keys",
        "last seen",
        "requests",
        "tokens issued",
    ]
    row = rows[module.client_id]
    assert row[1] == "Test module"
    assert row[2] == "enabled"
    assert UNIT in row[3]
    assert PROVIDER in row[3]
    assert row[4] == "system/Patient.rs system/Observation.cruds"
    assert row[5] == "reads: Patient writes: Observation"
    assert row[7] == "never"
    assert row[8:] == ["0", "0"]


async def test_shows_a_disabled_module_as_disabled(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    await modules.set_enabled(db, module.client_id, False)
    page = await http.get("/admin/modules", headers=admin_headers(auth_server))
    assert rows_of(page.text)[module.client_id][2] == "disabled"


async def test_escapes_every_value_a_vendor_registered(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    name = '<script>alert("name")</script>'
    module = await register(
        db,
        name=name,
        vendor="O'Brien & <b>Sons</b>",
        contact='"><img src=x onerror=alert(1)>',
        scopes=("openid", "user/*.rs"),
        redirect_uris=("https://app.example.se/cb?a=1&b=<x>",),
    )
    page = await http.get("/admin/modules", headers=admin_headers(auth_server))
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "<img" not in page.text
    assert "<b>Sons" not in page.text
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in page.text
    row = rows_of(page.text)[module.client_id]
    assert row[1] == f"{name} O'Brien & <b>Sons</b> \"><img src=x onerror=alert(1)>"


async def test_asks_for_the_token_without_one_with_401(http: httpx.AsyncClient) -> None:
    page = await http.get("/admin/modules", headers=BROWSER)
    assert page.status_code == 401
    assert page.headers["www-authenticate"].startswith("Bearer")
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/admin/modules">' in page.text
    assert 'type="password" name="token"' in page.text
    assert 'class="error"' not in page.text


async def test_refuses_a_token_that_does_not_verify_with_401(http: httpx.AsyncClient) -> None:
    page = await http.get(
        "/admin/modules", headers={**BROWSER, "Authorization": "Bearer not-a-token"}
    )
    assert page.status_code == 401
    assert "The access token was refused" in page.text


async def test_refuses_a_module_token_and_a_clinicians_with_403(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key(), scopes=("system/*.cruds",))
    tokens = [
        issue_local(auth_server.config, auth_server.root, client_id=module.client_id),
        issue_local(
            auth_server.config,
            auth_server.root,
            subject="SE2321000131-P000000000111",
            context={"employee_hsa_id": "SE2321000131-P000000000111"},
        ),
    ]
    for token in tokens:
        page = await http.get(
            "/admin/modules", headers={**BROWSER, "Authorization": f"Bearer {token}"}
        )
        assert page.status_code == 403, page.text
        assert "for the administrator" in page.text
        assert module.client_id not in page.text


async def test_takes_the_token_pasted_into_its_form(
    http: httpx.AsyncClient, auth_server: AuthServer, db: asyncpg.Connection
) -> None:
    module = await backend(db, es384_key())
    token = auth_server.operator()["Authorization"].removeprefix("Bearer ")
    page = await http.post("/admin/modules", data={"token": token}, headers=BROWSER)
    assert page.status_code == 200, page.text
    assert module.client_id in rows_of(page.text)
    wrong = await http.post("/admin/modules", data={"token": unique("wrong")}, headers=BROWSER)
    assert wrong.status_code == 401
    assert module.client_id not in wrong.text
    empty = await http.post("/admin/modules", data={"token": ""}, headers=BROWSER)
    assert empty.status_code == 401
    not_a_form = await http.post("/admin/modules", json={"token": token}, headers=BROWSER)
    assert not_a_form.status_code == 400
    assert module.client_id not in not_a_form.text
