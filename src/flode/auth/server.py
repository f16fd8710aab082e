"""The authorization server of one Flöde process: the registry and revocations it keeps in
memory, the identity provider clinicians log in with, and the background task that keeps both
in step with the database (changes made by other servers and by `flode module …`).

Built once at start-up (flode.app), reached by the HTTP adapter as `app.state.auth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx2
import structlog
from starlette.requests import Request

from flode.auth import demo, modules
from flode.auth.assertions import KeySets
from flode.auth.identity import IdentityProvider
from flode.auth.modules import Modules
from flode.auth.oidc import OidcLogin, OidcSettings, claim_mapping
from flode.auth.ratelimit import FailureLimiter
from flode.auth.revocation import Revocations
from flode.config import Config
from flode.interactions.services import Services

log = structlog.get_logger("flode.auth")
PURGE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Urls:
    """Where the server is, as one client sees it: `root` is the scheme and host (and any
    prefix before the FHIR base path)."""

    root: str
    base_path: str

    @property
    def issuer(self) -> str:
        return f"{self.root}/auth"

    @property
    def fhir_base(self) -> str:
        return f"{self.root}{self.base_path}"

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/{name}"


def request_root(request: Request) -> str:
    host = request.headers.get("host")
    if host is None:
        server = request.scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.scope['scheme']}://{host}"


def configured_root(config: Config) -> str | None:
    if not config.public_base_url:
        return None
    base = config.public_base_url.rstrip("/")
    return base.removesuffix(config.base_path) if config.base_path else base


def urls_of(request: Request, config: Config) -> Urls:
    """The URLs to hand out: the configured ones (FLODE_BASE_URL), else the request's."""
    return Urls(configured_root(config) or request_root(request), config.base_path)


def accepted(request: Request, config: Config) -> list[Urls]:
    """Every name the server answers to for this request: the request's and the configured."""
    roots = [request_root(request)]
    configured = configured_root(config)
    if configured is not None and configured not in roots:
        roots.append(configured)
    return [Urls(root, config.base_path) for root in roots]


def identity_provider(
    config: Config, pool: asyncpg.Pool, http: httpx2.AsyncClient
) -> IdentityProvider | None:
    if config.oidc_issuer:
        settings = OidcSettings(
            issuer=config.oidc_issuer,
            client_id=config.oidc_client_id,
            client_secret=config.oidc_client_secret,
            scopes=config.oidc_scopes,
            claims=claim_mapping(config.oidc_claims),
        )
        return OidcLogin(
            settings, pool, http, lambda request: urls_of(request, config).endpoint("login")
        )
    if config.demo_login if config.demo_login is not None else config.demo:
        return demo.DemoLogin()
    return None


class Authorization:
    def __init__(
        self,
        services: Services,
        config: Config,
        http: httpx2.AsyncClient,
        identity: IdentityProvider | None,
    ) -> None:
        self.services = services
        self.pool: asyncpg.Pool = services.store.pool
        self.tokens = services.tokens
        self.config = config
        self.http = http
        self.identity = identity
        self.modules = Modules()
        self.revocations = Revocations()
        self.limiter = FailureLimiter(config.auth_failures_per_minute)
        self.key_sets = KeySets(http)
        self._generation = -1
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, services: Services, config: Config) -> Authorization:
        """Load the registry and revocations (and, with demo data, register the demo modules),
        then keep them current in the background."""
        http = httpx2.AsyncClient(follow_redirects=False)
        auth = cls(services, config, http, identity_provider(config, services.store.pool, http))
        if config.demo:
            await demo.seed_modules(auth.pool, config.data_dir)
        await auth.reload()
        auth._task = asyncio.create_task(auth._watch())
        return auth

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await modules.record_activity(self.pool, self.revocations.take_activity())
        await self.http.aclose()

    async def reload(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            generation = await modules.generation(conn)
            registered = await modules.all_modules(conn)
            revoked = await conn.fetch(
                "SELECT token_id FROM auth_revoked_token WHERE expires > now()"
            )
        self.modules.replace(registered)
        self.revocations.load((r["token_id"] for r in revoked), registered)
        self._generation = generation

    async def revoke_access_tokens(self, tokens: list[tuple[str, str]]) -> None:
        """Revoke access tokens by (token id, client id), here at once and everywhere soon."""
        if not tokens:
            return
        expires = datetime.now(UTC) + timedelta(seconds=self.config.token_lifetime + 60)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO auth_revoked_token (token_id, client_id, expires)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                [(token_id, client_id, expires) for token_id, client_id in tokens],
            )
            await modules.bump(conn)
        for token_id, _ in tokens:
            self.revocations.revoke(token_id)

    async def _watch(self) -> None:
        last_purge = time.monotonic()
        while True:
            await asyncio.sleep(self.config.auth_refresh_seconds)
            try:
                if await modules.generation(self.pool) != self._generation:
                    await self.reload()
                await modules.record_activity(self.pool, self.revocations.take_activity())
                if time.monotonic() - last_purge > PURGE_SECONDS:
                    await purge(self.pool)
                    last_purge = time.monotonic()
            except Exception as exc:  # keep watching: a passing database error must not stop it
                log.warning("authorization refresh failed", error=str(exc) or type(exc).__name__)


async def purge(conn: asyncpg.Pool) -> None:
    """Forget what can no longer matter: expired codes, launches, logins, assertion ids,
    revocations and refresh tokens."""
    for table, column in (
        ("auth_code", "expires"),
        ("auth_launch", "expires"),
        ("auth_login", "expires"),
        ("auth_seen_jti", "expires"),
        ("auth_revoked_token", "expires"),
        ("auth_refresh_token", "expires"),
    ):
        await conn.execute(f"DELETE FROM {table} WHERE {column} < now() - interval '1 hour'")
