"""The composition root: the one place where configuration, storage, FHIR knowledge and the
HTTP adapter are wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from flode.api import errors, module_routes, routes
from flode.api.auth_routes import auth_routes
from flode.api.authentication import InsecureDevHeader
from flode.api.observability import Metrics, RequestLog, healthz, metrics_endpoint
from flode.api.routes import fhir_routes
from flode.audit.seal import Sealer
from flode.auth.keys import KeyRing
from flode.auth.server import Authorization
from flode.auth.tokens import Tokens
from flode.bulk import import_jobs
from flode.bulk.jobs import Exporter
from flode.config import Config
from flode.context import RequestContext
from flode.events.service import Events
from flode.events.settings import Settings as EventSettings
from flode.events.topic_store import publish_shipped
from flode.fhir.definitions import Definitions
from flode.fhir.errors import FhirError
from flode.fhir.search_parameters import SearchParameters
from flode.fhir.validation import Validator
from flode.interactions.services import Services
from flode.store.custom_parameters import CustomParameters
from flode.store.indexer import Indexer
from flode.store.migrate import migrate
from flode.store.reindex import Reindexer
from flode.store.repository import Store
from flode.store.search import SearchCompiler


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's full session reset (one more round
    trip per request). Flöde keeps no session state: locks are transaction-scoped, and asyncpg
    still rolls back a transaction left open."""


async def open_pool(database_url: str, config: Config) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        # Short OLTP statements: the JIT only costs time here.
        server_settings={"jit": "off"},
        reset=_keep_session,
    )
    assert pool is not None
    return pool


def build_services(pool: asyncpg.Pool, config: Config, database_url: str = "") -> Services:
    definitions = Definitions.load()
    registry = SearchParameters.load(definitions)
    indexer = Indexer(registry, definitions)
    compiler = SearchCompiler(registry, definitions.resource_types)
    return Services(
        store=Store(pool, indexer),
        definitions=definitions,
        validator=Validator(definitions),
        search=compiler,
        parameters=CustomParameters(pool, definitions, registry, compiler, indexer),
        reindexer=Reindexer(pool, indexer),
        tokens=Tokens(KeyRing(config.keys_dir)),
        exporter=Exporter(
            pool,
            compiler,
            config.export_path,
            max_file_bytes=config.export_file_max_bytes,
            expiry=timedelta(seconds=config.export_expiry_seconds),
            workers=config.export_workers,
            protected_identity_units=frozenset(config.protected_identity_units),
        ),
        importer=import_jobs.Importer(
            pool,
            import_jobs.Settings(
                database_url=database_url,
                data_dir=config.data_dir,
                work_dir=config.import_work_path,
                import_dir=config.import_dir,
                allowed_hosts=config.import_allowed_hosts,
                max_bytes=config.import_max_bytes,
                max_line_bytes=config.max_body_bytes,
            ),
            expiry=timedelta(seconds=config.export_expiry_seconds),
        ),
        events=Events(
            allowed_hosts=config.subscription_allowed_hosts,
            settings=EventSettings(
                poll_seconds=config.events_poll_seconds,
                retry_max_seconds=config.subscription_retry_max_seconds,
                error_after=config.subscription_error_after,
                retention_days=config.events_retention_days,
                topics_seconds=config.events_topics_seconds,
            ),
            nats_url=config.nats_url,
            nats_stream=config.nats_stream,
            dispatch=config.events_dispatch,
        ),
        default_page_size=config.default_page_size,
        max_page_size=config.max_page_size,
        protected_identity_units=frozenset(config.protected_identity_units),
    )


async def seed_demo(services: Services) -> int:
    """On a first start, write the demo region through the same update interaction any client
    uses (validated, versioned, indexed). Returns how many resources were written."""
    from flode.demo import demo_resources
    from flode.interactions.update import update

    if await services.store.pool.fetchval("SELECT EXISTS (SELECT 1 FROM resource)"):
        return 0
    ctx = RequestContext.system("demo")
    resources = demo_resources()
    for resource in resources:
        await update(services, ctx, resource["resourceType"], resource["id"], resource)
    return len(resources)


def build_app(config: Config, database_url: str, *, access_log: bool = True) -> Starlette:
    """The ASGI application. The database must be reachable at `database_url`."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await open_pool(database_url, config)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            services = build_services(pool, config, database_url)
            await services.parameters.refresh()
            if config.demo:
                await seed_demo(services)
            # After the demo, which seeds only an empty database.
            await publish_shipped(services)
            await services.reindexer.resume()
            await services.exporter.start()
            await services.importer.start()
            await services.events.start(services)
            sealer = Sealer(pool)  # the access log's hash chain (docs/audit.md)
            await sealer.start()
            # The authorization server; its revocations decide, per request, which tokens
            # that still verify are no longer good.
            auth = await Authorization.start(services, config)
            services.tokens.revoked = auth.revocations
            app.state.auth = auth
            app.state.services = services
            try:
                yield
            finally:
                await auth.close()
                await sealer.close()
                await services.events.close()
                await services.exporter.close()
                await services.importer.close()
                await services.reindexer.close()
        finally:
            await pool.close()

    exception_handlers: dict[Any, Any] = {
        FhirError: errors.fhir_error,
        HTTPException: errors.http_error,
        Exception: errors.unexpected_error,
    }
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            # Before the FHIR mount: [base]/.well-known/smart-configuration is one of them.
            *auth_routes(config.base_path),
            *module_routes.admin_routes(),  # /admin/modules
            # The base URL without its trailing slash: system search and transaction Bundles.
            Route(config.base_path, routes.system_search, methods=["GET"]),
            Route(config.base_path, routes.bundle, methods=["POST"]),
            Mount(config.base_path, routes=fhir_routes()),
        ],
        middleware=[
            Middleware(RequestLog, metrics=metrics, access_log=access_log),
            *([Middleware(InsecureDevHeader)] if config.insecure_dev else []),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    return app
