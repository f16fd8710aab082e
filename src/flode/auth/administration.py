"""Administering the module registry: what `flode module …` (flode.auth.module_cli) and the
FHIR operations `[base]/$module-…` (flode.api.module_routes) do, one function per action for
both.

Every change is made in the database and announced to every server at once (the registry's
generation, flode.auth.modules.bump: each server looks for it every two seconds and reloads),
and recorded by a structured log line, `module administered`, naming the action, the module,
the fields changed and who did it. Module administration touches no patient's data, so it is
not in the access log (DOMAIN.md L4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from flode.auth import modules
from flode.auth.keys import KeyRing, SigningKeys
from flode.auth.modules import Declaration, Module

log = structlog.get_logger("flode.auth.admin")
Connection = asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True, slots=True)
class Administrator:
    """Who administers, as the log line names them: `via` is `cli` (`who`: the login name) or
    `api` (`who`: the subject of the administrator's token)."""

    via: str
    who: str
    request_id: str | None = None


class UnknownModule(LookupError):
    """No module has the client id."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"No module has client id '{client_id}'.")
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class Changes:
    """What to change in a module's registration; a field left None stays as it is. `owner`
    is the care unit and care provider together, `(None, None)` for none; a JWKS given inline
    replaces a JWKS URL and the other way round."""

    name: str | None = None
    vendor: str | None = None
    contact: str | None = None
    jwks: Mapping[str, Any] | None = None
    jwks_url: str | None = None
    scopes: tuple[str, ...] | None = None
    redirect_uris: tuple[str, ...] | None = None
    reads: frozenset[str] | None = None
    writes: frozenset[str] | None = None
    topics: frozenset[str] | None = None
    owner: tuple[str | None, str | None] | None = None

    def given(self) -> list[str]:
        """The names of the fields to change."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def apply(self, module: Module) -> Module:
        declared = module.declaration
        changed = replace(
            module,
            name=module.name if self.name is None else self.name,
            vendor=module.vendor if self.vendor is None else self.vendor,
            contact=module.contact if self.contact is None else self.contact,
            scopes=module.scopes if self.scopes is None else self.scopes,
            redirect_uris=module.redirect_uris
            if self.redirect_uris is None
            else self.redirect_uris,
            declaration=Declaration(
                declared.reads if self.reads is None else self.reads,
                declared.writes if self.writes is None else self.writes,
                declared.topics if self.topics is None else self.topics,
            ),
        )
        if self.jwks is not None or self.jwks_url is not None:
            changed = replace(changed, jwks=self.jwks, jwks_url=self.jwks_url)
        if self.owner is not None:
            unit, provider = self.owner
            changed = replace(changed, care_unit_hsa_id=unit, care_provider_hsa_id=provider)
        return changed


def new_module(client_id: str, changes: Changes) -> Module:
    """The registration `changes` make of a module that has nothing yet (checked when added)."""
    return changes.apply(Module(client_id=client_id, name="", scopes=()))


def _record(action: str, client_id: str | None, by: Administrator, **details: Any) -> None:
    log.info(
        "module administered",
        action=action,
        client_id=client_id,
        via=by.via,
        by=by.who,
        request_id=by.request_id,
        **details,
    )


async def add(conn: Connection, wanted: Module, by: Administrator) -> Module:
    """Register a module; InvalidModule when the registration cannot work (nothing is stored)."""
    added = await modules.add(conn, wanted)
    _record("add", added.client_id, by, scopes=list(added.scopes))
    return added


async def listing(conn: modules.Connection) -> list[Module]:
    """Every module, in the order they were registered."""
    return await modules.all_modules(conn)


async def show(conn: modules.Connection, client_id: str) -> Module:
    found = await modules.get(conn, client_id)
    if found is None:
        raise UnknownModule(client_id)
    return found


async def update(conn: Connection, client_id: str, changes: Changes, by: Administrator) -> Module:
    """Change a module's registration; UnknownModule, or InvalidModule when the result cannot
    work (nothing is changed)."""
    updated = await modules.update(conn, client_id, changes.apply)
    if updated is None:
        raise UnknownModule(client_id)
    _record("update", client_id, by, changed=changes.given())
    return updated


async def set_enabled(conn: Connection, client_id: str, on: bool, by: Administrator) -> Module:
    """Enable a module, or disable it: every token it holds is refused from now on, also after
    it is enabled again (flode.auth.modules.set_enabled). UnknownModule when there is none."""
    if not await modules.set_enabled(conn, client_id, on):
        raise UnknownModule(client_id)
    _record("enable" if on else "disable", client_id, by)
    return await show(conn, client_id)


def rotate_key(keys_dir: Path, retain_seconds: float, by: Administrator) -> SigningKeys:
    """A new signing key for the server's tokens, in the data directory every server of it
    reads (flode.auth.keys.KeyRing notices the change at once); tokens signed with the old key
    stay valid for `retain_seconds`."""
    keys = KeyRing(keys_dir).rotate(retain_seconds)
    _record("rotate-key", None, by, kid=keys.current.kid, retain_seconds=retain_seconds)
    return keys
