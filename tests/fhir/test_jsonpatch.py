"""JSON Patch (RFC 6902) over JSON Pointer (RFC 6901), as FHIR's patch interaction uses it
(https://hl7.org/fhir/R4/http.html#patch), including the FHIR test cases' JSON Patch suite."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flode.fhir import json as fhir_json
from flode.fhir.errors import FhirError
from flode.fhir.jsonpatch import apply_patch

SUITE = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared/data/fhir-test-cases/r4/patch/json-patch-tests.json"
).resolve()
CASES: list[dict[str, Any]] = json.loads(SUITE.read_text())


def strictly_equal(a: Any, b: Any) -> bool:
    """Equal as JSON: Python's `True == 1` does not hold here."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def failure(document: Any, operations: Any) -> FhirError:
    before = copy.deepcopy(document)
    with pytest.raises(FhirError) as raised:
        apply_patch(document, operations)
    assert document == before
    return raised.value


def test_the_fhir_suite_is_there() -> None:
    assert len(CASES) >= 16
    assert sum("error" in case for case in CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c["comment"] for c in CASES])
def test_the_fhir_json_patch_test_cases(case: dict[str, Any]) -> None:
    document = copy.deepcopy(case["doc"])
    if "error" in case:
        assert failure(document, case["patch"]).status in (400, 422)
    else:
        result = apply_patch(document, case["patch"])
        assert strictly_equal(result, case["expected"])
        assert document == case["doc"], "the input must not change"


@pytest.mark.parametrize(
    ("document", "operations", "expected"),
    [
        ({"a": 1}, [{"op": "add", "path": "/a", "value": 2}], {"a": 2}),
        ({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}], {"b": 2}),
        ([1, 2], [{"op": "add", "path": "/2", "value": 3}], [1, 2, 3]),
        ([1, 2], [{"op": "add", "path": "/0", "value": 0}], [0, 1, 2]),
        ([1, 2, 3], [{"op": "remove", "path": "/2"}], [1, 2]),
        ([1, 2, 3], [{"op": "replace", "path": "/1", "value": 9}], [1, 9, 3]),
        ({"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
        ({"a/b": 1, "m~n": 2}, [{"op": "remove", "path": "/a~1b"}], {"m~n": 2}),
        ({"m~n": 2}, [{"op": "replace", "path": "/m~0n", "value": 3}], {"m~n": 3}),
        ({"": 1}, [{"op": "replace", "path": "/", "value": 2}], {"": 2}),
        ({"0": "x"}, [{"op": "replace", "path": "/0", "value": "y"}], {"0": "y"}),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a/b", "path": "/a/b"}], {"a": {"b": 1}}),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/c"}], {"c": {"b": 1}}),
        ({"a": [1, 2]}, [{"op": "copy", "from": "/a", "path": "/b"}], {"a": [1, 2], "b": [1, 2]}),
        (
            {"a": [1]},
            [{"op": "copy", "from": "/a", "path": "/b"}, {"op": "add", "path": "/b/-", "value": 2}],
            {"a": [1], "b": [1, 2]},
        ),
        (
            {"a": {"x": 1, "y": [True, None]}},
            [{"op": "test", "path": "/a", "value": {"y": [True, None], "x": 1.0}}],
            {"a": {"x": 1, "y": [True, None]}},
        ),
        ({"a": 1}, [{"op": "test", "path": "", "value": {"a": 1}}], {"a": 1}),
        ({"a": 1}, [], {"a": 1}),
    ],
)
def test_rfc_6902_operations(document: Any, operations: Any, expected: Any) -> None:
    original = copy.deepcopy(document)
    assert strictly_equal(apply_patch(document, operations), expected)
    assert document == original


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        ({"a": 1}, {"op": "test", "path": "/a", "value": True}),
        ({"a": True}, {"op": "test", "path": "/a", "value": 1}),
        ({"a": False}, {"op": "test", "path": "/a", "value": 0}),
        ({"a": None}, {"op": "test", "path": "/a", "value": False}),
        ({"a": ""}, {"op": "test", "path": "/a", "value": None}),
        ({"a": [1]}, {"op": "test", "path": "/a", "value": [True]}),
        ({"a": {"b": 0}}, {"op": "test", "path": "/a", "value": {"b": False}}),
        ({"a": [1, 2]}, {"op": "test", "path": "/a", "value": [1]}),
        ({"a": {"b": 1}}, {"op": "test", "path": "/a", "value": {"b": 1, "c": 2}}),
        ({"a": "1"}, {"op": "test", "path": "/a", "value": 1}),
        ({"a": 1}, {"op": "test", "path": "/b", "value": 1}),
    ],
)
def test_a_test_operation_fails_unless_the_values_are_equal_as_json(
    document: Any, operation: dict[str, Any]
) -> None:
    assert failure(document, [operation]).status == 422


