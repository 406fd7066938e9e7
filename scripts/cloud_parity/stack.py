"""The deployment stood up on loopback: emulators, containers behind their front doors, the push
signers and the Eventarc notifier, started in dependency order and stopped together."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import identity, procs
from .bigquery import BigQueryEmulator, BigQueryProxy
from .cloudrun import CloudRunService
from .eventarc import Eventarc
from .plan import Deployment
from .pubsub import PubsubEmulator, PushSigner
from .storage import StorageEmulator, StorageProxy


@dataclass
class Tools:
    """Where the emulators and binaries are."""

    pubsub_emulator: str
    storage_emulator: str
    emulator_python: str
    bqemulator_wrapper: Path
    bin_dir: Path


class Stack:
    def __init__(self, deployment: Deployment, tools: Tools, work: Path):
        self.d = deployment
        self.tools = tools
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.issuer = identity.Issuer()
        self.jwks_port = procs.free_port()
        self.services = {name: CloudRunService(s, self.issuer, tools.bin_dir, self.logs)
                         for name, s in deployment.services.items()}
        self.doors = {name: svc.door_url for name, svc in self.services.items()}
        self.storage = StorageEmulator(tools.storage_emulator, work / "gcs", self.logs)
        self.eventarc = Eventarc(deployment, self.issuer, self.doors)
        self.proxy = StorageProxy(self.storage, self.eventarc.object_finalized)
        self.pubsub = PubsubEmulator(tools.pubsub_emulator, self.logs)
        self.bigquery = BigQueryEmulator(tools.emulator_python, tools.bqemulator_wrapper,
                                         self.storage.objects_root, deployment.project, self.logs)
        self.bigquery_proxy = BigQueryProxy(self.bigquery)
        self.signers: dict[str, PushSigner] = {}
        for s in deployment.subscriptions:
            if s.push_endpoint:
                target = deployment.service_at(s.push_endpoint)
                path = "/" + s.push_endpoint[len(target.url):].lstrip("/")
                self.signers[s.name] = PushSigner(s, self.issuer, self.doors[target.name], path)
        #: Services whose container did not start, with why.
        self.failed: dict[str, str] = {}
        #: What the emulators could not take from the plan.
        self.gaps: list[str] = []
        #: Triggers Eventarc would not create.
        self.refused_triggers: list[str] = []
        self.runners: list[web.AppRunner] = []

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.jwks_port}/oauth2/v3/certs"

    def emulator_env(self) -> dict[str, str]:
        """What each container gets beyond the plan's environment and Cloud Run's variables."""
        return {
            # The emulators, through the variables shared/src/config.rs reads; an http://
            # endpoint also makes the SDK clients use anonymous credentials.
            "PUBSUB_ENDPOINT": self.pubsub.endpoint,
            "STORAGE_ENDPOINT": self.proxy.url,
            "BIGQUERY_ENDPOINT": self.bigquery_proxy.url,
            # Google's signing keys, which a function off Cloud Run fetches to check a push
            # token: here the keys of this run's issuer (www.googleapis.com is unreachable).
            "PULSE_PUSH_JWKS_URL": self.jwks_url,
        }

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/oauth2/v3/certs", lambda _: web.json_response(self.issuer.jwks()))
        self.runners.append(await procs.serve(app, self.jwks_port))
        procs.log("starting the emulators (Cloud Storage, Pub/Sub, BigQuery)")
        await asyncio.gather(self.storage.start(self.d.project, list(self.d.buckets)),
                             self.pubsub.start(self.d.project), self.bigquery.start())
        await self.proxy.start()
        await self.bigquery_proxy.start()
        self.refused_triggers = await self.eventarc.start()
        self.gaps += await self.bigquery.create(self.d)
        procs.log(f"starting {len(self.services)} Cloud Run services: {', '.join(self.services)}")
        url_map = {s.url: self.doors[name] for name, s in self.d.services.items()}
        results = await asyncio.gather(
            *(svc.start(self.emulator_env(), url_map) for svc in self.services.values()),
            return_exceptions=True)
        for name, result in zip(self.services, results):
            if isinstance(result, BaseException):
                self.failed[name] = str(result)
                procs.log(f"SERVICE DID NOT START: {name}: {result}")
        for signer in self.signers.values():
            await signer.start()
        await self.pubsub.create(self.d, {name: s.url for name, s in self.signers.items()})

    async def stop(self) -> None:
        await asyncio.gather(*(svc.stop() for svc in self.services.values()), return_exceptions=True)
        for signer in self.signers.values():
            await signer.stop()
        await self.eventarc.stop()
        await self.proxy.stop()
        await self.bigquery_proxy.stop()
        for runner in self.runners:
            await runner.cleanup()
        for process in (self.pubsub.process, self.storage.process, self.bigquery.process):
            await process.stop(grace=5)
