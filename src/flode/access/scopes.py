"""SMART on FHIR scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
what a token lets its bearer do, decided per resource type and interaction.

v2 scopes are `context/Type.cruds[?param=value&…]` with context `patient`, `user` or `system`,
`*` for every type, and the letters for create, read, update, delete and search; v1 scopes
(`patient/Observation.read`, `user/*.write`, `system/*.*`) mean `rs`, `cud` and `cruds`. Granular
scopes restrict a grant to the resources that match their search parameters. Other scopes
(`openid`, `fhirUser`, `launch/patient`, `offline_access`, …) grant no data access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
ACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\."
    r"(?P<actions>[cruds]+|read|write|\*)(?:\?(?P<query>.+))?$"
)


@dataclass(frozen=True, slots=True)
class Grant:
    """One data-access scope: `context` (patient, user or system), a resource type (`*` for
    all), the interactions it allows and, for a granular scope, the search criteria the
    resources must match."""

    context: str
    resource_type: str
    actions: frozenset[str]
    criteria: tuple[tuple[str, str], ...] = ()

    def covers(self, resource_type: str, action: str) -> bool:
        return self.resource_type in ("*", resource_type) and action in self.actions


def parse_scope(scope: str) -> Grant | None:
    """The grant a scope makes; None for scopes that grant no data access (`openid`, …)."""
    match = _SCOPE.match(scope)
    if match is None:
        return None
    actions = match["actions"]
    letters = _V1.get(actions, actions)
    if letters != "".join(sorted(set(letters), key=ACTIONS.index)):
        return None  # v2 letters come in order, once each: "rs", not "sr" or "rrs"
    query = match["query"]
    criteria = tuple(parse_qsl(query, keep_blank_values=False)) if query else ()
    return Grant(match["context"], match["type"], frozenset(letters), criteria)


@dataclass(frozen=True, slots=True)
class Scopes:
    """The grants of one token."""

    grants: tuple[Grant, ...]
    names: frozenset[str]

    @classmethod
    def parse(cls, scopes: Iterable[str]) -> Scopes:
        names = frozenset(s for s in scopes if s)
        grants = tuple(g for s in sorted(names) if (g := parse_scope(s)) is not None)
        return cls(grants, names)

    def for_action(self, resource_type: str, action: str) -> list[Grant]:
        """The grants that allow `action` (one of c, r, u, d, s) on `resource_type`."""
        return [g for g in self.grants if g.covers(resource_type, action)]

    def allows(self, resource_type: str, action: str) -> bool:
        return bool(self.for_action(resource_type, action))

    def unrestricted(self, resource_type: str, action: str) -> bool:
        """Some grant allows `action` on every resource of the type: a `user` or `system`
        grant without criteria."""
        return any(
            g.context != "patient" and not g.criteria
            for g in self.for_action(resource_type, action)
        )

    @property
    def has_data_access(self) -> bool:
        return bool(self.grants)
