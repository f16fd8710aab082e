"""Protected identity (sekretessmarkering, OSL 22:1; DOMAIN.md L13, docs/protected-identity.md):
a Patient whose `meta.security` carries the Swedish security label for protected personal data
leaves Flöde with its demographics masked — in every response, notification and export — except
for those who may see them (`sees_protected`).

Masked: the name becomes one HumanName `{"use": "anonymous", "text": "Skyddad uppgift"}` (the
wording HL7 Sweden's examples and Skatteverket use), and `telecom`, `address`, `photo`,
`contact`, the narrative (`text`, which repeats them) and the birth-place and mother's-maiden-name
extensions are removed. The identifiers (personnummer), gender and birth date stay: care must
still identify the patient. `meta.security` gains `v3-ObservationValue#MASKED`, so a client can
tell a masked patient from one without an address. Patients inside `contained` are masked when
they, or the resource holding them, carry the label.

Most resources carry no label: `Masking.text` looks for the label's codes in the stored JSON
text and hands ordinary resources back untouched — the same string, not parsed — and parses,
checks and masks only the few that mention a code.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flode.access import credentials
from flode.access.policy import scopes_of
from flode.context import RequestContext
from flode.fhir import json
from flode.store.records import Version
from flode.store.search import Hidden
from flode.store.sql import Args

LABEL_SYSTEMS = frozenset(
    {
        "http://electronichealth.se/CodeSystem/SecurityLabel",
        # The CodeSystem as HL7 Sweden's basprofiler publish it (SEBasePatient's examples).
        "http://hl7.se/fhir/ig/base/CodeSystem/SecurityLabel",
    }
)
LABEL_CODES = ("protected-information", "sekretessmarkering", "skyddadFolkbokforing")
MASKED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "MASKED",
    "display": "masked",
}
MASKED_NAME = {"use": "anonymous", "text": "Skyddad uppgift"}
REMOVED = ("text", "telecom", "address", "photo", "contact")
REMOVED_EXTENSIONS = frozenset(
    {
        "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
        "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
    }
)


def own_patient(ctx: RequestContext) -> str | None:
    """The Patient the reader is: the launch patient of a token with `patient/` scopes that no
    clinician uses (no employee HSA-id, and a `fhirUser`, if any, naming that Patient). A
    clinician's app launched in a patient's context is not the patient."""
    patient = ctx.patient
    if patient is None or ctx.user_hsa_id is not None:
        return None
    if ctx.fhir_user is not None and not ctx.fhir_user.endswith(f"Patient/{patient}"):
        return None
    if not any(grant.context == "patient" for grant in scopes_of(ctx).grants):
        return None
    return patient


def sees_protected(
    ctx: RequestContext, units: Collection[str], patient_id: str | None = None
) -> bool:
    """Whether the request sees the demographics of a patient with protected identity —
    Patient/`patient_id`, or with None every such patient: Flöde itself (a trusted context),
    a request from one of the care units `units` (Config.protected_identity_units), and a
    patient reading their own record."""
    if ctx.trusted:
        return True
    if ctx.care_unit_hsa_id is not None and ctx.care_unit_hsa_id in units:
        return True
    return patient_id is not None and patient_id == own_patient(ctx)


def mentions_label(content: str) -> bool:
    """Whether stored JSON may carry the label: one of its codes occurs in it. Flöde stores
    JSON as orjson writes it (no escaped ASCII), so a label cannot hide from this."""
    return any(code in content for code in LABEL_CODES)


def labelled(resource: Mapping[str, Any]) -> bool:
    """Whether the resource's own `meta.security` carries the label."""
    meta = resource.get("meta")
    security = meta.get("security") if isinstance(meta, dict) else None
    if not isinstance(security, list):
        return False
    return any(
        isinstance(coding, dict)
        and coding.get("system") in LABEL_SYSTEMS
        and coding.get("code") in LABEL_CODES
        for coding in security
    )


