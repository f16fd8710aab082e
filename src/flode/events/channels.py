"""Channels: how a notification Bundle reaches a subscriber. `RestHook` POSTs it to the
Subscription's endpoint (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#rest-hook);
`WebSockets` hands it to the websocket clients bound to the Subscription on this node."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx2

from flode.events.endpoints import EndpointPolicy
from flode.events.subscription import Spec


@dataclass(frozen=True, slots=True)
class Attempt:
    """What came of one delivery: `ok` when the receiver took it (2xx)."""

    ok: bool
    http_status: int | None
    latency_ms: float
    error: str | None = None


class RestHook:
    def __init__(self, endpoints: EndpointPolicy) -> None:
        self.endpoints = endpoints
        # No proxies from the environment, no redirects: the endpoint checked is the one used.
        self.client = httpx2.AsyncClient(trust_env=False, follow_redirects=False)

    async def send(self, spec: Spec, body: bytes) -> Attempt:
        assert spec.endpoint is not None
        started = time.perf_counter()
        reason = await self.endpoints.resolve(spec.endpoint)
        if reason is not None:
            return Attempt(False, None, 0.0, f"refused: {reason}")
        headers = {"Content-Type": spec.mime_type, "User-Agent": "Flode-Subscriptions"}
        headers.update(spec.headers)
        try:
            response = await self.client.post(
                spec.endpoint, content=body, headers=headers, timeout=spec.timeout
            )
        except httpx2.HTTPError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Attempt(False, None, elapsed, f"{type(exc).__name__}: {exc}"[:500])
        elapsed = (time.perf_counter() - started) * 1000
        if 200 <= response.status_code < 300:
            return Attempt(True, response.status_code, elapsed)
        return Attempt(
            False, response.status_code, elapsed, f"the endpoint answered {response.status_code}"
        )

    async def close(self) -> None:
        await self.client.aclose()


Send = Callable[[str], Awaitable[None]]


class WebSockets:
    """The websocket clients bound to each Subscription on this node."""

    def __init__(self) -> None:
        self.bound: dict[str, set[Send]] = {}

    def bind(self, subscription_id: str, send: Send) -> None:
        self.bound.setdefault(subscription_id, set()).add(send)

    def unbind(self, subscription_id: str, send: Send) -> None:
        clients = self.bound.get(subscription_id)
        if clients is not None:
            clients.discard(send)
            if not clients:
                del self.bound[subscription_id]

    def has(self, subscription_id: str) -> bool:
        return bool(self.bound.get(subscription_id))

    async def send(self, subscription_id: str, body: bytes) -> Attempt:
        started = time.perf_counter()
        clients = list(self.bound.get(subscription_id, ()))
        if not clients:
            return Attempt(False, None, 0.0, "no websocket client is bound to the subscription")
        delivered = 0
        error = None
        for send in clients:
            try:
                await send(body.decode())
                delivered += 1
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.unbind(subscription_id, send)
        elapsed = (time.perf_counter() - started) * 1000
        return Attempt(delivered > 0, None, elapsed, None if delivered else error)
