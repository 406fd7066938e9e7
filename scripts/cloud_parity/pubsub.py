"""Pub/Sub: Google's emulator with the plan's topics and subscriptions, and the push signer.

The emulator pushes to `http://` endpoints, retries with backoff and dead-letters after
`max_delivery_attempts` (all checked here), but it neither signs pushes with the
subscription's OIDC identity nor applies subscription filters to push deliveries (it pushes
every message). So each push subscription points the emulator at a signer, which does what
Pub/Sub does before a push leaves Google: a message the subscription's filter excludes is
acknowledged and never delivered; any other is sent to the plan's push endpoint (the service's
front door) with an ID token for the subscription's `oidc_token` identity and audience. The
answer goes back to the emulator, which acknowledges or redelivers on it.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from . import identity, procs
from .procs import Failure
from .plan import Deployment, Subscription


class PubsubEmulator:
    def __init__(self, binary: str, logs: Path):
        self.port = procs.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = procs.Process("pubsub-emulator", [binary, "--host=127.0.0.1", f"--port={self.port}"], logs)

    async def start(self, project: str) -> None:
        await self.process.start()
        await self.process.wait_http(f"{self.endpoint}/v1/projects/{project}/topics", timeout=120)

    async def put(self, path: str, body: dict | None = None) -> dict:
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{self.endpoint}/v1/{path}", json=body or {}) as r:
                answer = await r.json(content_type=None)
                if r.status >= 300:
                    raise Failure(f"Pub/Sub emulator refused PUT {path}: {answer}")
                return answer

    async def create(self, deployment: Deployment, push_endpoints: dict[str, str]) -> None:
        """The plan's topics, then its subscriptions, pushes pointed at `push_endpoints`."""
        for topic in deployment.topics:
            await self.put(topic)
        for s in deployment.subscriptions:
            body: dict = {"topic": s.topic, "filter": s.filter}
            if s.ack_deadline_seconds:
                body["ackDeadlineSeconds"] = s.ack_deadline_seconds
            if s.push_endpoint:
                body["pushConfig"] = {"pushEndpoint": push_endpoints[s.name]}
            if s.dead_letter_topic:
                body["deadLetterPolicy"] = {"deadLetterTopic": s.dead_letter_topic,
                                            "maxDeliveryAttempts": s.max_delivery_attempts}
            if s.retry_policy:
                body["retryPolicy"] = {"minimumBackoff": s.retry_policy.get("minimum_backoff"),
                                       "maximumBackoff": s.retry_policy.get("maximum_backoff")}
            await self.put(f"projects/{deployment.project}/subscriptions/{s.name}", body)

    async def pull_count(self, project: str, subscription: str) -> int:
        """Messages waiting in a pull subscription (left unacknowledged)."""
        url = f"{self.endpoint}/v1/projects/{project}/subscriptions/{subscription}:pull"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"maxMessages": 1000, "returnImmediately": True}) as r:
                return len((await r.json(content_type=None)).get("receivedMessages", []))


# --- subscription filters --------------------------------------------------------------------
TOKEN = re.compile(r'\s*(?:(\()|(\))|(AND|OR|NOT)\b|(-)|"((?:[^"\\]|\\.)*)"|(!=|=|:)'
                   r'|(hasPrefix)|(,)|(attributes\.[A-Za-z0-9_.-]+|attributes)|([A-Za-z_][A-Za-z0-9_-]*))')


def tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    kinds = ["(", ")", "op", "-", "str", "cmp", "fn", ",", "attr", "ident"]
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if not m:
            raise Failure(f"subscription filter {text!r}: cannot read it at {text[pos:]!r}")
        kind = next(k for k, g in zip(kinds, m.groups()) if g is not None)
        out.append((kind, m.group(m.lastindex)))
        pos = m.end()
    return out


