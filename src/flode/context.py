"""The context of one request, built once at the edge and passed down (DESIGN.md principle 4).

Authentication fills in who is asking from the access token (flode.api.authentication);
the access rules (flode.access) read it to decide what the request may see and do.
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
    """The SMART scopes of the access token (flode.access.scopes gives their meaning)."""
    purpose_of_use: str = "TREAT"
    emergency_reason: str | None = None
    subject: str | None = None
    """Who the token was issued to: a user's HSA-id, or the client itself."""
    patient: str | None = None
    """The launch patient: `patient/` scopes reach only this patient's compartment."""
    encounter: str | None = None
    fhir_user: str | None = None
    personnummer: str | None = None
    token_id: str | None = None
    reads: frozenset[str] | None = None
    """The resource types the module declared it reads (`*`: all); None for no declaration
    (an operator's token)."""
    writes: frozenset[str] | None = None
    care_relationship_days: int = 30
    """How long after a finished encounter its care unit still has a care relationship with
    the patient (L1; setting FLODE_CARE_RELATIONSHIP_DAYS)."""
    trusted: bool = False
    """Flöde itself, or a server in insecure development mode: no scope is checked."""

    @classmethod
    def system(cls, task: str) -> RequestContext:
        """Flöde itself acting outside any HTTP request (e.g. seeding the demo region)."""
        return cls(request_id=f"system:{task}", base_url="", trusted=True)
