"""Which tokens are no longer good before they expire, answered from memory on every request:
tokens revoked by id (RFC 7009), and every token of a disabled module.

`Revocations` is the `revoked` callback of `Tokens`. It is called once per verified request,
which also makes it the place where a module's requests are counted (`take_activity` hands the
counts to the registry now and then; DESIGN.md: the counter costs a dict update per request).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from flode.auth.modules import Module
from flode.auth.tokens import AccessToken


class Revocations:
    def __init__(self) -> None:
        self._token_ids: set[str] = set()
        self._disabled: frozenset[str] = frozenset()
        self._valid_after: dict[str, float] = {}
        self._activity: dict[str, tuple[int, datetime]] = {}

    def __call__(self, token: AccessToken) -> bool:
        revoked = (
            token.token_id in self._token_ids
            or token.client_id in self._disabled
            or token.issued_at < self._valid_after.get(token.client_id, 0.0)
        )
        if not revoked:
            count = self._activity.get(token.client_id, (0, None))[0]
            self._activity[token.client_id] = (count + 1, datetime.now(UTC))
        return revoked

    def load(self, token_ids: Iterable[str], modules: Iterable[Module]) -> None:
        """Replace what is known with what the database says."""
        disabled, valid_after = set(), {}
        for module in modules:
            if not module.enabled:
                disabled.add(module.client_id)
            if module.tokens_valid_after is not None:
                valid_after[module.client_id] = module.tokens_valid_after.timestamp()
        self._token_ids = set(token_ids)
        self._disabled = frozenset(disabled)
        self._valid_after = valid_after

    def revoke(self, token_id: str) -> None:
        """Take effect in this process at once, before the next load."""
        self._token_ids.add(token_id)

    def take_activity(self) -> dict[str, tuple[int, datetime]]:
        """The requests per client (count, last seen) since the last call."""
        activity, self._activity = self._activity, {}
        return activity
