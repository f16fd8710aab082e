"""`flode module …`: register and manage the modules that connect to Flöde. Each command is one
action of flode.auth.administration, which the FHIR operations `[base]/$module-…` share.

Each works beside a running `flode serve`: the registry is in the database (a server notices a
change within seconds), the signing keys in the data directory (re-read when they change).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click
from rich.table import Table

from flode.auth.cli_options import err, out, when
from flode.store.attach import data_dir_option, database_url_option, with_database

T = TypeVar("T")

_care_unit = click.option(
    "--care-unit",
    default=None,
    metavar="HSA-ID",
    help="The care unit (vårdenhet) the module acts for: its own tokens carry it, and what it "
    "writes is recorded under it. Give it with --care-provider.",
)
_care_provider = click.option(
    "--care-provider",
    default=None,
    metavar="HSA-ID",
    help="The care provider (vårdgivare) of that care unit. Give it with --care-unit.",
)
# The option that gives each field of a registration, for the errors about it.
_OPTIONS = {
    "client_id": "--client-id",
    "name": "--name",
    "scopes": "--scopes",
    "jwks": "--jwks",
    "jwks_url": "--jwks",
    "redirect_uris": "--redirect-uri",
    "reads": "--reads",
    "writes": "--writes",
    "topics": "--topics",
    "care_unit": "--care-unit",
    "care_provider": "--care-provider",
}


def _administrator() -> Any:
    from flode.auth.administration import Administrator

    return Administrator("cli", getpass.getuser())


def _run(
    data_dir: Path | None,
    database_url: str | None,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    failed: str,
) -> T:
    """What `work` returns; the reason and exit 1 when the module is unknown or the change
    cannot be made (`failed` says what did not happen)."""
    from flode.auth.administration import UnknownModule
    from flode.auth.modules import InvalidModule

    try:
        return with_database(data_dir, database_url, work)
    except UnknownModule as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
    except InvalidModule as exc:
        option = f" ({_OPTIONS[exc.about]})" if exc.about in _OPTIONS else ""
        err.print(f"[red]{failed}{option}:[/red] {exc}", highlight=False)
    sys.exit(1)


def _jwks(value: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """`--jwks`: a URL, or a file with a JWKS (or one JWK)."""
    from flode.auth.modules import InvalidModule, jwks_document

    if value is None:
        return None, None
    if value.startswith(("https://", "http://")):
        return None, value
    path = Path(value)
    try:
        return jwks_document(json.loads(path.read_text())), None
    except InvalidModule:
        raise click.BadParameter(f"{path} holds no JWKS") from None
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read a JWKS from {path}: {exc}") from None


def _changes(
    name: str | None,
    vendor: str | None,
    contact: str | None,
    jwks: str | None,
    scopes: tuple[str, ...],
    reads: tuple[str, ...],
    writes: tuple[str, ...],
    topics: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    care_unit: str | None,
    care_provider: str | None,
    clear: bool = False,
) -> Any:
    """What the options say of a registration (an option left out: nothing; `clear`: act for
    no care unit)."""
    from flode.auth.administration import Changes
    from flode.auth.modules import split_list

    def listed(values: tuple[str, ...]) -> tuple[str, ...] | None:
        return split_list(values) or None

    def declared(values: tuple[str, ...]) -> frozenset[str] | None:
        found = listed(values)
        return None if found is None else frozenset(found)

    inline, url = _jwks(jwks)
    owner = (care_unit, care_provider) if care_unit or care_provider else None
    return Changes(
        name=name,
        vendor=vendor,
        contact=contact,
        jwks=inline,
        jwks_url=url,
        scopes=listed(scopes),
        redirect_uris=listed(redirect_uris),
        reads=declared(reads),
        writes=declared(writes),
        topics=declared(topics),
        owner=(None, None) if clear else owner,
    )


@click.group()
def module() -> None:
    """Register and manage modules: the systems (OAuth clients) that connect to Flöde."""
    from flode import logs

    logs.configure()  # the record of each change goes to stderr


@module.command("add")
@click.option("--name", required=True, help="What the module is called, e.g. 'Lab system'.")
@click.option("--jwks", default=None, help="Its public keys: a JWKS file, or the URL of one.")
@click.option("--scopes", multiple=True, required=True, help="SMART scopes it may be granted.")
@click.option("--reads", multiple=True, help="Resource types it reads (`*`: all).")
@click.option("--writes", multiple=True, help="Resource types it writes.")
@click.option("--topics", multiple=True, help="Subscription topics (canonical URLs).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="For apps users log into.")
@click.option("--vendor", default="", help="Who supplies it.")
@click.option("--contact", default="", help="Whom to call about it.")
@click.option("--client-id", default=None, help="Its client id [default: made from the name].")
@_care_unit
@_care_provider
@data_dir_option
@database_url_option
def add(
    client_id: str | None,
    data_dir: Path | None,
    database_url: str | None,
    **registration: Any,
) -> None:
    """Register a module; prints its client id last."""
    from flode.auth import administration, modules

    new_id = client_id or modules.new_client_id(registration["name"])
    wanted = administration.new_module(new_id, _changes(**registration))
    added = _run(
        data_dir,
        database_url,
        lambda conn: administration.add(conn, wanted, _administrator()),
        "The module was not registered",
    )
    err.print(_details(added))
    click.echo(added.client_id)


@module.command("list")
@data_dir_option
@database_url_option
def list_modules(data_dir: Path | None, database_url: str | None) -> None:
    """Every module: who it is, what it may do, when it was last seen, how much it asks."""
    from flode.auth import administration

    found = with_database(data_dir, database_url, administration.listing)
    table = Table(title="Modules", title_justify="left", show_lines=True)
    table.add_column("client id", no_wrap=True)
    for column in ("module", "may", "declares", "last seen"):
        table.add_column(column, overflow="fold")
    table.add_column("requests", justify="right")
    table.add_column("tokens", justify="right")
    for m in found:
        status = "" if m.enabled else "\n[red]disabled[/red]"
        who = f"[bold]{m.name}[/bold]" + (f"\n{m.vendor}" if m.vendor else "")
        if m.care_unit_hsa_id:
            who += f"\nfor {m.care_unit_hsa_id}\n  of {m.care_provider_hsa_id}"
        who += status
        declares = "\n".join(
            f"{label}: {' '.join(values)}" for label, values in m.declaration.listed()
        )
        table.add_row(
            m.client_id,
            who,
            " ".join(m.scopes),
            declares or "-",
            when(m.last_seen),
            f"{m.requests:,}",
            f"{m.tokens_issued:,}",
        )
    out.print(table)
    if not found:
        err.print("No modules are registered yet: see `flode module add --help`.")


def _details(m: Any) -> Table:
    table = Table(show_header=False, title=m.name, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    keys = (
        ", ".join(str(k.get("kid", k.get("kty"))) for k in m.jwks["keys"])
        if m.jwks is not None
        else m.jwks_url or "none: a public client (PKCE only)"
    )
    rows = [
        ("client id", m.client_id),
        ("status", "enabled" if m.enabled else "disabled"),
        ("vendor", m.vendor or "-"),
        ("contact", m.contact or "-"),
        ("care unit", m.care_unit_hsa_id or "-"),
        ("care provider", m.care_provider_hsa_id or "-"),
        ("keys", keys),
        ("scopes", " ".join(m.scopes)),
        ("redirect URIs", " ".join(m.redirect_uris) or "-"),
        ("reads", " ".join(sorted(m.declaration.reads)) or "-"),
        ("writes", " ".join(sorted(m.declaration.writes)) or "-"),
        ("topics", " ".join(sorted(m.declaration.topics)) or "-"),
        ("created", when(m.created)),
        ("last seen", when(m.last_seen)),
        ("requests", f"{m.requests:,}"),
        ("tokens issued", f"{m.tokens_issued:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@module.command("show")
@click.argument("client_id")
@data_dir_option
@database_url_option
def show(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Everything about one module."""
    from flode.auth import administration

    found = _run(
        data_dir,
        database_url,
        lambda conn: administration.show(conn, client_id),
        "The module cannot be shown",
    )
    out.print(_details(found))


