"""Who logs in at the authorization server: a clinician with the identifiers the Swedish access
rules need (DOMAIN.md L1, L3): personnummer, employee HSA-id, the selected commission
(medarbetaruppdrag) and its care unit and care provider.

An `IdentityProvider` runs the login: the built-in page with the demo staff (flode.auth.demo)
in development, an upstream OpenID Connect provider (flode.auth.oidc) in production.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from flode.auth.modules import Module


@dataclass(frozen=True, slots=True)
class Commission:
    """A commission (medarbetaruppdrag): what the employee does, for which care unit and care
    provider (DOMAIN.md L1, L3). A clinician with several chooses one at login; their tokens
    carry the chosen one's HSA-ids."""

    hsa_id: str
    care_unit_hsa_id: str
    care_provider_hsa_id: str
    name: str = ""
    """What it is, for the person choosing: e.g. 'Läkare, Medicinavdelning 5 SÄS Borås'."""


@dataclass(frozen=True, slots=True)
class Clinician:
    hsa_id: str
    """The employee HSA-id (employeeHsaId): the subject of the tokens."""
    name: str = ""
    personnummer: str | None = None
    commission_hsa_id: str | None = None
    care_unit_hsa_id: str | None = None
    care_provider_hsa_id: str | None = None
    practitioner_id: str | None = None
    """The id of the clinician's Practitioner resource (the `fhirUser` claim), when known."""
    commissions: tuple[Commission, ...] = ()
    """The commissions to choose one from at login, when there are several; empty once one is
    chosen (or when the identity provider chose it)."""

    @property
    def must_choose(self) -> bool:
        """The clinician has several commissions and has not chosen one yet."""
        return len(self.commissions) > 1

    def choose(self, commission_hsa_id: str) -> Clinician | None:
        """The clinician working under the commission of that HSA-id; None when it is not one
        of theirs."""
        for commission in self.commissions:
            if commission.hsa_id == commission_hsa_id:
                return dataclasses.replace(
                    self,
                    commission_hsa_id=commission.hsa_id,
                    care_unit_hsa_id=commission.care_unit_hsa_id,
                    care_provider_hsa_id=commission.care_provider_hsa_id,
                    commissions=(),
                )
        return None

    def claims(self) -> dict[str, str]:
        """The context claims of the clinician's tokens (flode.auth.tokens.CONTEXT_CLAIMS)."""
        values = {
            "employee_hsa_id": self.hsa_id,
            "personnummer": self.personnummer,
            "commission_hsa_id": self.commission_hsa_id,
            "care_unit_hsa_id": self.care_unit_hsa_id,
            "care_provider_hsa_id": self.care_provider_hsa_id,
        }
        return {k: v for k, v in values.items() if v}

    def session(self) -> dict[str, str]:
        """Everything, to carry through the rest of a login."""
        values = {**self.claims(), "name": self.name, "practitioner_id": self.practitioner_id or ""}
        if self.commissions:
            values["commissions"] = json.dumps([dataclasses.asdict(c) for c in self.commissions])
        return values

    @classmethod
    def from_session(cls, values: Mapping[str, str]) -> Clinician:
        return cls(
            hsa_id=values["employee_hsa_id"],
            name=values.get("name", ""),
            personnummer=values.get("personnummer") or None,
            commission_hsa_id=values.get("commission_hsa_id") or None,
            care_unit_hsa_id=values.get("care_unit_hsa_id") or None,
            care_provider_hsa_id=values.get("care_provider_hsa_id") or None,
            practitioner_id=values.get("practitioner_id") or None,
            commissions=tuple(
                Commission(**c) for c in json.loads(values.get("commissions") or "[]")
            ),
        )


class LoginFailed(Exception):
    """The login did not succeed; the text is shown to the user."""


class IdentityProvider(Protocol):
    async def start(
        self, request: Request, pending: str, client: Module, scopes: Sequence[str]
    ) -> Response:
        """Begin a login for the pending authorization request (`pending`: signed, see
        flode.auth.pending) of `client` for `scopes`: a page to log in on, or a redirect to
        where that happens."""
        ...

    async def complete(self, request: Request) -> tuple[Clinician, str]:
        """The clinician who logged in at `/auth/login` and the pending request they logged
        in for; LoginFailed when they did not."""
        ...
