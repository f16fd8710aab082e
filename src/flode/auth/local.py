"""Tokens signed with the keys of a data directory, without the authorization server: for
operators and scripts (`flode token issue`) and for tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flode.auth.keys import KeyRing
from flode.auth.tokens import Tokens, issuer_of
from flode.config import Config

OPERATOR = "flode-operator"
"""The client id of the built-in administrator."""
OPERATOR_SCOPES = ("system/*.cruds",)


def issue_local(
    config: Config,
    root_url: str,
    scopes: Iterable[str] = OPERATOR_SCOPES,
    *,
    client_id: str = OPERATOR,
    subject: str | None = None,
    lifetime: int | None = None,
    context: Mapping[str, str] | None = None,
) -> str:
    """A token for the server at `root_url` (scheme and host, e.g. http://127.0.0.1:8080)
    whose data directory `config` names."""
    token, _ = Tokens(KeyRing(config.keys_dir)).issue(
        issuer=issuer_of(root_url.rstrip("/")),
        client_id=client_id,
        subject=subject or client_id,
        scopes=list(scopes),
        audience=f"{root_url.rstrip('/')}{config.base_path}",
        lifetime=lifetime if lifetime is not None else config.token_lifetime,
        context=context,
    )
    return token
