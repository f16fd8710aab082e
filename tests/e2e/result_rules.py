"""What the result parameters of https://hl7.org/fhir/R4/search.html#return make of a set of
matches: sort order (#sort), included resources (#include), summaries and elements (#summary,
#elements), and the Patient compartment (compartmentdefinition-patient.html). Plain Python over
the JSON the server was sent; nothing here comes from Flöde.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .evaluator import Evaluator
from .matching import date_ranges, normalise, reference_parts, select, strings, tokens
from .parameters import PARAMETERS

Resource = dict[str, Any]
Key = tuple[str, str]

# ---------------------------------------------------------------------------------------------
# _sort: "the sort is based on the item in the set of multiple parameters that comes earliest in
# the specified sort order": the lowest value ascending, the highest descending — for a date,
# the start of its range ascending and the end descending.


def sort_value(evaluator: Evaluator, resource: Resource, code: str, descending: bool) -> Any:
    param = PARAMETERS[(resource["resourceType"], code)]
    values = evaluator.values(resource, param)
    keys: list[Any]
    if param.type == "date":
        ranges = [r for v in values for r in date_ranges(None, v)]
        keys = [high if descending else low for low, high in ranges]
    elif param.type == "string":
        keys = [normalise(s) for v in values for s in strings(v)]
    elif param.type == "token":
        keys = [t.code for v in values for t in tokens(v) if t.code is not None]
    elif param.type == "quantity":
        keys = [Decimal(v["value"]) for v in values if isinstance(v, dict) and "value" in v]
    else:
        raise AssertionError(f"no sort order for {param.type} parameters here")
    assert keys, f"{resource['resourceType']}/{resource['id']} has no {code}: pick another case"
    return max(keys) if descending else min(keys)


class Reversed:
    """Orders the opposite way of the value it wraps (for descending keys)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: Reversed) -> bool:
        return bool(self.value > other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reversed) and bool(self.value == other.value)

    def __hash__(self) -> int:
        return hash(self.value)


def sort_groups(evaluator: Evaluator, resources: Iterable[Resource], sort: str) -> list[set[str]]:
    """The resources' ids in the order `_sort` asks for, as groups of ties (their order among
    themselves is the server's choice)."""
    keys = [(k.removeprefix("-"), k.startswith("-")) for k in sort.split(",")]

    def key(resource: Resource) -> tuple[Any, ...]:
        return tuple(
            Reversed(sort_value(evaluator, resource, code, down))
            if down
            else sort_value(evaluator, resource, code, down)
            for code, down in keys
        )

    groups: list[tuple[tuple[Any, ...], set[str]]] = []
    for resource in sorted(resources, key=key):
        k = key(resource)
        if groups and groups[-1][0] == k:
            groups[-1][1].add(resource["id"])
        else:
            groups.append((k, {resource["id"]}))
    return [ids for _, ids in groups]


# ---------------------------------------------------------------------------------------------
# _include and _revinclude, with :iterate.


def _targets(evaluator: Evaluator, resource: Resource, spec: str) -> set[Key]:
    source, code, *target = spec.split(":")
    if resource["resourceType"] != source:
        return set()
    found = set()
    for value in evaluator.values(resource, PARAMETERS[(source, code)]):
        parts = reference_parts(value)
        if parts and (not target or parts[0] == target[0]) and evaluator.lookup(*parts):
            found.add(parts)
    return found


def included(evaluator: Evaluator, matches: set[Key], params: list[tuple[str, str]]) -> set[Key]:
    """The resources `_include`/`_revinclude` add to `matches` (search.html#include): the ones
    the matches refer to, or that refer to the matches, through the named parameter; the
    `:iterate` forms apply to the included resources as well, until nothing new turns up."""
    found: set[Key] = set()
    rules = [
        (name, value) for name, value in params if name.startswith(("_include", "_revinclude"))
    ]
    frontier = set(matches)
    first = True
    while frontier:
        new: set[Key] = set()
        for name, spec in rules:
            if not first and not name.endswith(":iterate"):
                continue
            if name.startswith("_include"):
                for key in frontier:
                    resource = evaluator.lookup(*key)
                    assert resource is not None
                    new |= _targets(evaluator, resource, spec)
            else:
                for other in evaluator.resources:
                    if _targets(evaluator, other, spec) & frontier:
                        new.add((other["resourceType"], other["id"]))
        frontier = new - found - matches
        found |= frontier
        first = False
    return found


# ---------------------------------------------------------------------------------------------
# _summary and _elements: the elements R4 marks as summary (isSummary) and as mandatory
# (min 1) at the top level of the types these tests subset.

SUMMARY = {
    "Patient": {"id", "meta", "implicitRules", "identifier", "active", "name", "telecom",
                "gender", "birthDate", "deceased[x]", "address", "managingOrganization", "link"},
    "Observation": {"id", "meta", "implicitRules", "identifier", "basedOn", "partOf", "status",
                    "code", "subject", "focus", "encounter", "effective[x]", "issued",
                    "performer", "value[x]", "hasMember", "derivedFrom", "component"},
    "Encounter": {"id", "meta", "implicitRules", "identifier", "status", "class", "type",
                  "serviceType", "subject", "episodeOfCare", "participant", "appointment",
                  "reasonCode", "reasonReference", "diagnosis"},
}  # fmt: skip
MANDATORY = {"Patient": set(), "Observation": {"status", "code"}, "Encounter": {"status", "class"}}


def element_of(key: str, names: set[str]) -> bool:
    """Whether a JSON key is one of the elements named (`deceased[x]` covers `deceasedDateTime`)."""
    return key in names or any(
        n.endswith("[x]") and key.startswith(n[:-3]) and key[len(n) - 3 :][:1].isupper()
        for n in names
    )


SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


def is_subsetted(resource: Resource) -> bool:
    tags = resource.get("meta", {}).get("tag", [])
    return any((t.get("system"), t.get("code")) == SUBSETTED for t in tags)


# ---------------------------------------------------------------------------------------------
# The Patient compartment: the parameters compartmentdefinition-patient names for each type
# these patients have resources of, as element paths.

PATIENT_COMPARTMENT = {
    "AllergyIntolerance": ("patient", "recorder", "asserter"),
    "CarePlan": ("subject", "activity.detail.performer"),
    "Claim": ("patient", "payee.party"),
    "Condition": ("subject", "asserter"),
    "DiagnosticReport": ("subject",),
    "Encounter": ("subject",),
    "ExplanationOfBenefit": ("patient", "payee.party"),
    "Goal": ("subject",),
    "ImagingStudy": ("subject",),
    "Immunization": ("patient",),
    "MedicationRequest": ("subject",),
    "Observation": ("subject", "performer"),
    "Procedure": ("subject", "performer.actor"),
    "Patient": ("link.other",),
}


def in_patient_compartment(resource: Resource, patient_id: str) -> bool:
    paths = PATIENT_COMPARTMENT.get(resource["resourceType"], ())
    return any(
        reference_parts(value) == ("Patient", patient_id)
        for path in paths
        for _, value in select(resource, path)
    )
