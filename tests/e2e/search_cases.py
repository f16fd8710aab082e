"""Search queries over the Synthea patients, chosen from the data so that they find something
(and not everything): real codes, names, dates and values of the loaded resources.

Each case is `Type?name=value&…` as a client writes it, before URL encoding; the tests add the
tag that keeps other tests' resources out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from .synthea import Dataset

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
SSN = "http://hl7.org/fhir/sid/us-ssn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CVX = "http://hl7.org/fhir/sid/cvx"

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _by_count(values: list[str]) -> list[str]:
    """Most frequent first; ties in sorted order, so the choice is the same every run."""
    counts = Counter(values)
    return sorted(counts, key=lambda v: (-counts[v], v))


def _first_coding(concept: dict[str, Any]) -> dict[str, Any]:
    coding: dict[str, Any] = concept["coding"][0]
    return coding


def _utc(instant: str) -> str:
    return instant.replace("+00:00", "Z")


def _middle(items: list[Any]) -> Any:
    return items[len(items) // 2]


def _sorted(dataset: Dataset, resource_type: str) -> list[dict[str, Any]]:
    return sorted(dataset.of_type(resource_type), key=lambda r: str(r["id"]))


def token_cases(dataset: Dataset) -> Iterator[str]:
    observations = _sorted(dataset, "Observation")
    codes = _by_count([_first_coding(o["code"])["code"] for o in observations])
    common, medium, rare = codes[0], codes[len(codes) // 3], codes[-1]
    for code in (common, medium, rare):
        yield f"Observation?code={LOINC}|{code}"
        yield f"Observation?code={code}"
    yield f"Observation?code=|{common}"  # every Synthea coding has a system: nothing
    yield f"Observation?code={LOINC}|"
    yield f"Observation?code={SNOMED}|{common}"
    yield f"Observation?code={common},{rare}"
    yield f"Observation?code={LOINC}|{medium},{LOINC}|{rare}"
    yield f"Observation?code:not={common}"
    yield f"Observation?code:not={LOINC}|{medium}"
    yield "Observation?code:text=body"
    yield "Observation?code:text=Body Weight"
    yield "Observation?code:text=hemoglobin a1c"
    yield "Observation?code:text=weight"
    yield "Observation?category=vital-signs"
    yield f"Observation?category={OBSERVATION_CATEGORY}|laboratory"
    yield "Observation?category:not=vital-signs"
    yield "Observation?status=final"
    yield "Observation?combo-code=8480-6"
    yield f"Observation?component-code={LOINC}|8462-4"
    yield f"Observation?value-concept={SNOMED}|266919005"
    yield "Observation?value-concept:text=never"

    conditions = _sorted(dataset, "Condition")
    condition_codes = _by_count([_first_coding(c["code"])["code"] for c in conditions])
    yield "Condition?clinical-status=active"
    yield f"Condition?clinical-status={CONDITION_CLINICAL}|resolved"
    yield "Condition?clinical-status:not=resolved"
    yield "Condition?verification-status=confirmed"
    yield f"Condition?code={SNOMED}|{condition_codes[0]}"
    yield f"Condition?code={condition_codes[1]},{condition_codes[2]}"
    yield "Condition?code:text=acute"

    yield "Patient?gender=female"
    yield "Patient?gender=male"
    yield "Patient?gender:not=female"
    patient = _middle(_sorted(dataset, "Patient"))
    ssn = next(i["value"] for i in patient["identifier"] if i.get("system") == SSN)
    yield f"Patient?identifier={ssn}"
    yield f"Patient?identifier={SSN}|{ssn}"
    yield f"Patient?identifier={SSN}|"
    yield f"Patient?identifier=https://github.com/synthetichealth/synthea|{patient['identifier'][0]['value']}"
    yield f"Patient?identifier:of-type={V2_0203}|SS|{ssn}"
    yield f"Patient?identifier:of-type={V2_0203}|DL|{ssn}"
    yield "Patient?identifier:text=driver"

    yield "Encounter?class=EMER"
    yield f"Encounter?class={ACT_CODE}|AMB"
    encounter_types = _by_count(
        [_first_coding(t)["code"] for e in dataset.of_type("Encounter") for t in e["type"]]
    )
    yield f"Encounter?type={SNOMED}|{encounter_types[1]}"
    yield "Encounter?reason-code=444814009"
    yield "Encounter?reason-code:not=444814009"  # with those that have no reason at all
    yield f"Immunization?vaccine-code={CVX}|140"
    yield "Immunization?vaccine-code=113,52"
    medications = _by_count(
        [
            _first_coding(m["medicationCodeableConcept"])["code"]
            for m in dataset.of_type("MedicationRequest")
        ]
    )
    yield f"MedicationRequest?code=http://www.nlm.nih.gov/research/umls/rxnorm|{medications[0]}"
    yield "MedicationRequest?status=active"
    yield "Organization?type=prov"
    yield "Practitioner?gender=female"
    yield "Goal?lifecycle-status=accepted"
    yield "AllergyIntolerance?code=91934008"
    yield "CarePlan?status=active"
    ids = [p["id"] for p in _sorted(dataset, "Patient")]
    yield f"Patient?_id={ids[0]},{ids[3]}"
    yield f"Patient?_id={ids[5]}&gender=male"


def string_cases(dataset: Dataset) -> Iterator[str]:
    yield "Patient?family=Ord"
    yield "Patient?family=ordonez"
    yield "Patient?family=ORDÓÑEZ"
    yield "Patient?family:exact=Ordóñez"
    yield "Patient?family:exact=ordóñez"
    yield "Patient?family:exact=Ordonez"
    yield "Patient?family:contains=ÑE"
    yield "Patient?family:contains=er"
    yield "Patient?family=Schuster"  # a maiden name
    yield "Patient?family=K"
    yield "Patient?family=Kr,Ke"
    yield "Patient?family=K&family=Kerl"
    yield "Patient?given=agustin"
    yield "Patient?given:exact=Agustin"
    yield "Patient?name=Mr"
    yield "Patient?name=mrs"
    yield "Patient?name=al"
    yield "Patient?name:contains=ust"
    yield "Patient?name:exact=Ms."
    yield "Patient?address-city=Bos"
    yield "Patient?address-city:exact=boston"
    yield "Patient?address-city:contains=borough"
    yield "Patient?address=Massachusetts"
    yield "Patient?address=021"
    yield "Patient?address-postalcode=01"
    yield "Organization?name=boston"
    yield "Organization?name:contains=hospital"
    yield "Organization?name=BETH ISRAEL"
    yield "Organization?address-city=east"
    yield "Organization?name=boston children's"
    yield "Organization?name:contains=walk-in"
    # A comma inside a value is escaped (search.html#escaping).
    yield "Organization?name:exact=SOUTHCOAST HOSPITAL GROUP\\, INC"
    yield "Organization?name=southcoast hospital group\\, inc,noble"
    yield "Practitioner?name=dr"
    yield "Practitioner?family=k"


def _observation_instants(dataset: Dataset) -> list[str]:
    return sorted({_utc(o["effectiveDateTime"]) for o in dataset.of_type("Observation")})


def date_cases(dataset: Dataset) -> Iterator[str]:
    instant = _middle(_observation_instants(dataset))  # e.g. 2012-05-07T03:33:15Z
    for prefix in PREFIXES:
        for value in (instant[:4], instant[:7], instant[:10], instant):
            yield f"Observation?date={prefix}{value}"
    yield f"Observation?date={instant[:16]}Z"  # minute precision
    yield f"Observation?date=ge{instant[:4]}&date=lt{int(instant[:4]) + 2}"
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    later = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    yield f"Observation?date={later}"  # the same instant written in another time zone

    birth = _middle(sorted(p["birthDate"] for p in dataset.of_type("Patient")))
    for prefix in PREFIXES:
        for value in (birth[:4], birth[:7], birth):
            yield f"Patient?birthdate={prefix}{value}"

    # A date-only value is a whole day: a moment in it neither equals it nor starts after it.
    for prefix in ("eq", "gt", "lt", "ge", "le", "sa", "eb"):
        yield f"Patient?birthdate={prefix}{birth}T12:00:00Z"

    encounters = sorted(dataset.of_type("Encounter"), key=lambda e: str(e["period"]["start"]))
    encounter = _middle(encounters)
    start = _utc(encounter["period"]["start"])
    five_minutes_in = datetime.fromisoformat(encounter["period"]["start"]) + timedelta(minutes=5)
    inside = _utc(five_minutes_in.isoformat())
    for prefix in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"):
        for value in (start[:4], start[:10], start, inside):
            yield f"Encounter?date={prefix}{value}"
    yield f"Encounter?date=ap{start[:10]}"

    yield "Condition?onset-date=lt2000"
    yield "Condition?abatement-date=ge2015"
    yield "Condition?recorded-date=2019"
    yield "Patient?death-date=ge2000"
    yield "Immunization?date=2019"
    yield "MedicationRequest?authoredon=lt2010-06"
    yield "Procedure?date=gt2018-01-01"
    yield "Claim?created=le2005"
    yield "CarePlan?date=gt2020"  # open-ended Periods reach beyond any date
    yield "CarePlan?date=eb2016"
    yield "CarePlan?date=sa2019-01-01"


def _quantities(dataset: Dataset, code: str) -> list[Decimal]:
    return sorted(
        Decimal(o["valueQuantity"]["value"])
        for o in dataset.of_type("Observation")
        if "valueQuantity" in o and _first_coding(o["code"])["code"] == code
    )


def quantity_cases(dataset: Dataset) -> Iterator[str]:
    bmi = _quantities(dataset, "39156-5")
    median = _middle(bmi).quantize(Decimal("0.1"))
    for prefix in PREFIXES:
        yield f"Observation?code=39156-5&value-quantity={prefix}{median}"
    yield f"Observation?value-quantity={median}|{UCUM}|kg/m2"
    yield f"Observation?value-quantity={median}||kg/m2"
    yield f"Observation?value-quantity={median}|{UCUM}|kg"
    yield f"Observation?value-quantity=gt{median}|{UCUM}|kg/m2"
    yield "Observation?value-quantity=gt100"
    yield "Observation?value-quantity=le1"
    weight = _middle(_quantities(dataset, "29463-7")).quantize(Decimal("1"))
    yield f"Observation?value-quantity=ap{weight}|{UCUM}|kg"
    yield f"Observation?value-quantity={weight}"
    sodium = _quantities(dataset, "2947-0")[0].quantize(Decimal("0.1"))
    yield f"Observation?value-quantity={sodium}|{UCUM}|mmol/L"
    yield f"Observation?value-quantity={sodium}||mmol/L"
    yield "Observation?component-value-quantity=gt140"
    yield f"Observation?component-value-quantity=lt75|{UCUM}|mm[Hg]"


def reference_cases(dataset: Dataset) -> Iterator[str]:
    patients = [p["id"] for p in _sorted(dataset, "Patient")]
    yield f"Observation?subject=Patient/{patients[0]}"
    yield f"Observation?patient={patients[1]}"
    yield f"Observation?subject:Patient={patients[2]}"
    yield f"Observation?subject={patients[3]},Patient/{patients[4]}"
    yield "Observation?subject=Patient/not-a-patient"
    observed = sorted({o["encounter"]["reference"] for o in dataset.of_type("Observation")})
    yield f"Observation?encounter={_middle(observed)}"
    yield f"Condition?encounter={_middle(_sorted(dataset, 'Condition'))['encounter']['reference']}"
    organization = _middle(_sorted(dataset, "Organization"))["id"]
    yield f"Encounter?service-provider=Organization/{organization}"
    yield f"Claim?provider={organization}"
    practitioner = _middle(_sorted(dataset, "Practitioner"))["id"]
    yield f"Encounter?practitioner={practitioner}"
    report = _middle(_sorted(dataset, "DiagnosticReport"))
    yield f"DiagnosticReport?result={report['result'][0]['reference']}"
    yield f"Immunization?patient=Patient/{patients[6]}"
    allergic = sorted({a["patient"]["reference"] for a in dataset.of_type("AllergyIntolerance")})
    yield f"AllergyIntolerance?patient={allergic[0].removeprefix('Patient/')}"


def composite_cases(dataset: Dataset) -> Iterator[str]:
    yield f"Observation?code-value-quantity={LOINC}|39156-5$gt30"
    yield "Observation?code-value-quantity=8302-2$lt100"
    yield f"Observation?code-value-quantity={LOINC}|2093-3$ge190,{LOINC}|2571-8$ge130"
    yield f"Observation?component-code-value-quantity={LOINC}|8480-6$gt130"
    yield f"Observation?component-code-value-quantity={LOINC}|8462-4$gt85"
    # A diastolic value above 130 exists only if the values of two components are mixed up.
    yield f"Observation?component-code-value-quantity={LOINC}|8462-4$gt130"
    yield f"Observation?component-code-value-quantity=8480-6$lt110|{UCUM}|mm[Hg]"


def chain_cases(dataset: Dataset) -> Iterator[str]:
    yield "Observation?subject.name=agustin"
    yield "Observation?subject:Patient.family=ordonez"
    yield "Observation?patient.gender=female&code=8302-2"
    yield "Observation?patient.birthdate=lt1960&code=72166-2"
    yield "Condition?encounter.class=EMER"
    yield "Observation?encounter.date=ge2019&code=8302-2"
    yield "Encounter?service-provider.name=boston"
    yield "Encounter?service-provider.address-city=marlborough"
    yield "Condition?encounter.service-provider.name=noble"
    yield "DiagnosticReport?result.code=718-7"
    yield "Encounter?practitioner.family=k"
    yield "Patient?_has:Observation:patient:code=2947-0"
    yield "Patient?_has:Condition:patient:code=38341003"
    yield "Patient?_has:Condition:subject:clinical-status=active"
    yield "Patient?_has:AllergyIntolerance:patient:criticality=low"
    yield "Patient?_has:Encounter:patient:_has:Condition:encounter:code=444814009"
    yield "Organization?_has:Encounter:service-provider:class=EMER"
    yield "Practitioner?_has:Encounter:practitioner:date=2019"


def missing_and_combined_cases(dataset: Dataset) -> Iterator[str]:
    yield "Observation?value-quantity:missing=true"
    yield "Observation?value-quantity:missing=false&category=vital-signs"
    yield "Observation?component-code:missing=false"
    yield "Condition?abatement-date:missing=true"
    yield "Patient?death-date:missing=false"
    yield "Patient?death-date:missing=true"
    yield "Encounter?practitioner:missing=true"
    yield "Encounter?reason-code:missing=false&class=AMB"
    yield "Observation?code=8302-2&date=ge2015"
    yield "Patient?gender=male&birthdate=lt1990"
    yield "Patient?gender=female&family=K"
    yield "Condition?clinical-status=active&code:not=162864005"
    yield "Observation?category=laboratory&value-quantity=gt100&date=lt2015"


def all_cases() -> list[str]:
    dataset = Dataset.read()
    families = (
        token_cases,
        string_cases,
        date_cases,
        quantity_cases,
        reference_cases,
        composite_cases,
        chain_cases,
        missing_and_combined_cases,
    )
    cases = [case for family in families for case in family(dataset)]
    assert len(cases) == len(set(cases)), "a case is listed twice"
    return cases
