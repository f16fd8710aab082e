"""What happened to each demo patient in 2025–2026: visits, diagnoses and usual vital signs.

Times are Swedish wall-clock times; `end=None` marks a visit still in progress. Measured
values vary around each patient's baseline (see `flode.demo.clinical`), except temperatures,
which are part of the story.
"""

from __future__ import annotations

from dataclasses import dataclass

# SNOMED CT code → (display, Swedish text, chronic)
DIAGNOSES: dict[str, tuple[str, str, bool]] = {
    "38341003": ("Hypertensive disorder", "Hypertoni", True),
    "49436004": ("Atrial fibrillation", "Förmaksflimmer", True),
    "84114007": ("Heart failure", "Hjärtsvikt", True),
    "44054006": ("Diabetes mellitus type 2", "Typ 2-diabetes", True),
    "46635009": ("Diabetes mellitus type 1", "Typ 1-diabetes", True),
    "13645005": ("Chronic obstructive lung disease", "KOL", True),
    "55822004": ("Hyperlipidemia", "Hyperlipidemi", True),
    "40930008": ("Hypothyroidism", "Hypotyreos", True),
    "195967001": ("Asthma", "Astma", True),
    "233604007": ("Pneumonia", "Pneumoni", False),
    "68566005": ("Urinary tract infectious disease", "Urinvägsinfektion", False),
    "10509002": ("Acute bronchitis", "Akut bronkit", False),
    "44465007": ("Sprain of ankle", "Fotledsdistorsion", False),
}


@dataclass(frozen=True)
class Visit:
    kind: str
    """v3-ActCode: AMB, IMP or EMER."""
    unit: str
    staff: tuple[str, ...]
    """Primary performer first; measurements are taken by the last one."""
    start: str
    end: str | None
    measure: tuple[str, ...] = ("bp", "hr")
    temperature: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    code: str
    visit: int
    """1-based number of the visit where it was diagnosed."""
    resolved: str | None = None


@dataclass(frozen=True)
class Baseline:
    systolic: int
    diastolic: int
    pulse: int
    weight: float
    hba1c: float | None = None


@dataclass(frozen=True)
class Story:
    baseline: Baseline
    visits: tuple[Visit, ...]
    diagnoses: tuple[Diagnosis, ...]


GP = ("lindqvist", "eklund")
ER = ("johansson", "sandberg")
WEIGHED = ("bp", "hr", "weight")
DIABETES = ("bp", "hr", "weight", "hba1c")

