"""Modules: the systems that connect to Flöde, each a registered OAuth client (a journal, a lab
system, a patient portal). A module has its keys (a JWKS, inline or at a URL; none for a
user-facing app that only uses PKCE), the scopes it may be granted, its redirect URIs, and a
declaration of what it reads, writes and subscribes to. A module may also act for a care unit
(vårdenhet) and its care provider (vårdgivare), its *owner*: its own (system) tokens carry their
HSA-ids, so that what it writes is recorded as made under them. The table is `auth_client`.

`Modules` is the in-memory copy every server keeps (reloaded when the registry changes), so
that the access layer can ask `declared(client_id)` on every request without a query.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from flode.auth import granting
from flode.auth.local import OPERATOR
from flode.identifiers import InvalidIdentifier, hsa_id

Connection = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
_RESOURCE_TYPE = re.compile(r"^(\*|[A-Z][A-Za-z]{1,63})$")


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a module says it does: the resource types it reads and writes (`*`: all) and the
    subscription topics (canonical URLs) it subscribes to."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()

    def may_read(self, resource_type: str) -> bool:
        return "*" in self.reads or resource_type in self.reads

    def may_write(self, resource_type: str) -> bool:
        return "*" in self.writes or resource_type in self.writes

    def listed(self) -> list[tuple[str, list[str]]]:
        """What is declared, sorted, for each of reads, writes and topics that is not empty."""
        found = (("reads", self.reads), ("writes", self.writes), ("topics", self.topics))
        return [(label, sorted(values)) for label, values in found if values]


@dataclass(frozen=True, slots=True)
class Module:
    client_id: str
    name: str
    scopes: tuple[str, ...]
    vendor: str = ""
    contact: str = ""
    jwks: Mapping[str, Any] | None = None
    jwks_url: str | None = None
    redirect_uris: tuple[str, ...] = ()
    declaration: Declaration = field(default_factory=Declaration)
    enabled: bool = True
    tokens_valid_after: datetime | None = None
    created: datetime | None = None
    last_seen: datetime | None = None
    requests: int = 0
    tokens_issued: int = 0
    care_unit_hsa_id: str | None = None
    """The care unit (vårdenhet) the module acts for with its own tokens, if any."""
    care_provider_hsa_id: str | None = None
    """The care provider (vårdgivare) of that unit; set together with the unit."""

    @property
    def confidential(self) -> bool:
        """It authenticates with a JWT signed by one of its keys (RFC 7523)."""
        return self.jwks is not None or self.jwks_url is not None

    def owner_claims(self) -> dict[str, str]:
        """The context claims of the module's own (system) tokens: the care unit and care
        provider it acts for (flode.auth.tokens.CONTEXT_CLAIMS); empty when it has none. A
        clinician's token through the module carries the clinician's own instead."""
        if self.care_unit_hsa_id is None or self.care_provider_hsa_id is None:
            return {}
        return {
            "care_unit_hsa_id": self.care_unit_hsa_id,
            "care_provider_hsa_id": self.care_provider_hsa_id,
        }


class InvalidModule(ValueError):
    """A registration that cannot be stored; the text says what to fix, and `about` names the
    field of the registration it is about (`client_id`, `name`, `scopes`, `jwks`, `jwks_url`,
    `redirect_uris`, `reads`, `writes`, `topics`, `care_unit`, `care_provider`), if one."""

    def __init__(self, text: str, about: str | None = None) -> None:
        super().__init__(text)
        self.about = about


def jwks_document(value: Any) -> dict[str, Any]:
    """A JWKS as given: a JSON object with a `keys` list, or a single JWK, which is taken as a
    JWKS of one key; InvalidModule for anything else."""
    if isinstance(value, dict) and "keys" not in value and "kty" in value:
        value = {"keys": [value]}
    if not isinstance(value, dict):
        raise InvalidModule("a JWKS is a JSON object with a 'keys' list (or one JWK)", "jwks")
    return value


def public_jwks(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The public part of a JWKS, or InvalidModule: a private key given by mistake is never
    stored, and every key must be usable for signatures (RSA or EC)."""
    keys = raw.get("keys")
    if not isinstance(keys, list) or not keys:
        raise InvalidModule("a JWKS is a JSON object with a non-empty 'keys' list", "jwks")
    try:
        imported = KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidModule(f"the JWKS cannot be read: {exc}", "jwks") from None
    result = []
    for key, source in zip(imported.keys, keys, strict=True):
        if key.key_type not in ("RSA", "EC"):
            raise InvalidModule(f"key type {key.key_type} cannot sign with RS384 or ES384", "jwks")
        public = key.as_dict(private=False)
        for name in ("kid", "alg", "use", "key_ops"):
            if name in source:
                public[name] = source[name]
        result.append(public)
    return {"keys": result}


