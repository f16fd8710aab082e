"""The demo patients: Skatteverket test personnummer with Swedish names and home addresses."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from flode.demo._fhir import PERSONNUMMER, Resource
from flode.demo.organizations import unit_reference


def demo_personnummer() -> list[str]:
    """The 12-digit test personnummer in `data/personnummer.txt`, in file order."""
    text = files("flode.demo").joinpath("data/personnummer.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def birth_date(personnummer: str) -> str:
    return f"{personnummer[0:4]}-{personnummer[4:6]}-{personnummer[6:8]}"


def gender(personnummer: str) -> str:
    """The third digit of the serial number (YYYYMMDD-NNNC) is odd for men, even for women."""
    return "male" if int(personnummer[10]) % 2 else "female"


@dataclass(frozen=True)
class _Person:
    given: str
    family: str
    line: str
    postal_code: str
    city: str
    unit: str
    """The care unit responsible for the patient; a vårdcentral is also listed as their GP."""


# One row per line of data/personnummer.txt, in the same order; the first names follow the sex
# the personnummer encodes.
_PEOPLE = (
    _Person("Göran", "Andersson", "Tredje Långgatan 14", "413 03", "Göteborg", "vc-halsan"),
    _Person("Birgitta", "Olsson", "Allégatan 32", "503 32", "Borås", "med5-sas"),
    _Person("Margareta", "Larsson", "Drottninggatan 21", "461 32", "Trollhättan", "med-nal"),
    _Person("Lars-Erik", "Nilsson", "Kungsgatan 8", "451 30", "Uddevalla", "med-nal"),
    _Person("Bengt", "Axelsson", "Göteborgsvägen 12", "431 30", "Mölndal", "vc-halsan"),
    _Person("Karin", "Persson", "Linnégatan 40", "413 04", "Göteborg", "vc-halsan"),
    _Person("Johan", "Lindberg", "Västra gatan 55", "442 31", "Kungälv", "vc-halsan"),
    _Person("Emma", "Svensson", "Åsbogatan 10", "503 38", "Borås", "med5-sas"),
    _Person("Sara", "Gustafsson", "Övre Husargatan 7", "413 14", "Göteborg", "vc-halsan"),
    _Person("Oskar", "Berg", "Edsgatan 18", "462 33", "Vänersborg", "med-nal"),
    _Person("Elias", "Hansson", "Vasagatan 3", "411 24", "Göteborg", "vc-halsan"),
    _Person("Alva", "Eriksson", "Kastanjegatan 9", "412 63", "Göteborg", "vc-halsan"),
)


def patients() -> list[Resource]:
    numbers = demo_personnummer()
    if len(numbers) != len(_PEOPLE):
        raise RuntimeError(f"expected {len(_PEOPLE)} demo personnummer, found {len(numbers)}")
    result = []
    for index, (personnummer, person) in enumerate(zip(numbers, _PEOPLE, strict=True), start=1):
        patient: Resource = {
            "resourceType": "Patient",
            "id": f"vgr-patient-{index:02d}",
            "identifier": [{"use": "official", "system": PERSONNUMMER, "value": personnummer}],
            "active": True,
            "name": [{"use": "official", "family": person.family, "given": [person.given]}],
            "gender": gender(personnummer),
            "birthDate": birth_date(personnummer),
            "address": [
                {
                    "use": "home",
                    "type": "both",
                    "line": [person.line],
                    "postalCode": person.postal_code,
                    "city": person.city,
                    "country": "SE",
                }
            ],
        }
        if person.unit == "vc-halsan":
            patient["generalPractitioner"] = [unit_reference(person.unit)]
        patient["managingOrganization"] = unit_reference(person.unit)
        result.append(patient)
    return result
