"""FHIR errors and OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html).

Every failure inside Flöde is raised as a `FhirError` carrying the HTTP status the FHIR
specification prescribes and the issues to report; the HTTP boundary turns it into an
OperationOutcome. Nothing else needs to know about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue. `code` is from http://hl7.org/fhir/issue-type."""

    severity: Severity
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """A failure with the HTTP status the specification prescribes for it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues) or f"HTTP {self.status}"

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def error(status: int, code: str, diagnostics: str, *expression: str) -> FhirError:
    """Shorthand for a FhirError with one error issue."""
    return FhirError(status, [Issue("error", code, diagnostics, expression)])


def bad_request(diagnostics: str, *expression: str) -> FhirError:
    return error(400, "invalid", diagnostics, *expression)


def not_found(diagnostics: str) -> FhirError:
    return error(404, "not-found", diagnostics)


def conflict(diagnostics: str) -> FhirError:
    return error(409, "conflict", diagnostics)


def precondition_failed(diagnostics: str) -> FhirError:
    return error(412, "conflict", diagnostics)


def invalid_resource(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues)
