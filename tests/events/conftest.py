"""Fixtures for events: a Flöde server on a database of its own whose dispatcher is off, so
that each test runs the dispatchers it needs (stops them, restarts them, runs two); real HTTP
receivers on the loopback interface."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from flode.app import build_app, build_services, open_pool
from flode.auth.local import issue_local
from flode.config import Config
from flode.events.dispatcher import Dispatcher
from flode.events.settings import Settings
from flode.interactions.services import Services
from serving import serving

FAST = Settings(poll_seconds=0.2, retry_base_seconds=0.05, retry_max_seconds=0.4, error_after=3)
TOPICS = "http://flode.example.org/SubscriptionTopic/"


@dataclass(frozen=True)
class Server:
    base_url: str
    root_url: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def running(config: Config, database_url: str) -> Iterator[Server]:
    """A real Flöde HTTP server on a free loopback port, for as long as the block runs."""
    with serving(build_app(config, database_url, access_log=False)) as port:
        root = f"http://127.0.0.1:{port}"
        yield Server(f"{root}/fhir", root, issue_local(config, root, lifetime=24 * 3600))


@pytest.fixture(scope="session")
def events_database(database_url: str) -> str:
    """A database of its own in the test cluster."""

    async def create() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP DATABASE IF EXISTS flode_events WITH (FORCE)")
            await conn.execute("CREATE DATABASE flode_events")
        finally:
            await conn.close()

    asyncio.run(create())
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/flode_events"))


@pytest.fixture(scope="session")
def events_config(test_config: Config) -> Config:
    return replace(test_config, events_dispatch=False)


@pytest.fixture(scope="session")
def events_server(events_database: str, events_config: Config) -> Iterator[Server]:
    with running(events_config, events_database) as server:
        yield server


@pytest.fixture
async def fhir(events_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An operator's client of the events server."""
    async with httpx.AsyncClient(
        base_url=events_server.base_url + "/", timeout=30, headers=events_server.auth
    ) as client:
        yield client


