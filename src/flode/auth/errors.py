"""OAuth 2.0 error responses (RFC 6749 §5.2): a code, a text for the developer and the HTTP
status, sent as JSON by the token, introspection and revocation endpoints, and as redirect
parameters by the authorization endpoint (§4.1.2.1)."""

from __future__ import annotations

from typing import Any


class OAuthError(Exception):
    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str) -> OAuthError:
    # §5.2: 401 for a failed client authentication.
    return OAuthError("invalid_client", description, 401)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def unsupported_grant_type(grant_type: str) -> OAuthError:
    return OAuthError(
        "unsupported_grant_type",
        f"grant_type '{grant_type}' is not supported: use authorization_code, refresh_token or "
        "client_credentials",
    )


def too_many_failures(retry_after: int) -> OAuthError:
    return OAuthError(
        "temporarily_unavailable",
        f"Too many failed client authentications for this client; try again in {retry_after} s",
        429,
        {"Retry-After": str(retry_after)},
    )
