"""The `pulse demo` scenario against the cloud-mode stack, its counts, and the refusals."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import identity, procs
from .procs import Failure
from .plan import Service
from .stack import Stack

#: shared/src/config.rs defaults, used when the plan sets no PULSE_*_PREFIX for a function.
DEFAULT_PREFIXES = {"PULSE_RAW_PREFIX": "raw/", "PULSE_DEAD_LETTER_PREFIX": "dead-letter/"}
#: No delivery for this long, and none pending, is "settled".
QUIET_SECONDS = 3.0


@dataclass
class CloudCounts:
    published: int | None = None
    raw_objects: int = 0
    processed_messages: int = 0
    tables: dict[str, dict] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    given_up: int = 0
    unsettled: list[str] = field(default_factory=list)


def env_of(stack: Stack, binary: str, name: str, default: str | None = None) -> str:
    value = stack.d.service_by_binary(binary).env.get(name) or default
    if value is None:
        raise Failure(f"the plan gives {binary} no {name}")
    return value


def operator_of(service: Service) -> str:
    """A person the plan lets invoke `service` (the demo is started by one)."""
    people = sorted(m.removeprefix("user:") for m in service.invokers if m.startswith("user:"))
    if not people:
        raise Failure(f"the plan grants no `user:` member run.invoker on {service.name}; "
                         "scripts/cloud_parity/parity.tfvars names an operator for that")
    return people[0]


async def run_demo(stack: Stack, local: dict, fixture: Path, settle_timeout: float) -> CloudCounts:
    """Starts the scenario on the event generator as an operator would, drops the Parquet file
    into the landing bucket, waits until every delivery is settled, and counts what is stored."""
    counts = CloudCounts()
    generator = stack.d.service_by_binary("event-generator")
    door = stack.doors[generator.name]
    token = stack.issuer.id_token(operator_of(generator), generator.url)
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        # The whole scenario at once, as `pulse demo` sends it (the events do not depend on pace).
        run = {"scenario": local["scenario"], "seed": local["seed"], "duration": "1s"}
        async with http.post(f"{door}/jobs", json=run, headers=auth) as r:
            job = await r.json(content_type=None)
            if r.status != 202:
                raise Failure(f"the event generator refused the run: {r.status} {job}")
        procs.log(f"event generator job {job['id']}: {job['planned']} messages, seed {job['seed']}")
        landing = env_of(stack, "parquet-loader", "PULSE_LANDING_BUCKET")
        name = local["parquet"]["object"]
        url = f"{stack.proxy.url}/upload/storage/v1/b/{landing}/o"
        params = {"uploadType": "media", "name": name, "ifGenerationMatch": "0"}
        async with http.post(url, params=params, data=fixture.read_bytes(),
                             headers={"Content-Type": "application/vnd.apache.parquet"}) as r:
            if r.status >= 300:
                raise Failure(f"uploading {name} to gs://{landing}: {r.status} {await r.text()}")
        procs.log(f"uploaded gs://{landing}/{name}")
        deadline = time.monotonic() + 60
        while job["state"] == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            async with http.get(f"{door}/jobs/{job['id']}", headers=auth) as r:
                job = await r.json(content_type=None)
        if job["state"] != "completed":
            counts.unsettled.append(f"event generator job {job['id']} is {job['state']}: {job.get('error')}")
        counts.published = job.get("sent")
    counts.unsettled += await settle(stack, settle_timeout)
    await count_stored(stack, counts)
    return counts


async def settle(stack: Stack, timeout: float) -> list[str]:
    """Waits until no push or event is pending or in flight and nothing moved for a while."""
    started = time.monotonic()
    while True:
        busy = [s.describe_unsettled() for s in stack.signers.values() if s.unsettled() or s.in_flight]
        if stack.eventarc.pending:
            busy.append(f"Eventarc: {stack.eventarc.pending} event(s) not yet accepted "
                        f"(answers so far: {[status for _, status in stack.eventarc.delivered]})")
        last = max([s.last_activity for s in stack.signers.values()] + [stack.eventarc.last_activity])
        if not busy and time.monotonic() - last > QUIET_SECONDS:
            procs.log(f"settled after {time.monotonic() - started:.1f} s")
            return []
        if time.monotonic() - started > timeout:
            return [f"NOT SETTLED after {timeout:.0f} s: " + "; ".join(busy or ["deliveries still moving"])]
        await asyncio.sleep(0.5)


async def count_stored(stack: Stack, counts: CloudCounts) -> None:
    raw_bucket = env_of(stack, "preprocess", "PULSE_RAW_BUCKET")
    prefix = {k: env_of(stack, "preprocess", k, v) for k, v in DEFAULT_PREFIXES.items()}
    counts.raw_objects = len(await stack.storage.list(raw_bucket, prefix["PULSE_RAW_PREFIX"]))
    dead = prefix["PULSE_DEAD_LETTER_PREFIX"]
    for obj in await stack.storage.list(raw_bucket, dead):
        reason = obj[len(dead):].split("/")[0]
        counts.dead_letters[reason] = counts.dead_letters.get(reason, 0) + 1
    processed = env_of(stack, "preprocess", "PULSE_PROCESSED_TOPIC")
    topic = f"projects/{stack.d.project}/topics/{processed}"
    messages = set()
    for signer in stack.signers.values():
        if signer.s.topic == topic:
            messages |= signer.messages()
    counts.processed_messages = len(messages)
    counts.tables = await stack.bigquery.table_counts(env_of(stack, "table-manager", "PULSE_DATASET"))
    for s in stack.d.subscriptions:
        if not s.push_endpoint and any(x.dead_letter_topic == s.topic for x in stack.d.subscriptions):
            counts.given_up += await stack.pubsub.pull_count(stack.d.project, s.name)


# --- the refusals ----------------------------------------------------------------------------
async def refusals(stack: Stack) -> list[tuple[str, int, int]]:
    """(what, expected status, status got): requests Cloud Run or a function must refuse, and
