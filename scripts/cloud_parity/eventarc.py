"""Eventarc, for the plan's Cloud Storage triggers: a `google.cloud.storage.object.v1.finalized`
CloudEvent (binary mode, Eventarc's) for each upload the storage proxy sees complete, delivered
when the trigger's matching criteria all hold, to the trigger's destination service and path,
with an ID token for the trigger's service account (audience: the service URL), and delivered
again with backoff on any answer other than 2xx, as Eventarc does.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from . import identity, procs
from .plan import Deployment, Trigger

FINALIZED = "google.cloud.storage.object.v1.finalized"
MAX_BACKOFF_SECONDS = 10


class Eventarc:
    def __init__(self, deployment: Deployment, issuer: identity.Issuer, doors: dict[str, str]):
        self.deployment, self.issuer, self.doors = deployment, issuer, doors
        self.pending = 0
        self.delivered: list[tuple[str, int]] = []  # (object name, status) of each attempt
        self.last_activity = time.monotonic()
        self.tasks: set[asyncio.Task] = set()
        self.refused: dict[str, str] = {}
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> list[str]:
        """Starts delivering; returns the triggers Eventarc would refuse to create."""
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        for trigger in self.deployment.triggers:
            bucket = trigger.criteria.get("bucket")
            location = self.deployment.buckets.get(bucket)
            # A Cloud Storage trigger must be in its bucket's location (a region, or the
            # multi-region itself): Eventarc refuses any other, and nothing is delivered.
            if location and location.lower() != trigger.location.lower():
                self.refused[trigger.name] = (f"Eventarc trigger {trigger.name} is in {trigger.location}, "
                                              f"its bucket {bucket} in {location}: Eventarc refuses it")
        return list(self.refused.values())

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.http:
            await self.http.close()

    async def object_finalized(self, obj: dict) -> None:
        attributes = {"type": FINALIZED, "bucket": obj["bucket"]}
        for trigger in self.deployment.triggers:
            if trigger.name in self.refused:
                continue
            if all(attributes.get(k) == v for k, v in trigger.criteria.items()):
                task = asyncio.create_task(self.deliver(trigger, obj))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def deliver(self, trigger: Trigger, obj: dict) -> None:
        service = self.deployment.services[trigger.service]
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": f"{obj['bucket']}/{obj['name']}/{obj['generation']}",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
            "ce-type": FINALIZED,
            "ce-subject": f"objects/{obj['name']}",
            "ce-time": obj.get("updated") or obj.get("timeCreated") or "",
            "ce-bucket": obj["bucket"],
        }
        body = json.dumps(obj).encode()
        backoff = 1.0
        self.pending += 1
        try:
            while True:
                token = self.issuer.id_token(trigger.service_account, service.url)
                try:
                    async with self.http.post(self.doors[service.name] + trigger.path, data=body,
                                              headers={**headers, "Authorization": f"Bearer {token}"}) as r:
                        status = r.status
                except aiohttp.ClientError:
                    status = 502
                self.delivered.append((obj["name"], status))
                self.last_activity = time.monotonic()
                if status < 300:
                    return
                procs.log(f"Eventarc: {trigger.name} delivery of {obj['name']} answered {status}; again in {backoff:.0f} s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        finally:
            self.pending -= 1
            self.last_activity = time.monotonic()