# One story per patient, in the order of data/personnummer.txt.
STORIES = (
    Story(  # Göran Andersson, 1942, Göteborg
        Baseline(152, 88, 82, 81.4),
        (
            Visit("AMB", "vc-halsan", GP, "2025-02-11 09:20", "2025-02-11 09:50", WEIGHED),
            Visit("EMER", "akut-sahlgrenska", ER, "2025-09-03 22:15", "2025-09-04 03:40",
                  temperature=37.0),
            Visit("AMB", "vc-halsan", ("lindqvist",), "2026-01-20 10:00", "2026-01-20 10:30",
                  WEIGHED),
        ),
        (Diagnosis("38341003", 1), Diagnosis("49436004", 2)),
    ),
    Story(  # Birgitta Olsson, 1940, Borås
        Baseline(138, 76, 84, 68.2),
        (
            Visit("IMP", "med5-sas", ("bergstrom",), "2025-04-07 11:30", "2025-04-14 13:00",
                  WEIGHED, temperature=36.8),
            Visit("IMP", "med5-sas", ("bergstrom",), "2026-02-16 15:45", None, WEIGHED,
                  temperature=37.4),
        ),
        (Diagnosis("84114007", 1), Diagnosis("38341003", 1)),
    ),
    Story(  # Margareta Larsson, 1951, Trollhättan
        Baseline(146, 84, 72, 88.6, 7.4),
        (
            Visit("AMB", "med-nal", ("hakansson",), "2025-03-18 08:40", "2025-03-18 09:10",
                  DIABETES),
            Visit("AMB", "med-nal", ("hakansson",), "2025-10-14 13:15", "2025-10-14 13:45",
                  DIABETES),
        ),
        (Diagnosis("44054006", 1), Diagnosis("38341003", 1)),
    ),
    Story(  # Lars-Erik Nilsson, 1954, Uddevalla
        Baseline(134, 82, 80, 74.0),
        (
            Visit("AMB", "med-nal", ("hakansson",), "2025-05-22 10:30", "2025-05-22 11:10",
                  WEIGHED, temperature=36.9),
        ),
        (Diagnosis("13645005", 1),),
    ),
    Story(  # Bengt Axelsson, 1957, Mölndal
        Baseline(142, 86, 70, 96.3, 6.9),
        (
            Visit("AMB", "vc-halsan", GP, "2025-01-28 14:00", "2025-01-28 14:30", DIABETES),
            Visit("AMB", "vc-halsan", ("eklund",), "2025-08-19 09:00", "2025-08-19 09:20",
                  ("bp", "weight", "hba1c")),
            Visit("AMB", "vc-halsan", ("lindqvist",), "2026-02-03 15:10", "2026-02-03 15:40",
                  DIABETES),
        ),
        (Diagnosis("44054006", 1), Diagnosis("55822004", 1)),
    ),
    Story(  # Karin Persson, 1976, Göteborg
        Baseline(118, 76, 66, 64.8),
        (
            Visit("AMB", "vc-halsan", ("lindqvist",), "2025-06-10 11:00", "2025-06-10 11:20",
                  WEIGHED),
            Visit("AMB", "vc-halsan", ("eklund",), "2025-12-09 08:30", "2025-12-09 08:45"),
        ),
        (Diagnosis("40930008", 1),),
    ),
    Story(  # Johan Lindberg, 1981, Kungälv
        Baseline(128, 80, 96, 83.0),
        (
            Visit("EMER", "akut-sahlgrenska", ER, "2025-11-22 19:40", "2025-11-23 01:05",
                  temperature=38.9),
            Visit("AMB", "vc-halsan", ("lindqvist",), "2025-12-15 13:30", "2025-12-15 13:50",
                  temperature=37.0),
        ),
        (Diagnosis("233604007", 1, resolved="2025-12-15"),),
    ),
    Story(  # Emma Svensson, 1988, Borås
        Baseline(112, 70, 104, 61.0),
        (
            Visit("IMP", "med5-sas", ("bergstrom",), "2025-03-02 04:20", "2025-03-05 11:00",
                  temperature=37.2),
        ),
        (Diagnosis("195967001", 1),),
    ),
    Story(  # Sara Gustafsson, 1991, Göteborg
        Baseline(114, 72, 74, 58.5),
        (
            Visit("AMB", "vc-halsan", GP, "2025-07-08 10:40", "2025-07-08 11:00",
                  temperature=38.1),
        ),
        (Diagnosis("68566005", 1, resolved="2025-07-18"),),
    ),
    Story(  # Oskar Berg, 1993, Vänersborg
        Baseline(124, 78, 68, 77.9, 8.1),
        (
            Visit("AMB", "med-nal", ("hakansson",), "2025-04-24 09:30", "2025-04-24 10:00",
                  DIABETES),
            Visit("AMB", "med-nal", ("hakansson",), "2025-11-06 09:30", "2025-11-06 10:00",
                  DIABETES),
        ),
        (Diagnosis("46635009", 1),),
    ),
    Story(  # Elias Hansson, 2005, Göteborg
        Baseline(122, 74, 88, 72.0),
        (
            Visit("AMB", "vc-halsan", ("lindqvist",), "2025-10-01 16:00", "2025-10-01 16:20",
                  temperature=37.8),
            Visit("EMER", "akut-sahlgrenska", ER, "2026-02-20 14:10", None, temperature=37.0),
        ),
        (Diagnosis("10509002", 1, resolved="2025-10-20"), Diagnosis("44465007", 2)),
    ),
    Story(  # Alva Eriksson, 2015, Göteborg
        Baseline(104, 64, 92, 34.5),
        (
            Visit("AMB", "vc-halsan", GP, "2025-01-14 10:15", "2025-01-14 10:45", WEIGHED),
            Visit("AMB", "vc-halsan", ("eklund",), "2025-09-16 14:20", "2025-09-16 14:40",
                  ("hr", "weight"), temperature=37.0),
        ),
        (Diagnosis("195967001", 1),),
    ),
)  # fmt: skip
