"""The official R4 examples are valid FHIR: the validator must accept every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.errors import Issue
from flode.fhir.json import loads
from flode.fhir.validation import Validator

OFFICIAL = (Path(__file__).parents[2] / ".." / "shared" / "data" / "fhir-examples").resolve()
IN_REPO = Path(__file__).parents[1] / "data" / "fhir-examples"

# Official examples that are invalid against the base specification, with the diagnostics
# every one of their issues carries.
KNOWN_INVALID = {
    # Its display items have no linkId, which Questionnaire.item requires (1..1).
    "Questionnaire-qs1.json": "Questionnaire.item.linkId is required",
}

VALIDATOR = Validator(Definitions.load())


def official_examples() -> list[Path]:
    return sorted(OFFICIAL.glob("*.json")) if OFFICIAL.is_dir() else []


needs_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason="the official examples (../shared/data) are not here"
)


def errors(path: Path) -> list[Issue]:
    issues = VALIDATOR.validate(loads(path.read_bytes()))
    return [issue for issue in issues if issue.severity == "error"]


@needs_official
def test_all_708_official_examples_are_here() -> None:
    assert len(official_examples()) == 708


@needs_official
def test_every_known_invalid_example_exists() -> None:
    assert set(KNOWN_INVALID) <= {path.name for path in official_examples()}


@needs_official
@pytest.mark.parametrize("path", official_examples(), ids=lambda path: path.name)
def test_accepts_an_official_example(path: Path) -> None:
    found = errors(path)
    if path.name in KNOWN_INVALID:
        assert found
        assert {issue.diagnostics for issue in found} == {KNOWN_INVALID[path.name]}
    else:
        assert found == []


def test_the_in_repository_examples_are_copies_of_official_ones() -> None:
    copies = sorted(IN_REPO.glob("*.json"))
    assert len(copies) >= 10
    assert not {path.name for path in copies} & set(KNOWN_INVALID)
    if OFFICIAL.is_dir():
        for copy in copies:
            assert copy.read_bytes() == (OFFICIAL / copy.name).read_bytes()


@pytest.mark.parametrize("path", sorted(IN_REPO.glob("*.json")), ids=lambda path: path.name)
def test_accepts_an_example_kept_in_the_repository(path: Path) -> None:
    assert errors(path) == []
