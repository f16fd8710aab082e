"""A clinician's subscription is held to the Swedish rules (docs/access-control.md): it hears
nothing of data the clinician could not read — blocked data, another provider's data without
consent, or a patient without a care relationship."""

from __future__ import annotations

import uuid

import httpx

from access.region import Region
from flode.config import Config

from .conftest import Receiver, Server, Start, eventually, status_of, subscribe, subscription
from .test_rest_hook import lab


async def test_a_clinicians_subscription_does_not_hear_of_hidden_data(
    fhir: httpx.AsyncClient,
    events_server: Server,
    events_config: Config,
    dispatchers: Start,
    receiver: Receiver,
) -> None:
    region = Region(events_server.base_url, events_server.root_url, events_config, fhir)
    await region.build()
    try:
        cared, stranger = await region.patient("cared"), await region.patient("stranger")
        for unit in ("A1", "A2", "B1"):
            await region.encounter(cared, unit)
        await region.encounter(stranger, "A2")
        await region.consent(cared, "deny", "A2")
        reader = region.clinician("A1")
        await dispatchers()
        id = await subscribe(reader, subscription("lab-result-final", receiver.url))
        await eventually(lambda: _active(reader, id))
        tag = uuid.uuid4().hex[:8]
        await region.put(lab(f"{tag}-blocked", cared), region.clinician("A2"))
        await region.put(lab(f"{tag}-stranger", stranger), region.clinician("A2"))
        await region.put(lab(f"{tag}-other-provider", cared), region.clinician("B1"))
        await region.put(lab(f"{tag}-own", cared), region.clinician("A1"))
        await eventually(lambda: len(receiver.numbers()) >= 1)
        focus = [f.rsplit("/", 1)[-1] for n in receiver.notifications() for f in n.focus]
        assert focus == [f"{tag}-own"]
        assert "blocked" not in str([n.body for n in receiver.received])
    finally:
        await region.close()


async def _active(client: httpx.AsyncClient, id: str) -> bool:
    return await status_of(client, id) == "active"
