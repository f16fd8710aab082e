"""`flode module …` (register and manage the modules that connect to Flöde) and
`flode token issue` (a token signed with a data directory's key, for operators and scripts).

Each works beside a running `flode serve`: the registry is in the database (a server notices a
change within seconds), the signing keys in the data directory (re-read when they change).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click
from rich.console import Console
from rich.table import Table

T = TypeVar("T")

err = Console(stderr=True)
out = Console(soft_wrap=True)

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The data directory of the server, also while `flode serve` runs on it "
    "[default: ./.flode].",
)
_database_url = click.option(
    "--database-url",
    default=None,
    help="The server's PostgreSQL, instead of the embedded one [env: FLODE_DATABASE_URL].",
)


def _with_database(
    data_dir: Path | None,
    database_url: str | None,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    from flode.store import attach

    return attach.with_database(data_dir, database_url, work, err)


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "never"


def _jwks(value: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """`--jwks`: a URL, or a file with a JWKS (or one JWK)."""
    if value is None:
        return None, None
    if value.startswith(("https://", "http://")):
        return None, value
    path = Path(value)
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"cannot read a JWKS from {path}: {exc}") from None
    if isinstance(loaded, dict) and "keys" not in loaded and "kty" in loaded:
        loaded = {"keys": [loaded]}
    if not isinstance(loaded, dict):
        raise click.BadParameter(f"{path} holds no JWKS")
    return loaded, None


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


@click.group()
def module() -> None:
    """Register and manage modules: the systems (OAuth clients) that connect to Flöde."""


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
@_data_dir
@_database_url
def add(
    name: str,
    jwks: str | None,
    scopes: tuple[str, ...],
    reads: tuple[str, ...],
    writes: tuple[str, ...],
    topics: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    vendor: str,
    contact: str,
    client_id: str | None,
    care_unit: str | None,
    care_provider: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Register a module; prints its client id last."""
    from flode.auth import modules
    from flode.auth.modules import Declaration, InvalidModule, Module, split_list

    inline, url = _jwks(jwks)
    wanted = Module(
        client_id=client_id or modules.new_client_id(name),
        name=name,
        vendor=vendor,
        contact=contact,
        jwks=inline,
        jwks_url=url,
        scopes=split_list(scopes),
        redirect_uris=split_list(redirect_uris),
        declaration=Declaration(
            frozenset(split_list(reads)),
            frozenset(split_list(writes)),
            frozenset(split_list(topics)),
        ),
        care_unit_hsa_id=care_unit,
        care_provider_hsa_id=care_provider,
    )

    async def work(conn: asyncpg.Connection) -> Module | str:
        try:
            return await modules.add(conn, wanted)
        except InvalidModule as exc:
            return str(exc)

    added = _with_database(data_dir, database_url, work)
    if isinstance(added, str):
        err.print(f"[red]The module was not registered:[/red] {added}", highlight=False)
        sys.exit(1)
    err.print(_details(added))
    click.echo(added.client_id)


