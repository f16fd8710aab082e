"""What a token may be granted: what was asked for, within what the module may have.

Data scopes (`patient/Observation.rs`, `system/*.read`, v1 or v2) are intersected grant by
grant: a request for `system/*.rs` by a module allowed `system/Patient.rs` and
`system/Observation.cruds` is granted `system/Observation.rs system/Patient.rs`. Other scopes
(`openid`, `launch/patient`, `offline_access`, …) are granted when the module may have them by
name. Granted scopes are written in v2 form.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from urllib.parse import urlencode

from flode.access.scopes import ACTIONS, Grant, parse_scope

# Which contexts of data scope each kind of grant may carry.
USER_FACING = frozenset({"patient", "user"})
BACKEND = frozenset({"system"})
ALL = USER_FACING | BACKEND
USER_SCOPES = (
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
)
"""Scopes about a user or a launch: they mean nothing to a backend module."""
USER_ONLY = frozenset(USER_SCOPES)
LAUNCH = "flode/launch"
"""Lets an EHR module create launches for the apps it opens (flode.auth.introspection)."""
NAMED = USER_ONLY | {LAUNCH}
"""Every scope other than a data scope that a module may be registered for."""


def _render(grant: Grant) -> str:
    letters = "".join(a for a in ACTIONS if a in grant.actions)
    scope = f"{grant.context}/{grant.resource_type}.{letters}"
    return f"{scope}?{urlencode(grant.criteria)}" if grant.criteria else scope


def _intersect(asked: Grant, allowed: Grant) -> Grant | None:
    if asked.context != allowed.context:
        return None
    if "*" not in (asked.resource_type, allowed.resource_type) and (
        asked.resource_type != allowed.resource_type
    ):
        return None
    actions = asked.actions & allowed.actions
    if not actions:
        return None
    if asked.criteria and allowed.criteria and asked.criteria != allowed.criteria:
        return None
    resource_type = allowed.resource_type if asked.resource_type == "*" else asked.resource_type
    criteria = asked.criteria or allowed.criteria
    return Grant(asked.context, resource_type, frozenset(actions), criteria)


def granted(
    requested: Iterable[str], allowed: Iterable[str], contexts: Collection[str]
) -> list[str]:
    """The scopes to grant, sorted; data scopes only in `contexts`."""
    allowed = list(allowed)
    allowed_grants = [g for s in allowed if (g := parse_scope(s)) is not None]
    allowed_names = {s for s in allowed if parse_scope(s) is None}
    result: set[str] = set()
    for scope in requested:
        grant = parse_scope(scope)
        if grant is None:
            if scope in allowed_names:
                result.add(scope)
            continue
        if grant.context not in contexts:
            continue
        for permitted in allowed_grants:
            narrowed = _intersect(grant, permitted)
            if narrowed is not None:
                result.add(_render(narrowed))
    return sorted(result)


def unknown(scopes: Iterable[str]) -> list[str]:
    """The scopes that are neither a data scope (v1 or v2, flode.access.scopes) nor one of
    `NAMED`: a registration naming one would be granted nothing for it."""
    return [s for s in scopes if s not in NAMED and parse_scope(s) is None]


def has_data_access(scopes: Iterable[str]) -> bool:
    return any(parse_scope(s) is not None for s in scopes)


def needs_patient(scopes: Iterable[str]) -> bool:
    """A patient must be picked: the app asked for one (`launch/patient`) or for an encounter
    (`launch/encounter`, which is one patient's), or it has `patient/` scopes, which only mean
    something with a patient in context."""
    return any(
        s in ("launch/patient", "launch/encounter")
        or ((g := parse_scope(s)) is not None and g.context == "patient")
        for s in scopes
    )
