"""Cloud Run, as a function sees it: one container per service, the binary its image ships, with
the environment the plan gives it, a metadata server for its identity, and a front door that
does what Cloud Run's does before a request reaches the container:

- a request without a Google-signed ID token, or with a bad one, or whose `aud` is neither the
  service URL nor one of its custom audiences, is answered 401;
- a valid token whose `email` the plan does not grant roles/run.invoker on the service: 403;
- paths ending in `z` (`/healthz`) never reach the container from outside: 404;
- otherwise the request goes on with the token's signature replaced by
  `SIGNATURE_REMOVED_BY_GOOGLE`, as Cloud Run hands it over.
Stopping sends SIGTERM and waits 10 s before SIGKILL, as Cloud Run does.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from . import identity, procs
from .procs import Failure
from .plan import Service

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


class CloudRunService:
    def __init__(self, service: Service, issuer: identity.Issuer, bin_dir: Path, logs: Path):
        self.service, self.issuer = service, issuer
        self.binary = bin_dir / service.binary
        self.logs = logs
        self.container_port = procs.free_port()
        self.door_port = procs.free_port()
        self.metadata_port = procs.free_port()
        self.door_url = f"http://127.0.0.1:{self.door_port}"
        self.process: procs.Process | None = None
        self.runners: list[web.AppRunner] = []
        self.http: aiohttp.ClientSession | None = None
        #: (status, path) of every request the front door answered itself.
        self.refused: list[tuple[int, str]] = []

    # --- the container -------------------------------------------------------------------
    def container_env(self, extra: dict[str, str], url_map: dict[str, str]) -> dict[str, str]:
        """The plan's environment for this service, plus Cloud Run's own variables and `extra`.

        A value that is another service's URL (inference's predictor) points at that service's
        front door instead: the only change made to the plan's values, since `*.run.app` does
        not resolve here.
        """
        s = self.service
        if s.secret_env:
            raise Failure(f"{s.name} reads {s.secret_env} from Secret Manager, which this run does not emulate")
        env = {}
        for name, value in s.env.items():
            for url, door in url_map.items():
                if value.startswith(url):
                    value = door + value[len(url):]
            env[name] = value
        env.update({
            # Cloud Run's contract: the port to serve on, the service and revision names.
            "PORT": str(self.container_port),
            "K_SERVICE": s.name,
            "K_REVISION": f"{s.name}-00001-par",
            "K_CONFIGURATION": s.name,
            # On Cloud Run the metadata server gives the service account's tokens (ADC).
            "GCE_METADATA_HOST": f"127.0.0.1:{self.metadata_port}",
            # The binary finds CA roots and nothing else from the host environment.
            "PATH": "/usr/bin:/bin",
        })
        env.update(extra)
        return env

    async def start(self, extra_env: dict[str, str], url_map: dict[str, str]) -> None:
        env = self.container_env(extra_env, url_map)
        self.process = procs.Process(self.service.name, [str(self.binary)], self.logs, env)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.service.timeout_seconds))
        self.runners.append(await procs.serve(self.metadata_app(), self.metadata_port))
        await self.process.start()
        # The startup probe reaches /healthz from inside; outside callers cannot.
        await self.process.wait_http(f"http://127.0.0.1:{self.container_port}/healthz")
        self.runners.append(await procs.serve(self.front_door_app(), self.door_port))

    async def stop(self) -> None:
        if self.process:
            await self.process.stop()
            if self.process.killed:
                procs.log(f"{self.service.name} did not stop within 10 s of SIGTERM and was killed")
        for runner in self.runners:
            await runner.cleanup()
        if self.http:
            await self.http.close()

    # --- the front door ------------------------------------------------------------------
    def front_door_app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.front_door)
        return app

    def refuse(self, status: int, request: web.Request, why: str) -> web.Response:
        self.refused.append((status, request.path))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        return web.Response(status=status, text=f"{status} from the Cloud Run front door: {why}\n",
                            headers=headers)

    async def front_door(self, request: web.Request) -> web.StreamResponse:
        s = self.service
        if request.path.endswith("z"):
            return self.refuse(404, request, "paths ending in `z` are reserved by Cloud Run")
        authorization = request.headers.get("Authorization", "")
        if not authorization.lower().startswith("bearer "):
            return self.refuse(401, request, "no bearer token")
        token = authorization[len("bearer "):].strip()
        try:
            # The front door's own address stands for the service URL (see container_env), so a
            # caller that took its audience from the URL it was given names that address.
            claims = self.issuer.verify(token, [*s.audiences, self.door_url])
        except identity.Refused as e:
            return self.refuse(401, request, f"token refused: {e}")
        if identity.member(claims.get("email", "")) not in s.invokers:
            return self.refuse(403, request, f"{claims.get('email')} may not invoke {s.name}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Authorization"] = f"Bearer {identity.strip_signature(token)}"
        headers["Host"] = s.url.removeprefix("https://")
        headers["X-Forwarded-Proto"] = "https"
        target = URL(f"http://127.0.0.1:{self.container_port}{request.raw_path}", encoded=True)
        body = await request.read()
        try:
            async with self.http.request(request.method, target, headers=headers, data=body) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=upstream.status, body=payload, headers=out)
        except (aiohttp.ClientError, TimeoutError) as e:
            # Cloud Run answers 503 when the instance cannot take the request.
            return web.Response(status=503, text=f"the container did not answer: {e}\n")

    # --- the metadata server -------------------------------------------------------------
    def metadata_app(self) -> web.Application:
        s = self.service
        base = "/computeMetadata/v1"
        account = f"{base}/instance/service-accounts/default"

        def flavoured(handler):
            async def wrapped(request: web.Request):
                if request.headers.get("Metadata-Flavor") != "Google":
                    return web.Response(status=403, text="Missing Metadata-Flavor: Google\n")
                response = await handler(request)
                response.headers["Metadata-Flavor"] = "Google"
                return response
            return wrapped

        async def token(_):
            # An OAuth access token, as the metadata server gives: good for Google APIs (the
            # emulators take any), not an ID token, so no Cloud Run front door accepts it.
            return web.json_response({"access_token": f"ya29.cloud-parity.{s.name}",
                                      "expires_in": 3599, "token_type": "Bearer"})

        async def id_token(request: web.Request):
            audience = request.query.get("audience")
            if not audience:
                return web.Response(status=400, text="audience is required\n")
            return web.Response(text=self.issuer.id_token(s.service_account, audience))

        async def text(value: str):
            return web.Response(text=value)

        async def unknown(request: web.Request):
            procs.log(f"{s.name}: metadata server has no {request.path}")
            return web.Response(status=404, text="not served by this metadata server\n")

        app = web.Application()
        routes = {
            f"{account}/token": token,
            f"{account}/identity": id_token,
            f"{account}/email": lambda _: text(s.service_account),
            f"{account}/scopes": lambda _: text("https://www.googleapis.com/auth/cloud-platform"),
            f"{base}/project/project-id": lambda _: text(s.project),
            f"{base}/universe/universe-domain": lambda _: text("googleapis.com"),
            f"{base}/instance/region": lambda _: text(f"projects/0/regions/{s.region}"),
        }
        for path, handler in routes.items():
            app.router.add_get(path, flavoured(handler))
        # The SDKs' probe (is there a metadata server?), answered as Google's answers it.
        app.router.add_get("/", lambda _: web.Response(text="computeMetadata/\n",
                                                       headers={"Metadata-Flavor": "Google"}))
        app.router.add_route("*", "/{tail:.*}", unknown)
        return app
