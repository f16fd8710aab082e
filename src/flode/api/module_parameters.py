"""The `Parameters` of the module operations (`[base]/$module-…`, flode.api.module_routes): what
they take, read into a registration or its changes, and a module written out as parameters.

| parameter | value | meaning |
|---|---|---|
| `client` | string | the client id (`$module-add`: made from the name if left out) |
| `name`, `vendor`, `contact` | string | who the module is |
| `jwks` | string (JSON), Attachment (`data`) | its public keys: a JWKS or one JWK |
| `jwksUrl` | uri | where it publishes its JWKS |
| `scopes` | string, repeated | SMART scopes it may be granted (space- or comma-separated too) |
| `reads`, `writes` | code, repeated | resource types it declares it reads and writes (`*`: all) |
| `topics` | canonical, repeated | subscription topics it subscribes to |
| `redirectUri` | uri, repeated | where the browser may come back to (apps users log into) |
| `careUnit`, `careProvider` | Identifier or string | the HSA-ids it acts for, both or neither |
| `noCareUnit` | boolean | (`$module-update`) act for no care unit any more |
| `retain` | integer | (`$module-rotate-key`) seconds the old signing key still verifies |

A module is answered with the same names, and `enabled`, `keyId`, `created`, `lastSeen`,
`requests` and `tokensIssued`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from flode.access.ownership import HSA_SYSTEM
from flode.auth.administration import Changes
from flode.auth.modules import InvalidModule, Module, jwks_document, split_list
from flode.fhir.dates import format_instant
from flode.fhir.errors import FhirError, bad_request

# The operations (flode.api.module_routes), for the CapabilityStatement.
OPERATIONS = tuple(
    (name, f"http://flode.example.org/OperationDefinition/{name}")
    for name in (
        "module-add",
        "module-list",
        "module-show",
        "module-update",
        "module-disable",
        "module-enable",
        "module-rotate-key",
    )
)
SINGLE = ("client", "name", "vendor", "contact", "jwks", "jwksUrl", "careUnit", "careProvider")
REPEATED = ("scopes", "reads", "writes", "topics", "redirectUri")
FLAGS = ("noCareUnit",)
NUMBERS = ("retain",)
# The parameter that gives each field of a registration (InvalidModule.about).
FIELDS = {
    "client_id": "client",
    "name": "name",
    "scopes": "scopes",
    "jwks": "jwks",
    "jwks_url": "jwksUrl",
    "redirect_uris": "redirectUri",
    "reads": "reads",
    "writes": "writes",
    "topics": "topics",
    "care_unit": "careUnit",
    "care_provider": "careProvider",
}
_TEXT = ("valueString", "valueCode", "valueUri", "valueUrl", "valueCanonical", "valueId")
_KINDS = (
    *_TEXT,
    "valueIdentifier",
    "valueAttachment",
    "valueBoolean",
    "valueInteger",
    "valueUnsignedInt",
)
_INTEGER_MAX = 2**31 - 1


class Given:
    """The parameters of one call, by name, each checked for its kind of value."""

    def __init__(self, pairs: Sequence[tuple[str, Any]], allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        self._values: dict[str, list[Any]] = {}
        for name, value in pairs:
            if name not in allowed:
                raise bad_request(
                    f"Parameter '{name}' is not one of this operation's: "
                    f"{', '.join(sorted(allowed)) or 'none'}",
                    name,
                )
            self._values.setdefault(name, []).append(value)
        for name, values in self._values.items():
            if name not in REPEATED and len(values) > 1:
                raise bad_request(f"Parameter '{name}' may be given once", name)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str) -> str | None:
        values = self._values.get(name)
        if not values:
            return None
        value = values[0]
        if isinstance(value, dict) and name in ("careUnit", "careProvider"):
            value = value.get("value")
        if not isinstance(value, str):
            raise bad_request(f"Parameter '{name}' needs a text value (valueString)", name)
        return value

    def items(self, name: str) -> tuple[str, ...] | None:
        """A repeated parameter's values, each also split at blanks and commas."""
        values = self._values.get(name)
        if values is None:
            return None
        if not all(isinstance(v, str) for v in values):
            raise bad_request(f"Parameter '{name}' needs text values", name)
        found = split_list(values)
        if not found:
            raise bad_request(f"Parameter '{name}' is given without a value", name)
        return found

    def flag(self, name: str) -> bool:
        value = (self._values.get(name) or [False])[0]
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise bad_request(f"Parameter '{name}' needs valueBoolean", name)
        return value

    def number(self, name: str) -> int | None:
        values = self._values.get(name)
        if not values:
            return None
        value = values[0]
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad_request(f"Parameter '{name}' needs a whole number of 0 or more", name)
        return value

    def jwks(self) -> dict[str, Any] | None:
        """`jwks`: JSON text, or an Attachment whose `data` is the JSON (base64)."""
        values = self._values.get("jwks")
        if not values:
            return None
        value = values[0]
        try:
            if isinstance(value, dict):
                value = base64.b64decode(value.get("data") or "", validate=True)
            if not isinstance(value, str | bytes):
                raise ValueError("neither text nor an Attachment")
            return jwks_document(orjson.loads(value))
        except (ValueError, binascii.Error, orjson.JSONDecodeError, InvalidModule) as exc:
            raise bad_request(
                f"Parameter 'jwks' must be a JWKS (or one JWK) as JSON text or in an "
                f"Attachment's data: {exc}",
                "jwks",
            ) from None


