"""What the interactions need, wired once in the composition root (flode.app)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flode.auth.tokens import Tokens
from flode.bulk.jobs import Exporter
from flode.events.service import Events
from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator
from flode.store.custom_parameters import CustomParameters
from flode.store.reindex import Reindexer
from flode.store.repository import Store
from flode.store.search import SearchCompiler

if TYPE_CHECKING:  # its jobs load data, which needs these services
    from flode.bulk.import_jobs import Importer


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    definitions: Definitions
    validator: Validator
    search: SearchCompiler
    parameters: CustomParameters
    reindexer: Reindexer
    tokens: Tokens
    exporter: Exporter
    importer: Importer
    default_page_size: int = 20
    max_page_size: int = 1000
    max_included: int = 1000
    """How many resources `_include` and `_revinclude` add to one page at most."""
    max_result_set: int = 10_000
    """A search with more matches than this pages by offset: its pages are not stored."""
    events: Events = field(default_factory=Events)
    """Subscriptions and the change feed (flode.events)."""
    protected_identity_units: frozenset[str] = frozenset()
    """The care units that see patients with protected identity unmasked
    (flode.access.protected)."""