def owner(care_unit: str | None, care_provider: str | None) -> tuple[str | None, str | None]:
    """The care unit and care provider HSA-ids a module acts for, checked and normalised: both
    or neither (an empty value counts as none); InvalidModule otherwise."""
    unit = care_unit.strip() if care_unit else ""
    provider = care_provider.strip() if care_provider else ""
    if not unit and not provider:
        return None, None
    if not (unit and provider):
        given, missing = ("care unit", "care provider") if unit else ("care provider", "care unit")
        raise InvalidModule(
            f"a module acts for a care unit and its care provider together: the {given} is "
            f"given but not the {missing} (give both or neither)",
            missing.replace(" ", "_"),
        )
    return _hsa_id("care unit", unit), _hsa_id("care provider", provider)


def _hsa_id(what: str, value: str) -> str:
    try:
        return hsa_id(value)
    except InvalidIdentifier as exc:
        raise InvalidModule(f"the {what}: {exc}", what.replace(" ", "_")) from None


def new_client_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "module"
    return f"{slug}-{secrets.token_hex(4)}"


async def bump(conn: Connection) -> None:
    """Tell every server to reload the registry and the revocations."""
    await conn.execute("UPDATE auth_change SET generation = generation + 1 WHERE id = 1")


async def generation(conn: Connection) -> int:
    value: int = await conn.fetchval("SELECT generation FROM auth_change WHERE id = 1")
    return value


def _module(row: asyncpg.Record) -> Module:
    jwks = row["jwks"]
    return Module(
        client_id=row["id"],
        name=row["name"],
        vendor=row["vendor"],
        contact=row["contact"],
        jwks=json.loads(jwks) if jwks is not None else None,
        jwks_url=row["jwks_url"],
        scopes=tuple(row["scopes"]),
        redirect_uris=tuple(row["redirect_uris"]),
        declaration=Declaration(
            frozenset(row["reads"]), frozenset(row["writes"]), frozenset(row["topics"])
        ),
        enabled=row["enabled"],
        tokens_valid_after=row["tokens_valid_after"],
        created=row["created"],
        last_seen=row["last_seen"],
        requests=row["requests"],
        tokens_issued=row["tokens_issued"],
        care_unit_hsa_id=row["care_unit_hsa_id"],
        care_provider_hsa_id=row["care_provider_hsa_id"],
    )


def checked(module: Module) -> Module:
    """The registration as it is stored (the public part of its JWKS, its owner's HSA-ids
    normalised); InvalidModule when it cannot work."""
    if not CLIENT_ID.match(module.client_id):
        raise InvalidModule(f"'{module.client_id}' is not a usable client id", "client_id")
    if module.client_id == OPERATOR:
        raise InvalidModule(f"'{OPERATOR}' is the built-in administrator's client id", "client_id")
    if not module.name.strip():
        raise InvalidModule("a module needs a name", "name")
    if not module.scopes:
        raise InvalidModule("a module needs at least one scope it may be granted", "scopes")
    unknown = granting.unknown(module.scopes)
    if unknown:
        raise InvalidModule(
            f"not a scope Flöde grants: {', '.join(unknown)} (data scopes are like "
            "system/Patient.rs or user/*.cruds; the others are "
            f"{', '.join(sorted(granting.NAMED))})",
            "scopes",
        )
    if module.jwks is not None and module.jwks_url is not None:
        raise InvalidModule("give the JWKS inline or as a URL, not both", "jwks")
    if module.jwks_url is not None and not _absolute(module.jwks_url):
        raise InvalidModule(f"the JWKS URL {module.jwks_url!r} must be an http(s) URL", "jwks_url")
    if not module.confidential and not module.redirect_uris:
        raise InvalidModule(
            "a module without keys can only log users in: give it a JWKS or a redirect URI",
            "redirect_uris",
        )
    for uri in module.redirect_uris:
        if not _absolute(uri) or "#" in uri:
            raise InvalidModule(
                f"redirect URI {uri!r} must be an absolute http(s) URL", "redirect_uris"
            )
    for about, values in (
        ("reads", module.declaration.reads),
        ("writes", module.declaration.writes),
    ):
        wrong = sorted(v for v in values if not _RESOURCE_TYPE.match(v))
        if wrong:
            raise InvalidModule(f"not a resource type (or *): {', '.join(wrong)}", about)
    wrong_topics = sorted(t for t in module.declaration.topics if not _absolute(t))
    if wrong_topics:
        raise InvalidModule(
            "a topic is the canonical http(s) URL of a SubscriptionTopic: "
            + ", ".join(wrong_topics),
            "topics",
        )
    jwks = public_jwks(module.jwks) if module.jwks is not None else None
    care_unit, care_provider = owner(module.care_unit_hsa_id, module.care_provider_hsa_id)
    return replace(
        module, jwks=jwks, care_unit_hsa_id=care_unit, care_provider_hsa_id=care_provider
    )


