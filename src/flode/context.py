"""The context of one request, built once at the edge and passed down (DESIGN.md principle 4).

Authentication and the Swedish access rules fill in who is asking; until they do, a request
carries only what the HTTP edge knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    base_url: str
    """The FHIR base URL as the client sees it, e.g. http://127.0.0.1:8080/fhir."""
    user_hsa_id: str | None = None
    commission_hsa_id: str | None = None
    care_unit_hsa_id: str | None = None
    care_provider_hsa_id: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    purpose_of_use: str = "TREAT"
    emergency_reason: str | None = None

    @classmethod
    def system(cls, task: str) -> RequestContext:
        """Flöde itself acting outside any HTTP request (e.g. seeding the demo region)."""
        return cls(request_id=f"system:{task}", base_url="")
