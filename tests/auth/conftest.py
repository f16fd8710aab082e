"""Fixtures of the authorization tests: a Flöde server of their own (the session's database, a
data directory of its own, the development login on), modules registered straight into the
registry, and the keys and signed assertions a backend module makes."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from flode.app import build_app
from flode.auth import modules
from flode.auth.local import issue_local
from flode.auth.modules import Declaration, Module
from flode.config import Config
from serving import serving

PrivateKey = ECKey | RSAKey


@dataclass(frozen=True)
class AuthServer:
    root: str
    config: Config
    database_url: str

    @property
    def base(self) -> str:
        return f"{self.root}/fhir"

    def url(self, path: str) -> str:
        return f"{self.root}{path}"

    @property
    def token_url(self) -> str:
        return self.url("/auth/token")

    def operator(self) -> dict[str, str]:
        """The headers of the built-in administrator's token."""
        return {"Authorization": f"Bearer {issue_local(self.config, self.root)}"}


@pytest.fixture(scope="session")
def auth_server(
    database_url: str, test_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthServer]:
    config = replace(
        test_config,
        demo_login=True,
        data_dir=tmp_path_factory.mktemp("flode-auth"),
        auth_refresh_seconds=0.5,
    )
    with serving(build_app(config, database_url, access_log=False)) as port:
        yield AuthServer(f"http://127.0.0.1:{port}", config, database_url)


@pytest.fixture
async def http(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_server.root, timeout=30) as c:
        yield c


@pytest.fixture
async def admin(auth_server: AuthServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the FHIR base with the built-in administrator's token."""
    async with httpx.AsyncClient(
        base_url=auth_server.base + "/", timeout=30, headers=auth_server.operator()
    ) as c:
        yield c


@pytest.fixture
async def db(auth_server: AuthServer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(auth_server.database_url)
    yield conn
    await conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def es384_key() -> ECKey:
    key = ECKey.generate_key("P-384", parameters={"alg": "ES384", "use": "sig"}, private=True)
    key.ensure_kid()
    return key


def rs384_key() -> RSAKey:
    key = RSAKey.generate_key(2048, parameters={"alg": "RS384", "use": "sig"}, private=True)
    key.ensure_kid()
    return key


def public_jwks(*keys: PrivateKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


async def register(conn: asyncpg.Connection, **fields: Any) -> Module:
    fields.setdefault("client_id", unique("module"))
    fields.setdefault("name", "Test module")
    return await modules.add(conn, Module(**fields))


async def backend(
    conn: asyncpg.Connection,
    key: PrivateKey,
    scopes: tuple[str, ...] = ("system/Patient.rs", "system/Observation.cruds"),
    **fields: Any,
) -> Module:
    fields.setdefault("jwks", public_jwks(key))
    return await register(
        conn,
        scopes=scopes,
        declaration=Declaration(frozenset({"Patient"}), frozenset({"Observation"})),
        **fields,
    )


def assertion(
    key: PrivateKey,
    client_id: str,
    audience: str,
    *,
    alg: str | None = None,
    expires_in: int = 240,
    jti: str | None = None,
    **claims: Any,
) -> str:
    algorithm = alg or ("ES384" if isinstance(key, ECKey) else "RS384")
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + expires_in,
        "iat": now,
        "jti": jti or str(uuid.uuid4()),
        **claims,
    }
    header = {"alg": algorithm, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, body, key, algorithms=[algorithm])


def client_credentials(token_assertion: str, scope: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token_assertion,
    }


def hidden(html: str, name: str) -> str:
    """The value of a page's hidden form field."""
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match is not None, f"no hidden field {name} in the page"
    return match[1].replace("&amp;", "&").replace("&quot;", '"')


def keys_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


async def eventually(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, seconds: float = 10
) -> None:
    """Ask for `path` until it answers `status`, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get(path, headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return
        await asyncio.sleep(0.2)
