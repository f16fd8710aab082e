"""The websocket channel (channels.html#websockets): a client gets a binding token with
`$get-ws-binding-token`, binds with it, and receives the handshake and the notifications."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import websockets

from flode.config import Config

from .conftest import TOPICS, Server, running


@pytest.fixture
def dispatching_server(events_database: str, events_config: Config) -> Iterator[Server]:
    """A server whose own dispatcher runs: websocket clients are bound to it."""
    config = replace(events_config, events_dispatch=True, events_poll_seconds=0.2)
    with running(config, events_database) as server:
        yield server


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in body["parameter"]
        if any(k.startswith("value") for k in p)
    }


async def test_a_bound_websocket_receives_handshake_and_notifications(
    dispatching_server: Server,
) -> None:
    p = uuid.uuid4().hex[:10]
    async with httpx.AsyncClient(
        base_url=dispatching_server.base_url + "/", headers=dispatching_server.auth, timeout=30
    ) as fhir:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "websocket test",
            "criteria": TOPICS + "patient-data-changed",
            "_criteria": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                        "StructureDefinition/backport-filter-criteria",
                        "valueString": f"Patient?_id={p}",
                    }
                ]
            },
            "channel": {"type": "websocket", "payload": "application/fhir+json"},
        }
        created = await fhir.post("Subscription", json=body)
        assert created.status_code == 201, created.text
        id = created.json()["id"]
        granted = _parameters((await fhir.get(f"Subscription/{id}/$get-ws-binding-token")).json())
        assert granted["subscription"] == id
        async with websockets.connect(granted["websocket-url"]) as ws:
            await ws.send(f"bind-with-token {granted['token']}")
            handshake = json.loads(await asyncio.wait_for(ws.recv(), 10))
            status = _parameters(handshake["entry"][0]["resource"])
            assert status["type"] == "handshake"
            await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
            while True:
                note = json.loads(await asyncio.wait_for(ws.recv(), 10))
                status = _parameters(note["entry"][0]["resource"])
                if status["type"] == "event-notification":
                    break
            assert note["entry"][1]["fullUrl"].endswith(f"/Patient/{p}")
        assert (await fhir.get(f"Subscription/{id}")).json()["status"] == "active"


async def test_a_wrong_binding_token_binds_nothing(dispatching_server: Server) -> None:
    url = dispatching_server.base_url.replace("http://", "ws://") + "/Subscription/$websocket"
    async with websockets.connect(url) as ws:
        await ws.send("bind-with-token nonsense")
        assert "error" in json.loads(await asyncio.wait_for(ws.recv(), 10))
