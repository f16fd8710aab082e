"""The demo region's side of authorization: its staff as users of the development login (one of
them with two commissions, to choose between at login), and two registered modules to try the
flows with (seeded by `make run` on a first start); the demo laboratory acts for one of the
region's care units.

The staff, their care units and the care provider come from flode.demo.organizations. Their
personnummer are Skatteverket's published test numbers (never assigned to real people); the
commission HSA-ids are made up for the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from starlette.requests import Request
from starlette.responses import Response

from flode.auth import modules
from flode.auth.forms import read_form
from flode.auth.identity import Clinician, Commission, LoginFailed
from flode.auth.modules import Declaration, InvalidModule, Module
from flode.auth.pages import login_page
from flode.demo.organizations import PRACTITIONER_ROLES, PRACTITIONERS, PROVIDER, UNITS

# Employee HSA-id → (personnummer, commission HSA-id).
_STAFF_IDS = {
    "SE2321000131-P000000000111": ("197803142384", "SE2321000131-C000000000111"),
    "SE2321000131-P000000000112": ("197408302391", "SE2321000131-C000000000112"),
    "SE2321000131-P000000000121": ("197610102399", "SE2321000131-C000000000121"),
    "SE2321000131-P000000000122": ("197702022380", "SE2321000131-C000000000122"),
    "SE2321000131-P000000000131": ("197703012380", "SE2321000131-C000000000131"),
    "SE2321000131-P000000000141": ("197704122386", "SE2321000131-C000000000141"),
}


# Employee HSA-id → a second commission (HSA-id, unit key): a physician who also works shifts at
# another unit, and so chooses at login which commission the session is for.
_SECOND_COMMISSIONS = {
    "SE2321000131-P000000000131": ("SE2321000131-C000000000135", "med5-sas"),
}


def _hsa_id(resource: dict[str, Any]) -> str:
    return str(resource["identifier"][0]["value"])


def demo_users() -> list[tuple[Clinician, str]]:
    """Every member of the demo staff as a clinician, with what they do (for the login page)."""
    practitioners = {p["id"]: p for p in PRACTITIONERS.values()}
    units = {u["id"]: u for u in UNITS.values()}
    users = []
    for role in PRACTITIONER_ROLES:
        practitioner = practitioners[role["practitioner"]["reference"].split("/", 1)[1]]
        unit = units[role["organization"]["reference"].split("/", 1)[1]]
        hsa = _hsa_id(practitioner)
        personnummer, commission = _STAFF_IDS[hsa]
        name = practitioner["name"][0]
        does = role["code"][0]["text"]
        commissions: tuple[Commission, ...] = ()
        if hsa in _SECOND_COMMISSIONS:
            second, key = _SECOND_COMMISSIONS[hsa]
            commissions = tuple(
                Commission(c, _hsa_id(u), _hsa_id(PROVIDER), f"{does}, {u['name']}")
                for c, u in ((commission, unit), (second, UNITS[key]))
            )
        clinician = Clinician(
            hsa_id=hsa,
            name=f"{' '.join(name['given'])} {name['family']}",
            personnummer=personnummer,
            commission_hsa_id=commission,
            care_unit_hsa_id=_hsa_id(unit),
            care_provider_hsa_id=_hsa_id(PROVIDER),
            practitioner_id=practitioner["id"],
            commissions=commissions,
        )
        users.append((clinician, f"{does}, {unit['name']}"))
    return users


class DemoLogin:
    """The development identity provider: a page listing the demo staff, no password."""

    def __init__(self) -> None:
        self.users = demo_users()
        self._by_hsa = {user.hsa_id: user for user, _ in self.users}

    async def start(
        self, request: Request, pending: str, client: Module, scopes: Sequence[str]
    ) -> Response:
        return login_page(client.name, scopes, self.users, pending)

    async def complete(self, request: Request) -> tuple[Clinician, str]:
        if request.method != "POST":
            raise LoginFailed("Log in with the form on the login page.")
        form = await read_form(request)
        user = self._by_hsa.get(form.get("user", ""))
        if user is None:
            raise LoginFailed("Choose one of the listed users.")
        return user, form.get("request", "")


JOURNAL = "demo-journal"
LAB = "demo-lab"
JOURNAL_REDIRECT = "http://127.0.0.1:8765/callback"
LAB_TOPIC = "http://flode.example.org/SubscriptionTopic/lab-order"


def _journal() -> Module:
    return Module(
        client_id=JOURNAL,
        name="Journal (demo)",
        vendor="Flöde demo",
        scopes=(
            "openid",
            "fhirUser",
            "launch",
            "launch/patient",
            "offline_access",
            "online_access",
            "patient/*.cruds",
            "user/*.cruds",
        ),
        redirect_uris=(JOURNAL_REDIRECT, "http://localhost:8765/callback"),
        declaration=Declaration(frozenset({"*"}), frozenset({"*"})),
    )


def lab_unit() -> dict[str, Any]:
    """The care unit the demo laboratory acts for: the region's laboratory, or its first unit
    when it has none."""
    for unit in UNITS.values():
        kinds = " ".join(str(t.get("text", "")) for t in unit.get("type", []))
        if "laborator" in f"{unit['name']} {kinds}".lower():
            return unit
    return next(iter(UNITS.values()))


def _lab(public_jwks: dict[str, Any]) -> Module:
    return Module(
        client_id=LAB,
        name="Laboratory (demo)",
        vendor="Flöde demo",
        jwks=public_jwks,
        scopes=(
            "system/Patient.rs",
            "system/ServiceRequest.rs",
            "system/Observation.cruds",
            "system/DiagnosticReport.cruds",
        ),
        declaration=Declaration(
            reads=frozenset({"Patient", "ServiceRequest"}),
            writes=frozenset({"Observation", "DiagnosticReport"}),
            topics=frozenset({LAB_TOPIC}),
        ),
        care_unit_hsa_id=_hsa_id(lab_unit()),
        care_provider_hsa_id=_hsa_id(PROVIDER),
    )


def lab_key_path(data_dir: Path) -> Path:
    return data_dir / "demo" / f"{LAB}.private.jwk"


async def seed_modules(conn: modules.Connection, data_dir: Path) -> list[str]:
    """Register the demo modules that are not registered yet; the demo laboratory's private key
    is written to `DATA_DIR/demo/demo-lab.private.jwk` for trying the backend flow."""
    added = []
    if await modules.get(conn, JOURNAL) is None:
        with contextlib.suppress(InvalidModule):  # another server was quicker
            await modules.add(conn, _journal())
            added.append(JOURNAL)
    if await modules.get(conn, LAB) is None:
        key = ECKey.generate_key("P-384", parameters={"alg": "ES384", "use": "sig"}, private=True)
        key.ensure_kid()
        with contextlib.suppress(InvalidModule):
            await modules.add(conn, _lab({"keys": [key.as_dict(private=False)]}))
            _write_private(lab_key_path(data_dir), key)
            added.append(LAB)
    return added


def _write_private(path: Path, key: ECKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(key.as_dict(private=True), file)
