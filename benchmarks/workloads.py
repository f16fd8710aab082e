"""The workloads, in the order they run: each builds on what the ones before it wrote."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.loadgen import RequestFactory, ResponseHook, request
from benchmarks.patients import PatientFactory


@dataclass(slots=True)
class State:
    """What the run knows about the server's data: the Patients it created."""

    port: int
    patients: PatientFactory
    random: random.Random
    ids: list[str] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def some_id(self) -> str:
        if not self.ids:
            raise RuntimeError("no Patient was created, so there is nothing to read or update")
        return self.ids[self.random.randrange(len(self.ids))]


Build = Callable[[State], tuple[RequestFactory, ResponseHook | None]]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    request: str
    build: Build
    sequential: bool = False


def create(state: State) -> tuple[RequestFactory, ResponseHook | None]:
    def make() -> bytes:
        body = orjson.dumps(state.patients.patient())
        return request("POST", "/fhir/Patient", state.port, body)

    def created(status: int, head: bytes, body: bytes) -> None:
        resource = orjson.loads(body)
        id = resource["id"]
        state.ids.append(id)
        state.resources[id] = resource

    return make, created


def read(state: State) -> tuple[RequestFactory, ResponseHook | None]:
    def make() -> bytes:
        return request("GET", f"/fhir/Patient/{state.some_id()}", state.port)

    return make, None


def update(state: State) -> tuple[RequestFactory, ResponseHook | None]:
    def make() -> bytes:
        id = state.some_id()
        body = orjson.dumps(state.patients.updated(state.resources[id]))
        return request("PUT", f"/fhir/Patient/{id}", state.port, body)

    return make, None


def instance_history(state: State) -> tuple[RequestFactory, ResponseHook | None]:
    def make() -> bytes:
        return request("GET", f"/fhir/Patient/{state.some_id()}/_history", state.port)

    return make, None


def type_history(state: State) -> tuple[RequestFactory, ResponseHook | None]:
    payload = request("GET", "/fhir/Patient/_history?_count=50", state.port)
    return (lambda: payload), None


WORKLOADS = (
    Workload("create", "POST /Patient", create),
    Workload("read", "GET /Patient/{id}", read),
    Workload("read, sequential", "GET /Patient/{id}", read, sequential=True),
    Workload("update", "PUT /Patient/{id}", update),
    Workload("history, instance", "GET /Patient/{id}/_history", instance_history),
    Workload("history, type", "GET /Patient/_history?_count=50", type_history),
)