@module.command("list")
@_data_dir
@_database_url
def list_modules(data_dir: Path | None, database_url: str | None) -> None:
    """Every module: who it is, what it may do, when it was last seen, how much it asks."""
    from flode.auth import modules

    found = _with_database(data_dir, database_url, modules.all_modules)
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
        declared = m.declaration
        declares = "\n".join(
            f"{label}: {' '.join(sorted(values))}"
            for label, values in (
                ("reads", declared.reads),
                ("writes", declared.writes),
                ("topics", declared.topics),
            )
            if values
        )
        table.add_row(
            m.client_id,
            who,
            " ".join(m.scopes),
            declares or "-",
            _when(m.last_seen),
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
        ("created", _when(m.created)),
        ("last seen", _when(m.last_seen)),
        ("requests", f"{m.requests:,}"),
        ("tokens issued", f"{m.tokens_issued:,}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@module.command("show")
@click.argument("client_id")
@_data_dir
@_database_url
def show(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Everything about one module."""
    from flode.auth import modules

    found = _with_database(data_dir, database_url, lambda conn: modules.get(conn, client_id))
    if found is None:
        err.print(f"[red]No module has client id '{client_id}'.[/red]", highlight=False)
        sys.exit(1)
    out.print(_details(found))


@module.command("update")
@click.argument("client_id")
@_care_unit
@_care_provider
@click.option(
    "--no-care-unit",
    "clear",
    is_flag=True,
    help="Act for no care unit and care provider any more.",
)
@_data_dir
@_database_url
def update(
    client_id: str,
    care_unit: str | None,
    care_provider: str | None,
    clear: bool,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Change the care unit and care provider a module acts for. Its tokens issued before keep
    the ones they were issued with until they expire (`flode module disable` and `enable` end
    them at once)."""
    from flode.auth import modules
    from flode.auth.modules import InvalidModule, Module

    if clear and (care_unit or care_provider):
        raise click.UsageError("give --care-unit and --care-provider, or --no-care-unit")
    if not clear and not (care_unit or care_provider):
        raise click.UsageError("nothing to change: give --care-unit and --care-provider")

    async def work(conn: asyncpg.Connection) -> Module | str | None:
        try:
            return await modules.set_owner(conn, client_id, care_unit, care_provider)
        except InvalidModule as exc:
            return str(exc)

    updated = _with_database(data_dir, database_url, work)
    if updated is None:
        err.print(f"[red]No module has client id '{client_id}'.[/red]", highlight=False)
        sys.exit(1)
    if isinstance(updated, str):
        err.print(f"[red]The module was not changed:[/red] {updated}", highlight=False)
        sys.exit(1)
    out.print(_details(updated))


def _set_enabled(client_id: str, on: bool, data_dir: Path | None, database_url: str | None) -> None:
    from flode.auth import modules

    found = _with_database(
        data_dir, database_url, lambda conn: modules.set_enabled(conn, client_id, on)
    )
    if not found:
        err.print(f"[red]No module has client id '{client_id}'.[/red]", highlight=False)
        sys.exit(1)


@module.command("disable")
@click.argument("client_id")
@_data_dir
@_database_url
def disable(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Disable a module: its tokens are refused from now on (running servers notice within
    seconds), also if it is enabled again; it gets no new ones."""
    _set_enabled(client_id, False, data_dir, database_url)
    err.print(f"{client_id} is disabled; its tokens are revoked.", highlight=False)


@module.command("enable")
@click.argument("client_id")
@_data_dir
@_database_url
def enable(client_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Enable a disabled module again (it needs new tokens)."""
    _set_enabled(client_id, True, data_dir, database_url)
    err.print(f"{client_id} is enabled.", highlight=False)


@module.command("rotate-key")
@_data_dir
@click.option(
    "--retain",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds the old key still verifies [default: the token lifetime].",
)
def rotate_key(data_dir: Path | None, retain: int | None) -> None:
    """Make a new signing key for the server's tokens. Tokens signed with the old one stay
    valid until they expire; a running server uses the new key at once."""
    from flode.auth.keys import KeyRing
    from flode.config import Config
    from flode.store.attach import data_dir_of

    config = replace(Config(), data_dir=data_dir_of(data_dir))
    keys = KeyRing(config.keys_dir).rotate(retain if retain is not None else config.token_lifetime)
    err.print(f"New signing key in {config.keys_dir}:", highlight=False)
    click.echo(keys.current.kid)


@click.group()
def token() -> None:
    """Access tokens."""


def _purpose(purpose: str, reason: str | None) -> dict[str, str]:
    if purpose != "TREAT" and not reason:
        raise click.UsageError(f"--purpose {purpose} needs --reason: why (DOMAIN.md L8)")
    context = {"purpose_of_use": purpose}
    if reason:
        context["emergency_reason"] = reason
    return context


@token.command("issue")
@click.option("--client", "client_id", default=None, help="For this registered module.")
@click.option("--user", "user", default=None, help="For this clinician (employee HSA-id).")
@click.option("--care-unit", default=None, help="The clinician's care unit (HSA-id).")
@click.option("--care-provider", default=None, help="The clinician's care provider (HSA-id).")
@click.option("--commission", default=None, help="The clinician's commission (HSA-id).")
@click.option("--personnummer", default=None, help="The clinician's personnummer.")
@click.option("--scope", "scopes", multiple=True, help="Scopes [default: all it may have].")
@click.option("--patient", default=None, help="A Patient id in context.")
@click.option(
    "--purpose",
    type=click.Choice(["TREAT", "ETREAT", "BTG"]),
    default="TREAT",
    help="Purpose of use: care, emergency care, or breaking the glass.",
)
@click.option("--reason", default=None, help="Why, for ETREAT and BTG.")
@click.option("--audience", default=None, help="The FHIR base URL the token is for.")
@click.option("--lifetime", type=click.IntRange(min=1), default=None, help="Seconds it lives.")
@_data_dir
@_database_url
def issue(
    client_id: str | None,
    user: str | None,
    care_unit: str | None,
    care_provider: str | None,
    commission: str | None,
    personnummer: str | None,
    scopes: tuple[str, ...],
    patient: str | None,
    purpose: str,
    reason: str | None,
    audience: str | None,
    lifetime: int | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Sign a token with the data directory's key and print it (last line). With neither
    --client nor --user: the built-in administrator's (system/*.cruds)."""
    from flode.auth import granting, modules
    from flode.auth.keys import KeyRing
    from flode.auth.local import OPERATOR, OPERATOR_SCOPES
    from flode.auth.modules import split_list
    from flode.auth.tokens import Tokens, issuer_of, root_of
    from flode.config import Config
    from flode.store.attach import data_dir_of

    if client_id is not None and user is not None:
        raise click.UsageError("give --client or --user, not both")
    if client_id is not None and (care_unit or care_provider):
        raise click.UsageError(
            "--care-unit and --care-provider are a clinician's (--user): a module's token "
            "carries the ones it is registered with (flode module update)"
        )
    if user is not None and not (care_unit and care_provider):
        raise click.UsageError("a clinician's token needs --care-unit and --care-provider")
    config = replace(Config(), data_dir=data_dir_of(data_dir))
    audience = (audience or _default_audience(config)).rstrip("/")
    requested = split_list(scopes)
    context = _purpose(purpose, reason)
    if patient:
        context["patient"] = patient
    subject = OPERATOR
    if client_id is not None:
        wanted = client_id

        async def find(conn: asyncpg.Connection) -> Any:
            found = await modules.get(conn, wanted)
            if found is not None and found.enabled:
                await modules.count_token(conn, wanted)
            return found

        module = _with_database(data_dir, database_url, find)
        if module is None or not module.enabled:
            err.print(f"[red]No enabled module has client id '{client_id}'.[/red]")
            sys.exit(1)
        granted = granting.granted(requested or module.scopes, module.scopes, granting.ALL)
        if not granted:
            err.print(f"[red]{client_id} may have none of these scopes.[/red]", highlight=False)
            sys.exit(1)
        subject = client_id
        # The module's own token: it acts for the care unit and provider it was registered
        # with (--care-unit and --care-provider are for a clinician's token).
        context.update(module.owner_claims())
    elif user is not None:
        client_id, subject = OPERATOR, user
        granted = list(requested or ("user/*.cruds",))
        clinician = {
            "employee_hsa_id": user,
            "care_unit_hsa_id": care_unit,
            "care_provider_hsa_id": care_provider,
            "commission_hsa_id": commission,
            "personnummer": personnummer,
        }
        context.update({k: v for k, v in clinician.items() if v})
    else:
        client_id = OPERATOR
        granted = list(requested or OPERATOR_SCOPES)
    raw, _ = Tokens(KeyRing(config.keys_dir)).issue(
        issuer=issuer_of(root_of(audience, config.base_path)),
        client_id=client_id,
        subject=subject,
        scopes=granted,
        audience=audience,
        lifetime=lifetime or config.token_lifetime,
        context=context,
    )
    err.print(f"A token for {audience}, scope: {' '.join(sorted(granted))}", highlight=False)
    click.echo(raw)


def _default_audience(config: Any) -> str:
    if config.public_base_url:
        return str(config.public_base_url)
    host = os.environ.get("FLODE_HOST", "127.0.0.1")
    return f"http://{host}:{config.port}{config.base_path}"


COMMANDS: Sequence[click.Command] = (module, token)
