"""What the authorization server publishes about itself: SMART's configuration
(https://hl7.org/fhir/smart-app-launch/conformance.html, at `[base]/.well-known/
smart-configuration`) and OpenID Connect Discovery metadata."""

from __future__ import annotations

from typing import Any

from flode.auth.assertions import ALGORITHMS
from flode.auth.granting import USER_SCOPES
from flode.auth.keys import ALGORITHM
from flode.auth.server import Urls

SCOPES = [
    *USER_SCOPES,
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.rs",
    "user/*.rs",
    "system/*.rs",
]
CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-standalone-encounter",
    "context-banner",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
]


def smart_configuration(urls: Urls) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.endpoint("jwks"),
        "authorization_endpoint": urls.endpoint("authorize"),
        "token_endpoint": urls.endpoint("token"),
        "introspection_endpoint": urls.endpoint("introspect"),
        "revocation_endpoint": urls.endpoint("revoke"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(urls: Urls) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.endpoint("authorize"),
        "token_endpoint": urls.endpoint("token"),
        "jwks_uri": urls.endpoint("jwks"),
        "introspection_endpoint": urls.endpoint("introspect"),
        "revocation_endpoint": urls.endpoint("revoke"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser", "name"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
    }
