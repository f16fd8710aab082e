"""Custom search parameters: SearchParameter resources that clients write take effect.

The catalog reads the active SearchParameter resources from the store, builds the registry
from the standard one plus them, and hands it to the search compiler and the indexer. It runs at
start-up and after every write of a SearchParameter; data written before a parameter existed is
indexed for it by `$reindex` (flode.store.reindex).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog

from flode.fhir import json
from flode.fhir.definitions import Definitions
from flode.fhir.errors import Issue
from flode.fhir.search_parameters import SearchParameters
from flode.store.indexer import Indexer
from flode.store.search import SearchCompiler

log = structlog.get_logger(__name__)

_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
# The parameter types a custom parameter can have: values the index tables hold.
_TYPES = ("number", "date", "string", "token", "reference", "quantity", "uri", "composite")


class CustomParameters:
    def __init__(
        self,
        pool: asyncpg.Pool,
        definitions: Definitions,
        standard: SearchParameters,
        compiler: SearchCompiler,
        indexer: Indexer,
    ) -> None:
        self.pool = pool
        self.definitions = definitions
        self.standard = standard
        self.compiler = compiler
        self.indexer = indexer
        self.generation = 0
        """Grows with every change of the registry (the CapabilityStatement follows it)."""
        self.problems: list[tuple[str, str]] = []
        self._standard_urls = frozenset(param.url for param in standard)

    async def refresh(self) -> None:
        """Build the registry anew from the active SearchParameter resources stored now."""
        rows = await self.pool.fetch(
            """SELECT v.content FROM resource r
               JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
               WHERE r.resource_type = 'SearchParameter' AND NOT r.deleted ORDER BY r.pk"""
        )
        custom = [
            resource
            for row in rows
            if (resource := json.loads(row["content"])).get("status") == "active"
            and resource.get("url") not in self._standard_urls
        ]
        registry, problems = self.standard.with_custom(self.definitions, custom)
        self.compiler.registry = registry
        self.indexer.registry = registry
        self.problems = problems
        self.generation += 1
        log.info("search parameters loaded", custom=len(custom), unusable=len(problems))

    def check(self, resource: Mapping[str, Any]) -> list[Issue]:
        """Why a SearchParameter resource could not be used, if it would be active: its code,
        type, base types and expression must make a parameter this server can index."""
        if resource.get("status") != "active" or resource.get("url") in self._standard_urls:
            return []
        issues = []
        code = resource.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            issues.append(f"code '{code}' must be letters, digits, '-' or '_'")
        if resource.get("type") not in _TYPES:
            issues.append(f"type '{resource.get('type')}' cannot be indexed; use one of {_TYPES}")
        for base in resource.get("base", []):
            if base not in self.definitions.resource_types and base not in (
                "Resource",
                "DomainResource",
            ):
                issues.append(f"base '{base}' is not a FHIR R4 resource type")
            elif isinstance(code, str) and (standard := self.standard.get(base, code)):
                issues.append(f"{base} has a standard parameter '{code}' ({standard.url})")
        if not resource.get("expression"):
            issues.append("an expression is required: it says what the parameter indexes")
        if not issues:
            _, problems = self.standard.with_custom(self.definitions, [resource])
            issues += [
                f"expression '{resource['expression']}' cannot be evaluated: {reason}"
                for _, reason in problems
            ]
        return [Issue("error", "processing", f"SearchParameter: {text}") for text in issues]
