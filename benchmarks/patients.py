"""Realistic Swedish Patient resources, each with its own personnummer."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"

_FEMALE = (
    "Anna", "Eva", "Maria", "Karin", "Sara", "Kristina", "Lena", "Emma", "Kerstin", "Ingrid",
    "Elin", "Linnéa", "Astrid", "Maja", "Ebba", "Sofia", "Åsa", "Märta", "Birgitta", "Hanna",
)  # fmt: skip
_MALE = (
    "Lars", "Karl", "Johan", "Anders", "Per", "Erik", "Mikael", "Nils", "Björn", "Gustav",
    "Oskar", "Olof", "Sven", "Åke", "Göran", "Jörgen", "Lennart", "Håkan", "Elias", "Hugo",
)  # fmt: skip
_FAMILY = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
    "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson",
    "Bengtsson", "Jönsson", "Lindberg", "Lindström", "Lindqvist", "Lindgren", "Bergström",
    "Lundberg", "Sjöberg", "Öberg", "Åberg", "Ström", "Holm", "Nyström", "Söderberg", "Ek",
)  # fmt: skip
_STREETS = (
    "Storgatan", "Drottninggatan", "Kungsgatan", "Vasagatan", "Skolgatan", "Järnvägsgatan",
    "Åsgatan", "Björkvägen", "Ekvägen", "Tallvägen", "Fältvägen", "Kyrkogatan", "Sjövägen",
)  # fmt: skip
_SWEDISH = {"system": "urn:ietf:bcp:47", "code": "sv", "display": "svenska"}
_CITIES = (
    ("Stockholm", "111 22", "Stockholms län"),
    ("Göteborg", "411 03", "Västra Götalands län"),
    ("Malmö", "211 20", "Skåne län"),
    ("Uppsala", "753 20", "Uppsala län"),
    ("Västerås", "722 11", "Västmanlands län"),
    ("Örebro", "702 10", "Örebro län"),
    ("Linköping", "582 22", "Östergötlands län"),
    ("Jönköping", "553 15", "Jönköpings län"),
    ("Umeå", "903 26", "Västerbottens län"),
    ("Luleå", "972 31", "Norrbottens län"),
    ("Kiruna", "981 31", "Norrbottens län"),
    ("Visby", "621 55", "Gotlands län"),
)

_FIRST_BIRTH_DATE = date(1930, 1, 1)
_DAYS = 30_000  # birth dates span 1930 to 2012
_DAY_STRIDE = 7_919  # a prime, so n → n * stride mod _DAYS visits every day once
_SERIALS = 999  # birth numbers 001-999 per day


def luhn_check_digit(digits: str) -> int:
    """The Luhn check digit of a personnummer's ten first digits (YYMMDDNNN)."""
    total = 0
    for i, ch in enumerate(digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def personnummer(n: int) -> tuple[str, date, str]:
    """The `n`th of 29 970 000 distinct personnummer: (12-digit number, birth date, gender)."""
    day = (n // _SERIALS) % _DAYS * _DAY_STRIDE % _DAYS
    serial = n % _SERIALS + 1
    born = _FIRST_BIRTH_DATE + timedelta(days=day)
    gender = "male" if serial % 10 % 2 == 1 else "female"
    short = f"{born:%y%m%d}{serial:03d}"
    return f"{born:%Y%m%d}{serial:03d}{luhn_check_digit(short)}", born, gender


class PatientFactory:
    """Makes Patient resources; every one made by one factory has its own personnummer."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._next = self._random.randrange(1_000_000)

    def phone(self) -> str:
        r = self._random
        return f"+46 7{r.choice('0236')}-{r.randrange(100, 1000)} {r.randrange(10, 100)} " + str(
            r.randrange(10, 100)
        )

    def patient(self) -> dict[str, Any]:
        r = self._random
        number, born, gender = personnummer(self._next)
        self._next += 1
        given = r.choice(_FEMALE if gender == "female" else _MALE)
        second = r.choice(_FEMALE if gender == "female" else _MALE)
        family = r.choice(_FAMILY)
        city, postal_code, district = r.choice(_CITIES)
        return {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": PERSONNUMMER, "value": number}],
            "active": True,
            "name": [
                {
                    "use": "official",
                    "text": f"{given} {second} {family}",
                    "family": family,
                    "given": [given, second],
                }
            ],
            "telecom": [
                {"system": "phone", "value": self.phone(), "use": "mobile"},
                {
                    "system": "email",
                    "value": f"{given}.{family}{r.randrange(100)}@example.se".lower(),
                    "use": "home",
                },
            ],
            "gender": gender,
            "birthDate": born.isoformat(),
            "address": [
                {
                    "use": "home",
                    "type": "physical",
                    "line": [f"{r.choice(_STREETS)} {r.randrange(1, 120)}"],
                    "city": city,
                    "district": district,
                    "postalCode": postal_code,
                    "country": "SE",
                }
            ],
            "maritalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                        "code": r.choice("MSUDW"),
                    }
                ]
            },
            "communication": [
                {
                    "language": {
                        "coding": [
                            {"system": "urn:ietf:bcp:47", "code": "sv", "display": "svenska"}
                        ]
                    },
                    "preferred": True,
                }
            ],
        }

    def updated(self, resource: dict[str, Any]) -> dict[str, Any]:
        """`resource` (with its id) as a client would send it back: a new mobile number and
        the same everything else."""
        changed = dict(resource)
        telecom = [dict(t) for t in resource.get("telecom", [])]
        for contact in telecom:
            if contact.get("system") == "phone":
                contact["value"] = self.phone()
        changed["telecom"] = telecom
        return changed