def _list_option(name: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(name, multiple=True, help=help + " Replaces what it had.")


@module.command("update")
@click.argument("client_id")
@click.option("--name", default=None, help="What the module is called.")
@click.option("--vendor", default=None, help="Who supplies it.")
@click.option("--contact", default=None, help="Whom to call about it.")
@click.option(
    "--jwks", default=None, help="New public keys (a JWKS file, or the URL of one): a key change."
)
@_list_option("--scopes", "SMART scopes it may be granted.")
@_list_option("--reads", "Resource types it reads (`*`: all).")
@_list_option("--writes", "Resource types it writes.")
@_list_option("--topics", "Subscription topics (canonical URLs).")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Replaces its redirect URIs.")
@_care_unit
@_care_provider
@click.option(
    "--no-care-unit",
    "clear",
    is_flag=True,
    help="Act for no care unit and care provider any more.",
)
@data_dir_option
@database_url_option
def update(
    client_id: str,
    clear: bool,
    data_dir: Path | None,
    database_url: str | None,
    **registration: Any,
) -> None:
    """Change a module's registration: what is given replaces what it had. Tokens issued before
    keep their scopes and the care unit and provider they were issued with until they expire
    (`flode module disable` and `enable` end them at once); what it declares holds at once."""
    from flode.auth import administration

    if clear and (registration["care_unit"] or registration["care_provider"]):
        raise click.UsageError("give --care-unit and --care-provider, or --no-care-unit")
    changes = _changes(clear=clear, **registration)
    if not changes.given():
        raise click.UsageError("nothing to change: see `flode module update --help`")
    updated = _run(
        data_dir,
        database_url,
        lambda conn: administration.update(conn, client_id, changes, _administrator()),
        "The module was not changed",
    )
    out.print(_details(updated))


def _set_enabled(client_id: str, on: bool, data_dir: Path | None, database_url: str | None) -> None:
    from flode.auth import administration

    _run(
        data_dir,
        database_url,
        lambda conn: administration.set_enabled(conn, client_id, on, _administrator()),
        "The module was not changed",
    )


@module.command("disable")
@click.argument("client_id")
@data_dir_option
@database_url_option
def disable(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Disable a module: its tokens are refused from now on (running servers notice within
    seconds), also if it is enabled again; it gets no new ones."""
    _set_enabled(client_id, False, data_dir, database_url)
    err.print(f"{client_id} is disabled; its tokens are revoked.", highlight=False)


@module.command("enable")
@click.argument("client_id")
@data_dir_option
@database_url_option
def enable(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Enable a disabled module again (it needs new tokens)."""
    _set_enabled(client_id, True, data_dir, database_url)
    err.print(f"{client_id} is enabled.", highlight=False)


@module.command("rotate-key")
@data_dir_option
@click.option(
    "--retain",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds the old key still verifies [default: the token lifetime].",
)
def rotate_key(data_dir: Path | None, retain: int | None) -> None:
    """Make a new signing key for the server's tokens. Tokens signed with the old one stay
    valid until they expire; a running server uses the new key at once."""
    from flode.auth import administration
    from flode.config import Config
    from flode.store.attach import data_dir_of

    config = replace(Config(), data_dir=data_dir_of(data_dir))
    keys = administration.rotate_key(
        config.keys_dir,
        retain if retain is not None else config.token_lifetime,
        _administrator(),
    )
    err.print(f"New signing key in {config.keys_dir}:", highlight=False)
    click.echo(keys.current.kid)