def _absolute(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in uri


def _stored(module: Module) -> list[Any]:
    """The registration's columns, in the order of `_COLUMNS`."""
    return [
        module.name,
        module.vendor,
        module.contact,
        json.dumps(module.jwks) if module.jwks is not None else None,
        module.jwks_url,
        list(module.scopes),
        list(module.redirect_uris),
        sorted(module.declaration.reads),
        sorted(module.declaration.writes),
        sorted(module.declaration.topics),
        module.care_unit_hsa_id,
        module.care_provider_hsa_id,
    ]


_COLUMNS = (
    "name, vendor, contact, jwks, jwks_url, scopes, redirect_uris, reads, writes, topics, "
    "care_unit_hsa_id, care_provider_hsa_id"
)


async def add(conn: Connection, module: Module) -> Module:
    """Register a module; InvalidModule when the registration cannot work."""
    module = checked(module)
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO auth_client (id, enabled, {_COLUMNS})
                VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14)
                RETURNING *""",
            module.client_id,
            module.enabled,
            *_stored(module),
        )
    except asyncpg.UniqueViolationError:
        raise InvalidModule(
            f"a module with client id '{module.client_id}' exists", "client_id"
        ) from None
    await bump(conn)
    assert row is not None
    return _module(row)


async def update(
    conn: asyncpg.Connection | PoolConnectionProxy,
    client_id: str,
    change: Callable[[Module], Module],
) -> Module | None:
    """Store `change` of the module's registration (its client id, whether it is enabled and
    its counts stay as they are), checked as a new one is; the module as it is now, None when
    there is none, InvalidModule (and nothing changed) when the result cannot work. Tokens
    issued before keep what they carry until they expire; what the module declares holds for
    every request at once."""
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM auth_client WHERE id = $1 FOR UPDATE", client_id)
        if row is None:
            return None
        current = _module(row)
        wanted = checked(replace(change(current), client_id=current.client_id))
        row = await conn.fetchrow(
            f"""UPDATE auth_client SET ({_COLUMNS}) =
                    ROW($2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
                WHERE id = $1 RETURNING *""",
            client_id,
            *_stored(wanted),
        )
        await bump(conn)
    assert row is not None
    return _module(row)


async def get(conn: Connection, client_id: str) -> Module | None:
    row = await conn.fetchrow("SELECT * FROM auth_client WHERE id = $1", client_id)
    return _module(row) if row is not None else None


async def all_modules(conn: Connection) -> list[Module]:
    rows = await conn.fetch("SELECT * FROM auth_client ORDER BY created, id")
    return [_module(row) for row in rows]


async def set_enabled(
    conn: asyncpg.Connection | PoolConnectionProxy, client_id: str, on: bool
) -> bool:
    """Enable or disable a module; False when there is none. Disabling refuses every token
    it holds, at once and for good (also after it is enabled again), and its refresh tokens."""
    async with conn.transaction():
        if on:
            found = await conn.fetchval(
                "UPDATE auth_client SET enabled = true WHERE id = $1 RETURNING id", client_id
            )
        else:
            found = await conn.fetchval(
                """UPDATE auth_client SET enabled = false, tokens_valid_after = now()
                   WHERE id = $1 RETURNING id""",
                client_id,
            )
            await conn.execute(
                """UPDATE auth_refresh_token SET revoked = now()
                   WHERE client_id = $1 AND revoked IS NULL""",
                client_id,
            )
        if found is None:
            return False
        await bump(conn)
    return True


async def set_owner(
    conn: asyncpg.Connection | PoolConnectionProxy,
    client_id: str,
    care_unit: str | None,
    care_provider: str | None,
) -> Module | None:
    """Make the module act for this care unit and care provider (both None: for none); the
    module as it is now, None when there is none, InvalidModule when the HSA-ids cannot be
    used. Tokens issued before keep what they carry until they expire."""
    return await update(
        conn,
        client_id,
        lambda m: replace(m, care_unit_hsa_id=care_unit, care_provider_hsa_id=care_provider),
    )


async def count_token(conn: Connection, client_id: str) -> None:
    await conn.execute(
        "UPDATE auth_client SET tokens_issued = tokens_issued + 1 WHERE id = $1", client_id
    )


async def record_activity(conn: Connection, activity: Mapping[str, tuple[int, datetime]]) -> None:
    """Add the requests counted since the last call and move `last_seen` forward."""
    if not activity:
        return
    ids = list(activity)
    await conn.execute(
        """UPDATE auth_client c SET requests = c.requests + a.n,
                  last_seen = GREATEST(c.last_seen, a.seen)
           FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS a (id, n, seen)
           WHERE c.id = a.id""",
        ids,
        [activity[i][0] for i in ids],
        [activity[i][1] for i in ids],
    )


def split_list(values: Iterable[str]) -> tuple[str, ...]:
    """Items given space- or comma-separated, possibly over several options, in order, once."""
    seen: dict[str, None] = {}
    for value in values:
        for item in re.split(r"[\s,]+", value):
            if item:
                seen.setdefault(item, None)
    return tuple(seen)


class Modules:
    """The registry as this server last loaded it."""

    def __init__(self, modules: Sequence[Module] = ()) -> None:
        self._by_id = {m.client_id: m for m in modules}

    def replace(self, modules: Sequence[Module]) -> None:
        self._by_id = {m.client_id: m for m in modules}

    def get(self, client_id: str) -> Module | None:
        return self._by_id.get(client_id)

    def declared(self, client_id: str) -> Declaration | None:
        """What an enabled module declared it reads, writes and subscribes to; None for a
        client that is not a registered, enabled module (e.g. an operator token)."""
        module = self._by_id.get(client_id)
        return module.declaration if module is not None and module.enabled else None