def matches(text: str, attributes: dict[str, str]) -> bool:
    """Pub/Sub's filter language on message attributes: `attributes.K = "v"`, `!=`,
    `attributes:K`, `hasPrefix(attributes.K, "p")`, `AND`, `OR`, `NOT`/`-`, parentheses."""
    if not text.strip():
        return True
    toks = tokens(text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take(kind):
        nonlocal pos
        if peek()[0] != kind:
            raise Failure(f"subscription filter {text!r}: expected {kind} at token {pos}")
        pos += 1
        return toks[pos - 1][1]

    def key(attr):
        return attr.removeprefix("attributes.")

    def primary():
        kind, _ = peek()
        if kind == "(":
            take("(")
            value = disjunction()
            take(")")
            return value
        if kind == "op" and peek()[1] == "NOT" or kind == "-":
            take(kind)
            return not primary()
        if kind == "fn":
            take("fn"), take("(")
            attr = take("attr")
            take(",")
            prefix = take("str")
            take(")")
            return attributes.get(key(attr), "").startswith(prefix) if key(attr) in attributes else False
        attr = take("attr")
        op = take("cmp")
        if op == ":":
            name = take("ident") if peek()[0] == "ident" else take("str")
            return name in attributes
        value = take("str")
        present = key(attr) in attributes
        return (present and attributes[key(attr)] == value) if op == "=" else (not present or attributes[key(attr)] != value)

    def conjunction():
        value = primary()
        while peek() == ("op", "AND"):
            take("op")
            value = primary() and value
        return value

    def disjunction():
        value = conjunction()
        while peek() == ("op", "OR"):
            take("op")
            value = conjunction() or value
        return value

    result = disjunction()
    if pos != len(toks):
        raise Failure(f"subscription filter {text!r}: unexpected {toks[pos:]}")
    return result


# --- the push signer -------------------------------------------------------------------------
@dataclass
class Delivery:
    attempts: int = 0
    statuses: list[int] = field(default_factory=list)


class PushSigner(procs.LoopbackServer):
    """What Pub/Sub does for one push subscription between the emulator and the endpoint."""

    def __init__(self, subscription: Subscription, issuer: identity.Issuer, door_url: str, path: str):
        super().__init__()
        self.s, self.issuer = subscription, issuer
        self.target = door_url + path
        self.url = f"http://127.0.0.1:{self.port}/"
        self.deliveries: dict[str, Delivery] = {}
        self.filtered: set[str] = set()
        self.in_flight = 0
        self.last_activity = time.monotonic()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/", self.push)
        await self.serve(app, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)))

    async def push(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = json.loads(body)["message"]
        message_id = message.get("messageId") or message.get("message_id")
        self.last_activity = time.monotonic()
        if not matches(self.s.filter, message.get("attributes") or {}):
            self.filtered.add(message_id)
            return web.Response(status=204)
        audience = self.s.oidc_audience or self.s.push_endpoint
        token = self.issuer.id_token(self.s.oidc_service_account, audience)
        delivery = self.deliveries.setdefault(message_id, Delivery())
        delivery.attempts += 1
        self.in_flight += 1
        try:
            async with self.http.post(self.target, data=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
            }) as r:
                status = r.status
        except aiohttp.ClientError:
            status = 502
        finally:
            self.in_flight -= 1
            self.last_activity = time.monotonic()
        delivery.statuses.append(status)
        return web.Response(status=status)

    def messages(self) -> set[str]:
        """Every message of the topic the emulator offered this subscription."""
        return set(self.deliveries) | self.filtered

    def unsettled(self) -> dict[str, Delivery]:
        """Messages neither acknowledged (2xx) nor out of attempts (then dead-lettered)."""
        limit = self.s.max_delivery_attempts or 10**9
        return {m: d for m, d in self.deliveries.items()
                if not (d.statuses and d.statuses[-1] < 300) and d.attempts < limit}

    def describe_unsettled(self) -> str:
        pending = self.unsettled()
        answers = Counter(d.statuses[-1] if d.statuses else "none" for d in pending.values())
        return f"{self.s.name}: {len(pending)} message(s) not acknowledged (last answers {dict(answers)})"
