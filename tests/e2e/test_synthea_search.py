"""FHIR R4 search over real Synthea patients: for every query, the server finds exactly the
resources an independent reading of https://hl7.org/fhir/R4/search.html selects
(`evaluator.py`, which shares no code with Flöde)."""

from __future__ import annotations

import httpx
import pytest

from .evaluator import Evaluator, Expected
from .search_cases import all_cases
from .synthea import Dataset, Loaded, entries, parse_case, search_pages

CASES = all_cases()


async def found_ids(
    client: httpx.AsyncClient, loaded: Loaded, resource_type: str, query: list[tuple[str, str]]
) -> set[str]:
    params = [*query, loaded.tag_param, ("_count", "1000")]
    return {r["id"] for r in entries(await search_pages(client, resource_type, params))}


def difference(expected: Expected, got: set[str]) -> str:
    missing = sorted(expected.must - got)
    extra = sorted(got - expected.may)
    return (
        f"expected {len(expected.must)} (up to {len(expected.may)}), got {len(got)}; "
        f"missing {len(missing)}: {missing[:5]}; unexpected {len(extra)}: {extra[:5]}"
    )


@pytest.mark.parametrize("case", CASES)
async def test_the_server_finds_what_the_specification_selects(
    case: str, synthea: Loaded, client: httpx.AsyncClient
) -> None:
    resource_type, query = parse_case(case)
    expected = Evaluator(synthea.dataset).search(resource_type, query)
    got = await found_ids(client, synthea, resource_type, query)
    assert expected.must <= got <= expected.may, difference(expected, got)


def test_the_cases_find_something_but_not_everything() -> None:
    """Cases that select nothing or everything of their type test little; a few are meant to."""
    dataset = Dataset.read()
    evaluator = Evaluator(dataset)
    trivial = []
    for case in CASES:
        resource_type, query = parse_case(case)
        expected = evaluator.search(resource_type, query)
        if not expected.must or len(expected.may) == len(dataset.of_type(resource_type)):
            trivial.append(case)
    assert len(CASES) >= 100
    assert len(trivial) <= len(CASES) // 8, trivial
