"""The search compiler: a parsed query becomes one SQL predicate over `resource r`
(https://hl7.org/fhir/R4/search.html).

Parameters come from the registry; each parameter type's module writes its own predicate.
Chains and `_has` nest a subquery that introduces its own `resource r`, so every module's
predicate reads the same way at any depth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flode.fhir.errors import bad_request
from flode.fhir.search_parameters import SearchParameter, SearchParameters
from flode.fhir.search_query import Criterion, Has, Link, SearchQuery, criterion_name
from flode.store.criteria import last_updated_predicate
from flode.store.indexer import MODULES, NOT_INDEXED
from flode.store.params import composite, text
from flode.store.sql import Args
from flode.text import split_escaped, unescape


@dataclass
class Compiled:
    where: str
    args: Args
    unknown: list[str] = field(default_factory=list)
    """Parameters that name nothing this server knows, reported or refused by the caller."""


Access = Callable[[str, Args], str | None]
"""access(resource_type, args): SQL over `r` restricting what may be searched of the type
(None: nothing is restricted); raises when the type may not be searched at all."""

Hidden = Callable[[str, str, Args], str | None]
"""hidden(resource_type, parameter, args): SQL over `r` that a match by this parameter must
also satisfy (None: any match counts), e.g. leaving out the Patients whose demographics the
reader sees masked when the parameter searches those demographics (flode.access.protected)."""


class SearchCompiler:
    def __init__(self, registry: SearchParameters, resource_types: frozenset[str]) -> None:
        self.registry = registry
        self.resource_types = resource_types

    def compile(
        self,
        resource_type: str,
        query: SearchQuery,
        args: Args | None = None,
        access: Access | None = None,
        hidden: Hidden | None = None,
    ) -> Compiled:
        """The query as a predicate over `resource r`; its values are added to `args` (new
        ones when not given), so several compiled queries can share one statement. `access`
        restricts the resources that chains and `_has` look at, as the caller's own search of
        those types would be restricted; `hidden` what a parameter may match, at any depth."""
        args = Args() if args is None else args
        ands: list[str] = []
        unknown: list[str] = []
        for criterion in query.criteria:
            sql = self._criterion(resource_type, criterion, args, access, hidden)
            if sql is None:
                unknown.append(criterion_name(criterion))
            else:
                ands.append(sql)
        return Compiled(" AND ".join(f"({a})" for a in ands) or "true", args, unknown)

    def _criterion(
        self,
        resource_type: str,
        criterion: Criterion | Has,
        args: Args,
        access: Access | None,
        hidden: Hidden | None = None,
    ) -> str | None:
        if isinstance(criterion, Has):
            return self._has(resource_type, criterion, args, access, hidden)
        if criterion.chain:
            return self._chain(resource_type, criterion.chain, criterion, args, access, hidden)
        sql = self._plain(resource_type, criterion, args)
        unseen = hidden(resource_type, criterion.name, args) if hidden and sql else None
        return f"({sql}) AND {unseen}" if unseen else sql

    def _plain(self, resource_type: str, criterion: Criterion, args: Args) -> str | None:
        name, modifier, value = criterion.name, criterion.modifier, criterion.value
        if name == "_id":
            if modifier == "missing":
                return "false" if value == "true" else "true"
            if modifier is not None:
                raise bad_request(f"Unknown modifier ':{modifier}' on _id", name)
            return f"r.id = ANY({args.add(value.split(','))}::text[])"
        if name == "_lastUpdated":
            if modifier is not None:
                raise bad_request(f"Unknown modifier ':{modifier}' on _lastUpdated", name)
            return last_updated_predicate(value, args)
        if name == "_list":
            return self._list(modifier, value, args)
        param = self.registry.get(resource_type, name)
        if name in text.PARAMS:
            return None if param is None else text.search(name, modifier, value, args)
        if (
            param is None
            or param.compiled is None
            or param.type not in MODULES
            or name in NOT_INDEXED
        ):
            return None
        return self._predicate(resource_type, param, modifier, value, args)

    def _list(self, modifier: str | None, value: str, args: Args) -> str:
        """`_list=42`: the resources `List/42` has as `entry.item` (search.html#list), from the
        List's `item` index rows; a missing List contains nothing."""
        if modifier is not None:
            raise bad_request(f"Unknown modifier ':{modifier}' on _list", "_list")
        ids = []
        for part in split_escaped(value, ","):
            id = unescape(part).removeprefix("List/")
            if id.startswith("$"):
                raise bad_request(
                    f"Functional lists such as '_list={id}' are not supported: name a List by "
                    "its id",
                    "_list",
                )
            if not id or "/" in id:
                raise bad_request(f"_list takes the id of a List, not '{part}'", "_list")
            ids.append(id)
        return (
            "EXISTS (SELECT 1 FROM resource l JOIN search_reference i ON i.resource_pk = l.pk "
            f"WHERE l.resource_type = 'List' AND l.id = ANY({args.add(ids)}::text[]) "
            "AND NOT l.deleted AND i.resource_type = 'List' AND i.param = 'item' "
            "AND i.target_type = r.resource_type AND i.target_id = r.id)"
        )

    def _predicate(
        self,
        resource_type: str,
        param: SearchParameter,
        modifier: str | None,
        value: str,
        args: Args,
    ) -> str:
        if param.type == "composite":
            kinds = []
            for code, _ in param.components:
                component = self.registry.get(resource_type, code)
                kinds.append(component.type if component is not None else "token")
            return composite.search(param.code, kinds, modifier, value, args)
        sql: str = MODULES[param.type].search(param.code, modifier, value, args)
        return sql

    def _targets(self, resource_type: str, link: Link) -> list[str]:
        """The types a chain step can lead to: the `:Type` given, else the parameter's targets."""
        param = self.registry.get(resource_type, link.param)
        if param is None or param.type != "reference":
            raise bad_request(
                f"'{link.param}' is not a reference parameter of {resource_type}: it cannot be "
                "chained",
                link.param,
            )
        if link.target_type is not None:
            if link.target_type not in self.resource_types:
                raise bad_request(f"Unknown resource type '{link.target_type}' in a chain")
            return [link.target_type]
        return list(param.targets) or sorted(self.resource_types)

    def _chain(
        self,
        resource_type: str,
        chain: tuple[Link, ...],
        criterion: Criterion,
        args: Args,
        access: Access | None,
        hidden: Hidden | None,
    ) -> str | None:
        link, rest = chain[0], chain[1:]
        targets = self._targets(resource_type, link)
        inner: list[str] = []
        guards: list[str] = []
        restricted = False
        for target in targets:
            if rest:
                following = self.registry.get(target, rest[0].param)
                if following is None or following.type != "reference":
                    continue  # this target cannot be chained further; another may
                sql = self._chain(target, rest, criterion, args, access, hidden)
            else:
                sql = self._criterion(
                    target,
                    Criterion(criterion.name, criterion.modifier, criterion.value),
                    args,
                    access,
                    hidden,
                )
            if sql is not None:
                kind = args.add(target)
                inner.append(f"(r.resource_type = {kind} AND {sql})")
                allowed = access(target, args) if access is not None else None
                guards.append(f"(r.resource_type = {kind} AND {allowed or 'true'})")
                restricted = restricted or allowed is not None
        if not inner:
            raise bad_request(
                f"No type that '{link.param}' refers to has a search parameter "
                f"'{rest[0].param if rest else criterion.name}' to continue the chain",
                link.param,
            )
        # The keys of the referring resources, found once (an InitPlan) from the referenced
        # resources' own index rows (`name=…`), then looked up by key: not a probe of every
        # resource searched. The subquery's `r` is the referenced resource.
        criteria = f"NOT r.deleted AND ({' OR '.join(inner)})"
        source, guard = _matching(criteria, guards if restricted else [])
        return (
            f"r.pk = ANY (ARRAY (SELECT c.resource_pk FROM {source} JOIN search_reference c "
            "ON c.target_type = r.resource_type AND c.target_id = r.id "
            f"WHERE c.resource_type = {args.add(resource_type)} "
            f"AND c.param = {args.add(link.param)} AND {guard}))"
        )

    def _has(
        self,
        resource_type: str,
        has: Has,
        args: Args,
        access: Access | None,
        hidden: Hidden | None,
    ) -> str | None:
        if has.resource_type not in self.resource_types:
            raise bad_request(f"Unknown resource type '{has.resource_type}' in _has", "_has")
        reference = self.registry.get(has.resource_type, has.reference)
        if reference is None or reference.type != "reference":
            raise bad_request(
                f"'{has.reference}' is not a reference parameter of {has.resource_type}", "_has"
            )
        inner = self._criterion(has.resource_type, has.inner, args, access, hidden)
        if inner is None:
            return None
        allowed = access(has.resource_type, args) if access is not None else None
        kind = args.add(has.resource_type)
        source, guard = _matching(
            f"r.resource_type = {kind} AND NOT r.deleted AND {inner}",
            [] if allowed is None else [allowed],
        )
        # The ids of the referenced resources, found once from the referring resources' index
        # rows, then looked up by id, as for chains. The subquery's `r` is the referring
        # resource.
        return (
            f"r.id = ANY (ARRAY (SELECT h.target_id FROM {source} JOIN search_reference h "
            f"ON h.resource_pk = r.pk WHERE h.resource_type = {kind} "
            f"AND h.param = {args.add(has.reference)} "
            f"AND h.target_type = {args.add(resource_type)} AND {guard}))"
        )

    def compile_contained(
        self, resource_type: str, query: SearchQuery, args: Args | None = None
    ) -> Compiled:
        """The query over the contained resources of `resource_type` (`_contained=true`,
        search.html#contained): a predicate over one contained resource, `r` being its row of
        `resource_contained` (`pk`, `resource_type`, `id`, `container_pk`), whose index rows are
        keyed by that `pk`, so that every criterion holds for the same contained resource.
        Plain criteria and `_id` only: chains, `_has`, `_lastUpdated`, `_list`, `_text` and
        `_content` answer 400 (a contained resource has no version, list entry or full-text
        row of its own)."""
        args = Args() if args is None else args
        ands: list[str] = [f"r.resource_type = {args.add(resource_type)}"]
        unknown: list[str] = []
        for criterion in query.criteria:
            name = criterion_name(criterion)
            if isinstance(criterion, Has) or criterion.chain:
                raise bad_request(f"'{name}' cannot be combined with _contained=true", name)
            if criterion.name in ("_lastUpdated", "_list", *text.PARAMS):
                raise bad_request(
                    f"'{criterion.name}' cannot be combined with _contained=true: contained "
                    "resources have no version, list entry or full text of their own",
                    criterion.name,
                )
            sql = self._plain(resource_type, criterion, args)
            if sql is None:
                unknown.append(name)
            else:
                ands.append(sql)
        return Compiled(" AND ".join(f"({a})" for a in ands), args, unknown)


def _matching(criteria: str, guards: Sequence[str]) -> tuple[str, str]:
    """The resources `r` of a chain or `_has` that match `criteria`, and may be searched by
    the request as `guards` say (one of them holds; none given: any may), as a FROM item and
    a condition for its WHERE.

    With guards, the matches are found first and only they are held to the guards: what a
    request may search costs a few look-ups per resource (the Swedish rules), and the
    criteria usually pick few resources of many."""
    if not guards:
        return "resource r", criteria
    return (
        f"(SELECT r.* FROM resource r WHERE {criteria} OFFSET 0) r",
        f"({' OR '.join(guards)})",
    )


def containers_of(contained: str) -> str:
    """SQL over `resource r`: the resource contains a resource matching `contained`, a
    predicate from `compile_contained`. An uncorrelated semi-join, as for chains: the planner
    may start from the contained resources' index rows."""
    return f"r.pk IN (SELECT r.container_pk FROM resource_contained r WHERE {contained})"