def mask_patient(patient: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Patient with its demographics masked (the module's docstring says which)."""
    out: dict[str, Any] = {}
    for key, value in patient.items():
        if key in REMOVED:
            continue
        if key == "name":
            out[key] = [dict(MASKED_NAME)]
        elif key == "extension" and isinstance(value, list):
            kept = [
                e for e in value if not (isinstance(e, dict) and e.get("url") in REMOVED_EXTENSIONS)
            ]
            if kept:
                out[key] = kept
        else:
            out[key] = value
    out.setdefault("name", [dict(MASKED_NAME)])
    meta = dict(patient.get("meta") or {})
    security = [c for c in meta.get("security") or () if isinstance(c, dict)]
    if not any(c.get("system") == MASKED["system"] and c.get("code") == "MASKED" for c in security):
        security.append(dict(MASKED))
    meta["security"] = security
    out["meta"] = meta
    return out


def _walk(node: Any, inherited: bool) -> Any:
    """`node` with every protected Patient in it masked; `node` itself when none is. A
    resource's `contained` resources inherit its label (`inherited`); other nested resources
    (a stored Bundle's entries, a Parameters' parts) stand on their own label."""
    if isinstance(node, list):
        items = [_walk(item, inherited) for item in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    if not isinstance(node, dict):
        return node
    resource = isinstance(node.get("resourceType"), str)
    protected = resource and (inherited or labelled(node))
    changed: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict | list):
            walked = _walk(value, protected if resource and key == "contained" else False)
            if walked is not value:
                changed[key] = walked
    out = {**node, **changed} if changed else node
    if protected and node.get("resourceType") == "Patient":
        return mask_patient(out)
    return out


def mask(resource: Any) -> Any:
    """The resource with its demographics masked if it is a protected Patient, and those of
    every protected Patient it holds; the resource itself (the same object) when nothing is."""
    return _walk(resource, False)


@dataclass(frozen=True, slots=True)
class Masking:
    """What one reader sees of patients with protected identity: all of them (`everything`),
    or only themselves (`own_patient`, the Patient the reader is), the rest masked."""

    everything: bool = False
    own_patient: str | None = None
    secrets: bool = True
    """Hide the secrets stored in resources too (flode.access.credentials): for everyone but
    Flöde itself."""

    @classmethod
    def of(cls, ctx: RequestContext, units: Collection[str]) -> Masking:
        """For the request `ctx` in a server whose allowed care units are `units`."""
        return cls(sees_protected(ctx, units), own_patient(ctx), not ctx.trusted)

    def resource(self, resource: Any) -> Any:
        """The parsed resource as the reader may see it (the same object when unchanged)."""
        if self.secrets:
            resource = credentials.redact(resource)
        if self.everything:
            return resource
        if (
            self.own_patient is not None
            and isinstance(resource, dict)
            and resource.get("resourceType") == "Patient"
            and resource.get("id") == self.own_patient
        ):
            return resource  # the patient's own record, contained resources and all
        return mask(resource)

    def text(self, content: str) -> str:
        """The stored JSON as the reader may see it: `content` itself, unparsed, unless it
        mentions a label code and holds a protected Patient the reader may not see."""
        if (self.everything or not mentions_label(content)) and not (
            self.secrets and credentials.mentions(content)
        ):
            return content
        resource = json.loads(content)
        masked = self.resource(resource)
        return content if masked is resource else json.dumps(masked).decode()

    def version(self, version: Version) -> Version:
        """The stored version as the reader may see it (the same record when unchanged)."""
        if version.content is None:
            return version
        content = self.text(version.content)
        return version if content is version.content else replace(version, content=content)

    def versions(self, versions: Iterable[Version]) -> list[Version]:
        return [self.version(v) for v in versions]


MASK_ALL = Masking()
"""A reader who sees no protected patient (`flode export` unless told otherwise)."""
UNMASKED = Masking(everything=True, secrets=False)
"""A reader who sees every patient as stored."""


SEARCHED_DEMOGRAPHICS = frozenset(
    {
        "name", "given", "family", "phonetic", "telecom", "phone", "email", "address",
        "address-city", "address-country", "address-postalcode", "address-state",
        "address-use", "_text", "_content",
    }
)  # fmt: skip
"""The Patient search parameters that search what masking hides (name, telecom, address and
the narrative): a match by one of them would tell what the reader may not see."""


def search_hidden(masking: Masking) -> Hidden | None:
    """What a search by the reader may not match (flode.store.search.Hidden): Patients with
    protected identity, by their masked demographics, unless the reader sees them (the patient
    their own). A search for `Patient?address-city=Kiruna` (or a chain or `_has` through such a
    parameter) then finds a protected patient only for those who see where they live."""
    if masking.everything:
        return None
    own = masking.own_patient

    def hidden(resource_type: str, parameter: str, args: Args) -> str | None:
        # Full text is searched across types too (`GET [base]?_content=…`), compiled once for
        # them all: it is held to the rule whatever type it was compiled for.
        if parameter not in SEARCHED_DEMOGRAPHICS or (
            resource_type != "Patient" and parameter not in ("_text", "_content")
        ):
            return None
        seen = (
            "r.resource_type <> 'Patient' OR NOT EXISTS (SELECT 1 FROM search_token l "
            "WHERE l.resource_pk = r.pk AND l.resource_type = 'Patient' "
            f"AND l.param = '_security' AND l.system = ANY({args.add(sorted(LABEL_SYSTEMS))}"
            f"::text[]) AND l.code = ANY({args.add(list(LABEL_CODES))}::text[])"
        )
        own_id = f" OR r.id = {args.add(own)}" if own is not None else ""
        return f"({seen}){own_id})"

    return hidden