the health route an operator must reach from outside."""
    preprocess = stack.d.service_by_binary("preprocess")
    door = stack.doors[preprocess.name]
    push = next(s for s in stack.d.subscriptions if s.push_endpoint and s.push_endpoint.startswith(preprocess.url))
    outsider = next(s.service_account for s in stack.d.services.values()
                    if identity.member(s.service_account) not in preprocess.invokers)
    body = json.dumps({"message": {"data": "e30=", "messageId": "refusal-1", "attributes": {}},
                       "subscription": f"projects/{stack.d.project}/subscriptions/{push.name}"})
    checks = []
    async with aiohttp.ClientSession() as http:
        async def status(url: str, token: str | None, method: str = "POST", data: str = body) -> int:
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            async with http.request(method, url, data=data if method == "POST" else None, headers=headers) as r:
                return r.status

        checks.append((f"no token, to {preprocess.name} (Cloud Run)", 401, await status(door + "/", None)))
        token = stack.issuer.id_token(outsider, preprocess.url)
        checks.append((f"token of {outsider}, not an invoker of {preprocess.name}", 403,
                       await status(door + "/", token)))
        operator = operator_of(preprocess)
        checks.append((f"GET /healthz on {preprocess.name} from outside (reserved path)", 404,
                       await status(door + "/healthz", stack.issuer.id_token(operator, preprocess.url), "GET")))
        # Paths ending in `z` stay inside Cloud Run; people and smoke tests need another.
        for service in stack.d.services.values():
            token = stack.issuer.id_token(operator_of(service), service.url)
            checks.append((f"GET /health on {service.name} by an operator", 200,
                           await status(stack.doors[service.name] + "/health", token, "GET")))
        # The push identity invokes the whole service; the function itself keeps it off the
        # manual routes, which take the operators' tokens.
        replay, nothing = door + "/replay", json.dumps({"events": []})
        push_token = stack.issuer.id_token(push.oidc_service_account, preprocess.url)
        checks.append((f"push token on {preprocess.name}'s /replay (a manual route)", 403,
                       await status(replay, push_token, data=nothing)))
        checks.append((f"operator token on {preprocess.name}'s /replay", 200,
                       await status(replay, stack.issuer.id_token(operator, preprocess.url), data=nothing)))
        stripped = identity.strip_signature(stack.issuer.id_token(push.oidc_service_account, push.oidc_audience))
        off_cloud_run = await start_off_cloud_run(stack, preprocess)
        try:
            checks.append((f"push token with its signature removed, straight to {preprocess.binary} "
                           "not on Cloud Run (no K_SERVICE)", 401, await status(off_cloud_run[0], stripped)))
        finally:
            await off_cloud_run[1].stop()
    return checks


async def start_off_cloud_run(stack: Stack, service: Service) -> tuple[str, procs.Process]:
    """The same binary with the same configuration, minus Cloud Run's variables."""
    svc = stack.services[service.name]
    port = procs.free_port()
    env = svc.container_env(stack.emulator_env(), {})
    for name in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION", "GCE_METADATA_HOST"):
        env.pop(name, None)
    env["PORT"] = str(port)
    process = procs.Process(f"{service.binary}-off-cloud-run", [str(svc.binary)], stack.logs, env)
    await process.start()
    await process.wait_http(f"http://127.0.0.1:{port}/healthz")
    return f"http://127.0.0.1:{port}/", process