@pytest.fixture
async def as_token(
    events_server: Server, events_config: Config
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """A factory of clients whose tokens have the scopes (and launch patient) given."""
    clients: list[httpx.AsyncClient] = []

    def make(*scopes: str, patient: str | None = None, client_id: str = "module") -> Any:
        context = {"patient": patient} if patient is not None else None
        token = issue_local(
            events_config, events_server.root_url, scopes, client_id=client_id, context=context
        )
        client = httpx.AsyncClient(
            base_url=events_server.base_url + "/",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
async def events_services(
    events_server: Server, events_database: str, events_config: Config
) -> AsyncIterator[Services]:
    """Services over the events database, for dispatchers run by the tests."""
    pool = await open_pool(events_database, events_config)
    yield build_services(pool, events_config)
    await pool.close()


Start = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def dispatchers(events_services: Services) -> AsyncIterator[Start]:
    """Starts dispatchers (each a node of its own); all are stopped at the end."""
    started: list[Dispatcher] = []
    events = events_services.events

    async def start(settings: Settings = FAST, **kwargs: Any) -> Dispatcher:
        dispatcher = Dispatcher(
            events_services, events.topics, events.endpoints, settings, **kwargs
        )
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        await dispatcher.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def status(self) -> dict[str, str]:
        """The SubscriptionStatus parameters with a simple value, by name."""
        parameters = self.body["entry"][0]["resource"]["parameter"]
        found = {}
        for p in parameters:
            for key, value in p.items():
                if key.startswith("value"):
                    found[p["name"]] = value if isinstance(value, str) else json.dumps(value)
        return found

    @property
    def kind(self) -> str:
        return self.status["type"]

    @property
    def numbers(self) -> list[int]:
        parameters = self.body["entry"][0]["resource"]["parameter"]
        return [
            int(part["valueString"])
            for p in parameters
            if p["name"] == "notification-event"
            for part in p["part"]
            if part["name"] == "event-number"
        ]

    @property
    def focus(self) -> list[str]:
        parameters = self.body["entry"][0]["resource"]["parameter"]
        return [
            part["valueReference"]["reference"]
            for p in parameters
            if p["name"] == "notification-event"
            for part in p["part"]
            if part["name"] == "focus"
        ]


@dataclass
class Receiver:
    """A rest-hook endpoint on the loopback interface that records what it is sent."""

    received: list[Received] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a sender that went away mid-request does not hold a thread forever

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver.received.append(Received(self.path, dict(self.headers), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # stopping does not wait for requests in flight
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def notifications(self) -> list[Received]:
        return [r for r in self.received if r.kind == "event-notification"]

    def numbers(self) -> list[int]:
        return [n for r in self.notifications() for n in r.numbers]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.start()
    yield found
    found.stop()


async def eventually(check: Callable[[], Any], within: float = 15.0) -> Any:
    """Wait until `check()` is truthy (or an awaitable of a truthy value); return it."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def subscription(
    topic: str,
    endpoint: str,
    *filters: str,
    content: str = "id-only",
    heartbeat: int | None = None,
    max_count: int | None = None,
) -> dict[str, Any]:
    """A Subscription in the backport profile."""
    extensions: list[dict[str, Any]] = [
        {
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
            "backport-timeout",
            "valueUnsignedInt": 5,
        }
    ]
    if heartbeat is not None:
        extensions.append(
            {
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "backport-heartbeat-period",
                "valueUnsignedInt": heartbeat,
            }
        )
    if max_count is not None:
        extensions.append(
            {
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "backport-max-count",
                "valuePositiveInt": max_count,
            }
        )
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {
            "profile": [
                "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "backport-subscription"
            ]
        },
        "status": "requested",
        "reason": "test",
        "criteria": TOPICS + topic,
        "channel": {
            "extension": extensions,
            "type": "rest-hook",
            "endpoint": endpoint,
            "header": ["Authorization: Bearer receiver-secret"],
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                        "StructureDefinition/backport-payload-content",
                        "valueCode": content,
                    }
                ]
            },
        },
    }
    if filters:
        resource["_criteria"] = {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                    "backport-filter-criteria",
                    "valueString": f,
                }
                for f in filters
            ]
        }
    return resource


async def subscribe(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await client.post("Subscription", json=resource)
    assert response.status_code == 201, response.text
    id: str = response.json()["id"]
    return id


async def status_of(client: httpx.AsyncClient, id: str) -> str:
    response = await client.get(f"Subscription/{id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


@pytest.fixture(autouse=True)
async def subscriptions_off(events_services: Services) -> AsyncIterator[None]:
    """Each test's subscriptions end with it: later tests' dispatchers leave them alone."""
    yield
    await events_services.store.pool.execute("UPDATE subscription SET status = 'off'")


R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
REGION_TOPICS = "http://region.example.se/SubscriptionTopic/"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def condition_recorded(
    id: str, current: str = "clinical-status=active", status: str = "active"
) -> dict[str, Any]:
    """An administrator's topic (the IG's R4 Basic, R5 extension URLs): a Condition is created
    with a clinical status that matches `current`. Its url ends with `id`."""
    return {
        "resourceType": "Basic",
        "id": id,
        "modifierExtension": [{"url": f"{R5_TOPIC}status", "valueCode": status}],
        "extension": [
            {"url": f"{R5_TOPIC}url", "valueUri": REGION_TOPICS + id},
            {"url": f"{R5_TOPIC}title", "valueString": "Condition recorded"},
            {
                "url": f"{R5_TOPIC}resourceTrigger",
                "extension": [
                    {"url": "description", "valueMarkdown": "A Condition is recorded."},
                    {
                        "url": "resource",
                        "valueUri": "http://hl7.org/fhir/StructureDefinition/Condition",
                    },
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {
                        "url": "queryCriteria",
                        "extension": [{"url": "current", "valueString": current}],
                    },
                ],
            },
            {
                "url": f"{R5_TOPIC}canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Condition"},
                    {"url": "filterParameter", "valueString": "patient"},
                ],
            },
        ],
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }


def condition(id: str, patient: str, clinical: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "code": {"text": "Asthma"},
        "subject": {"reference": f"Patient/{patient}"},
    }


Define = Callable[[dict[str, Any]], Awaitable[httpx.Response]]


@pytest.fixture
async def define_topic(fhir: httpx.AsyncClient) -> AsyncIterator[Define]:
    """PUTs topics as the operator (an administrator); each is deleted when the test ends, so
    the next tests see the shipped topics only."""
    ids: list[str] = []

    async def define(topic: dict[str, Any]) -> httpx.Response:
        ids.append(topic["id"])
        return await fhir.put(f"Basic/{topic['id']}", json=topic)

    yield define
    for id in dict.fromkeys(ids):
        await fhir.delete(f"Basic/{id}")
