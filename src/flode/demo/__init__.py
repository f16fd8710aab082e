"""The demo region `make run` seeds on first start.

Västra Götalandsregionen as care provider, four of its care units, six members of staff with
their roles, and twelve patients identified by Skatteverket's test personnummer (never assigned
to real people), each with encounters, diagnoses and measurements in 2025–2026.

Every resource has a fixed id and no `meta`; references are relative and point only at
resources earlier in the list, so the list can be stored in order with PUT.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from flode.demo.clinical import clinical_resources
from flode.demo.organizations import PRACTITIONER_ROLES, PRACTITIONERS, PROVIDER, UNITS
from flode.demo.patients import demo_personnummer, patients
from flode.demo.stories import STORIES

__all__ = ["demo_personnummer", "demo_resources"]

_SEED = 2321000131


def demo_resources() -> list[dict[str, Any]]:
    """The demo region's resources, identical on every call, referenced resources first."""
    rng = random.Random(_SEED)
    resources: list[dict[str, Any]] = [
        PROVIDER,
        *UNITS.values(),
        *PRACTITIONERS.values(),
        *PRACTITIONER_ROLES,
    ]
    for patient, story in zip(patients(), STORIES, strict=True):
        resources.append(patient)
        resources.extend(clinical_resources(patient, story, rng))
    # Fresh, unshared dicts: callers may add meta or otherwise change what they receive.
    return [copy.deepcopy(resource) for resource in resources]
