"""Swedish identifiers, checked where they come in (DOMAIN.md section 3).

An HSA-id names a person, a care unit, a care provider or a commission in the HSA catalogue:
`SE`, the catalogue owner's 10-digit organisation number, `-`, then letters and digits (no å,
ä, ö or @); at most 31 characters. VGR's begin `SE2321000131-`.
"""

from __future__ import annotations

import re

HSA_ID_MAX_LENGTH = 31
HSA_ID = re.compile(r"SE[0-9]{10}-[A-Za-z0-9]+")


class InvalidIdentifier(ValueError):
    """A value that is not the identifier it should be; the text says why."""


def is_hsa_id(value: str) -> bool:
    """Whether `value` is an HSA-id, exactly as given."""
    return len(value) <= HSA_ID_MAX_LENGTH and HSA_ID.fullmatch(value) is not None


def hsa_id(value: str) -> str:
    """`value` as an HSA-id, without surrounding blanks; InvalidIdentifier when it is not one."""
    candidate = value.strip()
    if is_hsa_id(candidate):
        return candidate
    if len(candidate) > HSA_ID_MAX_LENGTH:
        raise InvalidIdentifier(
            f"{candidate!r} is not an HSA-id: it has {len(candidate)} characters, at most "
            f"{HSA_ID_MAX_LENGTH} are allowed"
        )
    raise InvalidIdentifier(
        f"{candidate!r} is not an HSA-id: expected SE, a 10-digit organisation number, '-' and "
        "letters A-Z or digits (e.g. SE2321000131-E000000000001)"
    )