def read(query: Sequence[tuple[str, str]], body: Any, allowed: Iterable[str]) -> Given:
    """The parameters of the URL and of a Parameters body (operations.html#request)."""
    pairs: list[tuple[str, Any]] = list(query)
    if body is not None:
        parameters = body.get("parameter", []) if isinstance(body, dict) else None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request("The body must be a Parameters resource")
        if not isinstance(parameters, list):
            raise bad_request("Parameters.parameter must be a list", "Parameters.parameter")
        for parameter in parameters:
            name = parameter.get("name") if isinstance(parameter, dict) else None
            if not isinstance(name, str):
                raise bad_request("Every parameter needs a name", "Parameters.parameter")
            assert isinstance(parameter, dict)
            values = [k for k in parameter if k.startswith("value")]
            if len(values) != 1:
                raise bad_request(f"Parameter '{name}' needs exactly one value[x]", name)
            kind = values[0]
            if kind not in _KINDS:
                raise bad_request(f"Parameter '{name}' cannot be a {kind}", name)
            pairs.append((name, parameter[kind]))
    return Given(pairs, allowed)


def invalid(exc: InvalidModule) -> FhirError:
    """A registration that cannot work, as a 400 naming the parameter it is about."""
    name = FIELDS.get(exc.about or "")
    if name is None:
        return bad_request(str(exc))
    return bad_request(f"Parameter '{name}': {exc}", name)


def _owner(given: Given) -> tuple[str | None, str | None] | None:
    unit, provider = given.text("careUnit"), given.text("careProvider")
    if given.flag("noCareUnit"):
        if unit is not None or provider is not None:
            raise bad_request(
                "Give careUnit and careProvider, or noCareUnit, not both", "noCareUnit"
            )
        return None, None
    if unit is None and provider is None:
        return None
    return unit, provider


def changes(given: Given) -> Changes:
    """What the parameters say of a registration: for `$module-add`, all of it; for
    `$module-update`, what to change."""

    def declared(name: str) -> frozenset[str] | None:
        found = given.items(name)
        return None if found is None else frozenset(found)

    return Changes(
        name=given.text("name"),
        vendor=given.text("vendor"),
        contact=given.text("contact"),
        jwks=given.jwks(),
        jwks_url=given.text("jwksUrl"),
        scopes=given.items("scopes"),
        redirect_uris=given.items("redirectUri"),
        reads=declared("reads"),
        writes=declared("writes"),
        topics=declared("topics"),
        owner=_owner(given),
    )


def _count(name: str, value: int) -> dict[str, Any]:
    # FHIR R4's integer has 32 bits; a larger count is written as a decimal.
    kind = "valueInteger" if value <= _INTEGER_MAX else "valueDecimal"
    return {"name": name, kind: value}


def _instant(name: str, value: datetime | None) -> list[dict[str, Any]]:
    return [{"name": name, "valueInstant": format_instant(value)}] if value else []


def parts(module: Module) -> list[dict[str, Any]]:
    """Everything about a module, as parameters."""
    found: list[dict[str, Any]] = [
        {"name": "client", "valueString": module.client_id},
        {"name": "name", "valueString": module.name},
    ]
    found += [
        {"name": name, "valueString": value}
        for name, value in (("vendor", module.vendor), ("contact", module.contact))
        if value
    ]
    found.append({"name": "enabled", "valueBoolean": module.enabled})
    found += [{"name": "scopes", "valueString": s} for s in module.scopes]
    declared = module.declaration
    found += [{"name": "reads", "valueCode": t} for t in sorted(declared.reads)]
    found += [{"name": "writes", "valueCode": t} for t in sorted(declared.writes)]
    found += [{"name": "topics", "valueCanonical": t} for t in sorted(declared.topics)]
    found += [{"name": "redirectUri", "valueUri": u} for u in module.redirect_uris]
    if module.jwks is not None:
        found.append({"name": "jwks", "valueString": orjson.dumps(module.jwks).decode()})
        found += [
            {"name": "keyId", "valueString": str(key["kid"])}
            for key in module.jwks.get("keys", [])
            if key.get("kid")
        ]
    if module.jwks_url is not None:
        found.append({"name": "jwksUrl", "valueUri": module.jwks_url})
    for name, hsa_id in (
        ("careUnit", module.care_unit_hsa_id),
        ("careProvider", module.care_provider_hsa_id),
    ):
        if hsa_id:
            found.append({"name": name, "valueIdentifier": {"system": HSA_SYSTEM, "value": hsa_id}})
    found += _instant("created", module.created)
    found += _instant("lastSeen", module.last_seen)
    found += [_count("requests", module.requests), _count("tokensIssued", module.tokens_issued)]
    return found


def one(module: Module) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": parts(module)}


def many(found: Iterable[Module]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "module", "part": parts(m)} for m in found],
    }
