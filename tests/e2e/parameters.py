"""The R4 search parameters the Synthea tests use, transcribed from their definitions
(https://hl7.org/fhir/R4/searchparameter-registry.html): type, path and reference targets.

Paths are the evaluator's small dialect of the definitions' FHIRPath: `Observation.value as
Quantity` is `value[x]:Quantity`; `subject.where(resolve() is Patient)` is `subject` with the
target Patient.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    type: str
    path: str
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()
    """composite: (type, path within the element) of each component, in order."""


def _patient(path: str = "subject") -> Param:
    return Param("reference", path, ("Patient",))


CODE_VALUE_QUANTITY = (("token", "code"), ("quantity", "value[x]:Quantity"))

PARAMETERS: dict[tuple[str, str], Param] = {
    # Patient
    ("Patient", "name"): Param("string", "name"),
    ("Patient", "family"): Param("string", "name.family"),
    ("Patient", "given"): Param("string", "name.given"),
    ("Patient", "address"): Param("string", "address"),
    ("Patient", "address-city"): Param("string", "address.city"),
    ("Patient", "address-postalcode"): Param("string", "address.postalCode"),
    ("Patient", "gender"): Param("token", "gender"),
    ("Patient", "identifier"): Param("token", "identifier"),
    ("Patient", "birthdate"): Param("date", "birthDate"),
    ("Patient", "death-date"): Param("date", "deceased[x]:DateTime"),
    # Practitioner, Organization
    ("Practitioner", "name"): Param("string", "name"),
    ("Practitioner", "family"): Param("string", "name.family"),
    ("Practitioner", "gender"): Param("token", "gender"),
    ("Practitioner", "identifier"): Param("token", "identifier"),
    ("Organization", "name"): Param("string", "name | alias"),
    ("Organization", "address-city"): Param("string", "address.city"),
    ("Organization", "type"): Param("token", "type"),
    # Observation
    ("Observation", "code"): Param("token", "code"),
    ("Observation", "category"): Param("token", "category"),
    ("Observation", "status"): Param("token", "status"),
    ("Observation", "combo-code"): Param("token", "code | component.code"),
    ("Observation", "component-code"): Param("token", "component.code"),
    ("Observation", "value-concept"): Param("token", "value[x]:CodeableConcept"),
    ("Observation", "date"): Param("date", "effective[x]"),
    ("Observation", "value-quantity"): Param("quantity", "value[x]:Quantity"),
    ("Observation", "component-value-quantity"): Param("quantity", "component.value[x]:Quantity"),
    ("Observation", "subject"): Param(
        "reference", "subject", ("Group", "Device", "Patient", "Location")
    ),
    ("Observation", "patient"): _patient(),
    ("Observation", "encounter"): Param("reference", "encounter", ("Encounter", "EpisodeOfCare")),
    ("Observation", "code-value-quantity"): Param("composite", "", components=CODE_VALUE_QUANTITY),
    ("Observation", "component-code-value-quantity"): Param(
        "composite", "component", components=CODE_VALUE_QUANTITY
    ),
    # Encounter
    ("Encounter", "date"): Param("date", "period"),
    ("Encounter", "class"): Param("token", "class"),
    ("Encounter", "type"): Param("token", "type"),
    ("Encounter", "status"): Param("token", "status"),
    ("Encounter", "reason-code"): Param("token", "reasonCode"),
    ("Encounter", "subject"): Param("reference", "subject", ("Group", "Patient")),
    ("Encounter", "patient"): _patient(),
    ("Encounter", "service-provider"): Param("reference", "serviceProvider", ("Organization",)),
    ("Encounter", "practitioner"): Param("reference", "participant.individual", ("Practitioner",)),
    # Condition
    ("Condition", "code"): Param("token", "code"),
    ("Condition", "clinical-status"): Param("token", "clinicalStatus"),
    ("Condition", "verification-status"): Param("token", "verificationStatus"),
    ("Condition", "onset-date"): Param("date", "onset[x]:DateTime | onset[x]:Period"),
    ("Condition", "abatement-date"): Param("date", "abatement[x]:DateTime | abatement[x]:Period"),
    ("Condition", "recorded-date"): Param("date", "recordedDate"),
    ("Condition", "subject"): Param("reference", "subject", ("Group", "Patient")),
    ("Condition", "patient"): _patient(),
    ("Condition", "encounter"): Param("reference", "encounter", ("Encounter",)),
    # Others
    ("Immunization", "vaccine-code"): Param("token", "vaccineCode"),
    ("Immunization", "date"): Param("date", "occurrence[x]"),
    ("Immunization", "patient"): _patient("patient"),
    ("MedicationRequest", "code"): Param("token", "medication[x]:CodeableConcept"),
    ("MedicationRequest", "status"): Param("token", "status"),
    ("MedicationRequest", "authoredon"): Param("date", "authoredOn"),
    ("MedicationRequest", "patient"): _patient(),
    ("Procedure", "code"): Param("token", "code"),
    ("Procedure", "date"): Param("date", "performed[x]"),
    ("Procedure", "patient"): _patient(),
    ("DiagnosticReport", "code"): Param("token", "code"),
    ("DiagnosticReport", "result"): Param("reference", "result", ("Observation",)),
    ("DiagnosticReport", "patient"): _patient(),
    ("CarePlan", "category"): Param("token", "category"),
    ("CarePlan", "status"): Param("token", "status"),
    ("CarePlan", "date"): Param("date", "period"),
    ("CarePlan", "patient"): _patient(),
    ("Goal", "lifecycle-status"): Param("token", "lifecycleStatus"),
    ("AllergyIntolerance", "code"): Param("token", "code | reaction.substance"),
    ("AllergyIntolerance", "criticality"): Param("token", "criticality"),
    ("AllergyIntolerance", "patient"): _patient("patient"),
    ("Claim", "created"): Param("date", "created"),
    ("Claim", "patient"): _patient("patient"),
    ("Claim", "provider"): Param(
        "reference", "provider", ("Practitioner", "Organization", "PractitionerRole")
    ),
}
