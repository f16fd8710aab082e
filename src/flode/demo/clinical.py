"""EpisodesOfCare, Encounters, Conditions and Observations built from the patients' stories."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from flode.demo._fhir import (
    ACT_CODE,
    LOINC,
    PARTICIPATION_TYPE,
    SNOMED,
    UCUM,
    Resource,
    coding,
    concept,
    reference,
    swedish_time,
)
from flode.demo.organizations import practitioner_reference, unit_reference
from flode.demo.stories import DIAGNOSES, Baseline, Diagnosis, Story, Visit

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

_CLASSES = {"AMB": "ambulatory", "IMP": "inpatient encounter", "EMER": "emergency"}


def _time(local: str) -> datetime:
    return datetime.strptime(local, "%Y-%m-%d %H:%M")


def _encounter(patient: Resource, number: int, visit: Visit) -> Resource:
    participants = [
        {
            "type": [
                concept(PARTICIPATION_TYPE, "PPRF", "primary performer")
                if position == 0
                else concept(PARTICIPATION_TYPE, "SPRF", "secondary performer")
            ],
            "individual": practitioner_reference(key),
        }
        for position, key in enumerate(visit.staff)
    ]
    period = {"start": swedish_time(_time(visit.start))}
    if visit.end is not None:
        period["end"] = swedish_time(_time(visit.end))
    return {
        "resourceType": "Encounter",
        "id": f"vgr-encounter-{patient['id'].removeprefix('vgr-patient-')}-{number}",
        "status": "finished" if visit.end is not None else "in-progress",
        "class": coding(ACT_CODE, visit.kind, _CLASSES[visit.kind]),
        "subject": reference(patient),
        "participant": participants,
        "period": period,
        "serviceProvider": unit_reference(visit.unit),
    }


def _condition(
    patient: Resource, number: int, diagnosis: Diagnosis, encounter: Resource, visit: Visit
) -> Resource:
    code, resolved = diagnosis.code, diagnosis.resolved
    display, text, chronic = DIAGNOSES[code]
    condition: Resource = {
        "resourceType": "Condition",
        "id": f"vgr-condition-{patient['id'].removeprefix('vgr-patient-')}-{number}",
        "clinicalStatus": concept(
            CONDITION_CLINICAL, *(("resolved", "Resolved") if resolved else ("active", "Active"))
        ),
        "verificationStatus": concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [
            concept(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")
            if chronic
            else concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
        ],
        "code": concept(SNOMED, code, display, text),
        "subject": reference(patient),
        "encounter": reference(encounter),
    }
    if resolved is not None:
        condition["abatementDateTime"] = resolved
    condition["recordedDate"] = swedish_time(_time(visit.start) + timedelta(minutes=20))
    condition["recorder"] = practitioner_reference(visit.staff[0])
    return condition


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


_VITAL_SIGNS = [concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")]
_LABORATORY = [concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory")]


def _measurements(
    visit: Visit, baseline: Baseline, rng: random.Random
) -> list[tuple[str, list[Resource], dict[str, Any], dict[str, Any]]]:
    """(id suffix, category, code, value element) for each measurement taken at the visit."""
    fever = visit.temperature is not None and visit.temperature >= 38.0
    result: list[tuple[str, list[Resource], dict[str, Any], dict[str, Any]]] = []
    if "bp" in visit.measure:
        systolic = baseline.systolic + rng.randint(-8, 8)
        diastolic = baseline.diastolic + rng.randint(-5, 5)
        components = [
            {
                "code": concept(LOINC, "8480-6", "Systolic blood pressure"),
                "valueQuantity": _quantity(systolic, "mmHg", "mm[Hg]"),
            },
            {
                "code": concept(LOINC, "8462-4", "Diastolic blood pressure"),
                "valueQuantity": _quantity(diastolic, "mmHg", "mm[Hg]"),
            },
        ]
        code = concept(LOINC, "85354-9", "Blood pressure panel with all children optional")
        result.append(
            ("bp", _VITAL_SIGNS, {**code, "text": "Blodtryck"}, {"component": components})
        )
    if "hr" in visit.measure:
        pulse = baseline.pulse + rng.randint(-6, 6) + (14 if fever else 0)
        result.append(
            (
                "hr",
                _VITAL_SIGNS,
                concept(LOINC, "8867-4", "Heart rate", "Puls"),
                {"valueQuantity": _quantity(pulse, "beats/minute", "/min")},
            )
        )
    if visit.temperature is not None:
        result.append(
            (
                "temp",
                _VITAL_SIGNS,
                concept(LOINC, "8310-5", "Body temperature", "Kroppstemperatur"),
                {"valueQuantity": _quantity(visit.temperature, "°C", "Cel")},
            )
        )
    if "weight" in visit.measure:
        weight = round(baseline.weight + rng.uniform(-1.5, 1.5), 1)
        result.append(
            (
                "weight",
                _VITAL_SIGNS,
                concept(LOINC, "29463-7", "Body weight", "Kroppsvikt"),
                {"valueQuantity": _quantity(weight, "kg", "kg")},
            )
        )
    if "hba1c" in visit.measure and baseline.hba1c is not None:
        hba1c = round(baseline.hba1c + rng.uniform(-0.5, 0.5), 1)
        result.append(
            (
                "hba1c",
                _LABORATORY,
                concept(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "HbA1c"),
                {"valueQuantity": _quantity(hba1c, "%", "%")},
            )
        )
    return result


def _observations(
    patient: Resource, encounter: Resource, visit: Visit, baseline: Baseline, rng: random.Random
) -> list[Resource]:
    taken = swedish_time(_time(visit.start) + timedelta(minutes=10))
    performer = [practitioner_reference(visit.staff[-1])]
    return [
        {
            "resourceType": "Observation",
            "id": f"vgr-observation-{encounter['id'].removeprefix('vgr-encounter-')}-{suffix}",
            "status": "final",
            "category": category,
            "code": code,
            "subject": reference(patient),
            "encounter": reference(encounter),
            "effectiveDateTime": taken,
            "performer": performer,
            **value,
        }
        for suffix, category, code, value in _measurements(visit, baseline, rng)
    ]


def _episodes(patient: Resource, story: Story) -> list[Resource]:
    """The patient's ongoing care: listed at the vårdcentral they visit (listning), and followed
    up for a chronic disease at the clinic that diagnosed it. Active EpisodesOfCare without an
    end, so the units keep a care relationship with the patient however old the visits grow
    (DOMAIN.md L1; docs/access-control.md)."""
    chronic = {
        story.visits[d.visit - 1].unit
        for d in story.diagnoses
        if DIAGNOSES[d.code][2] and d.resolved is None
    }
    started: dict[str, tuple[str, str]] = {}
    for visit in story.visits:
        if visit.unit.startswith("vc-"):
            started.setdefault(visit.unit, ("Listning på vårdcentral", visit.start))
        elif visit.unit in chronic and visit.kind != "EMER":
            started.setdefault(visit.unit, ("Uppföljning av kronisk sjukdom", visit.start))
    number = patient["id"].removeprefix("vgr-patient-")
    return [
        {
            "resourceType": "EpisodeOfCare",
            "id": f"vgr-episode-{number}-{position}",
            "status": "active",
            "type": [{"text": text}],
            "patient": reference(patient),
            "managingOrganization": unit_reference(unit),
            "period": {"start": swedish_time(_time(start))},
        }
        for position, (unit, (text, start)) in enumerate(started.items(), start=1)
    ]


def clinical_resources(patient: Resource, story: Story, rng: random.Random) -> list[Resource]:
    """The patient's EpisodesOfCare, Encounters, then Conditions, then Observations."""
    encounters = [
        _encounter(patient, number, visit) for number, visit in enumerate(story.visits, start=1)
    ]
    conditions = [
        _condition(
            patient,
            number,
            diagnosis,
            encounters[diagnosis.visit - 1],
            story.visits[diagnosis.visit - 1],
        )
        for number, diagnosis in enumerate(story.diagnoses, start=1)
    ]
    observations = [
        observation
        for encounter, visit in zip(encounters, story.visits, strict=True)
        for observation in _observations(patient, encounter, visit, story.baseline, rng)
    ]
    return [*_episodes(patient, story), *encounters, *conditions, *observations]