@pytest.mark.parametrize(
    ("document", "operation"),
    [
        ({"a": 1}, {"op": "remove", "path": "/b"}),
        ({"a": 1}, {"op": "replace", "path": "/b", "value": 1}),
        ({"a": 1}, {"op": "add", "path": "/b/c", "value": 1}),
        ({"a": "text"}, {"op": "add", "path": "/a/b", "value": 1}),
        ([1, 2], {"op": "add", "path": "/3", "value": 1}),
        ([1, 2], {"op": "add", "path": "/01", "value": 1}),
        ([1, 2], {"op": "add", "path": "/-1", "value": 1}),
        ([1, 2], {"op": "remove", "path": "/-"}),
        ([1, 2], {"op": "remove", "path": "/2"}),
        ([1, 2], {"op": "replace", "path": "/x", "value": 1}),
        ({"a": 1}, {"op": "remove", "path": ""}),
        ({"a": {"b": 1}}, {"op": "move", "from": "/a", "path": "/a/c"}),
        ({"a": 1}, {"op": "move", "from": "/b", "path": "/c"}),
        ({"a": 1}, {"op": "copy", "from": "/b", "path": "/c"}),
    ],
)
def test_an_operation_on_a_location_that_does_not_exist_is_a_422(
    document: Any, operation: dict[str, Any]
) -> None:
    assert failure(document, [operation]).status == 422


@pytest.mark.parametrize(
    "operations",
    [
        {"op": "add", "path": "/a", "value": 1},
        "add",
        None,
        [None],
        [{"path": "/a", "value": 1}],
        [{"op": "ADD", "path": "/a", "value": 1}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "value": 1}],
        [{"op": "add", "path": 1, "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "replace", "path": "/a"}],
        [{"op": "test", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        [{"op": "copy", "path": "/a", "from": "b"}],
    ],
)
def test_a_malformed_patch_document_is_a_400(operations: Any) -> None:
    assert failure({"a": 1}, operations).status == 400


def test_a_failing_operation_leaves_the_document_as_it_was() -> None:
    document = {"a": [1, 2], "b": {"c": 3}}
    operations = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "remove", "path": "/b/c"},
        {"op": "test", "path": "/a/0", "value": 99},
    ]
    failure(document, operations)
    assert document == {"a": [1, 2], "b": {"c": 3}}


def test_added_values_are_copies() -> None:
    value = {"family": "Ek"}
    result = apply_patch({"name": []}, [{"op": "add", "path": "/name/-", "value": value}])
    result["name"][0]["family"] = "Alm"
    assert value == {"family": "Ek"}


def test_decimals_keep_their_text_through_a_patch() -> None:
    document = fhir_json.loads(b'{"v": 1.50, "w": [0.100]}')
    operations = fhir_json.loads(b'[{"op": "add", "path": "/x", "value": 2.0}]')
    result = apply_patch(document, [*operations, {"op": "copy", "from": "/w", "path": "/y"}])
    assert fhir_json.dumps(result) == b'{"v":1.50,"w":[0.100],"x":2.0,"y":[0.100]}'
    assert apply_patch(document, [{"op": "test", "path": "/v", "value": 1.5}]) == document
