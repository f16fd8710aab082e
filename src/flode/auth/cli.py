"""`flode token issue`: a token signed with a data directory's key, for operators and scripts.
(`flode module …` is in flode.auth.module_cli.)

It works beside a running `flode serve`: the signing keys are in the data directory (re-read by
the server when they change), the registry in the database.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import click

from flode.auth.cli_options import err
from flode.auth.module_cli import module
from flode.store.attach import data_dir_option, database_url_option, with_database


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
@data_dir_option
@database_url_option
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

        module = with_database(data_dir, database_url, find)
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
