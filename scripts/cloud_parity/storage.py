"""Cloud Storage: PyPI's gcp-storage-emulator with the plan's buckets, behind a proxy.

The emulator keeps objects as files (`DATA/.cloudstorage/BUCKET/NAME`), which is where
bqemulator's load jobs read `gs://` URIs from. The proxy mends what the emulator and the
official Rust SDK disagree on (as shared/tests/gcs_emulator.rs does), each a gap of the
emulator, not a change to what the functions do:
- `Host`: the SDK sends no port and the emulator builds upload URLs from it: the proxy sends
  its own address;
- media reads: the SDK requires `x-goog-generation` (and reads the other `x-goog-*` headers),
  which the emulator never sends: added from the object's metadata;
- a suffix range (`bytes=-N`, the Parquet footer read), unknown to the emulator: rewritten as
  `bytes=SIZE-N-`;
- `ifGenerationMatch=0` (create only if absent), which the emulator ignores (it overwrites):
  refused with Cloud Storage's 412 `conditionNotMet` when the object exists.
It also sees every upload that completes, which is when Cloud Storage emits `finalized`: the
Eventarc notifier hears of it from here.

Not served, and so not shown by this run: anything the SDK does over gRPC (StorageControl:
list, copy, delete, metadata), which parquet-loader's quarantine move of a bad file needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web
from yarl import URL

from . import procs
from .procs import Failure

HOP = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}


class StorageEmulator:
    def __init__(self, binary: str, data: Path, logs: Path):
        self.port = procs.free_port()
        self.upstream = f"http://127.0.0.1:{self.port}"
        self.data = data
        self.objects_root = data / ".cloudstorage"
        self.process = procs.Process("storage-emulator", [
            binary, f"--data-dir={data}", "start", "--host=127.0.0.1", f"--port={self.port}", "--quiet",
        ], logs)

    async def start(self, project: str, buckets: list[str]) -> None:
        await self.process.start()
        await self.process.wait_http(f"{self.upstream}/storage/v1/b", timeout=60)
        async with aiohttp.ClientSession() as http:
            for bucket in buckets:
                async with http.post(f"{self.upstream}/storage/v1/b?project={project}", json={"name": bucket}) as r:
                    if r.status >= 300:
                        raise Failure(f"storage emulator refused bucket {bucket}: {await r.text()}")

    async def list(self, bucket: str, prefix: str) -> list[str]:
        names, token = [], None
        async with aiohttp.ClientSession() as http:
            while True:
                params = {"prefix": prefix, **({"pageToken": token} if token else {})}
                async with http.get(f"{self.upstream}/storage/v1/b/{bucket}/o", params=params) as r:
                    page = await r.json(content_type=None)
                names += [item["name"] for item in page.get("items", [])]
                token = page.get("nextPageToken")
                if not token:
                    return names


class StorageProxy(procs.LoopbackServer):
    """The address every client of Cloud Storage in the run uses (`STORAGE_ENDPOINT`)."""

    def __init__(self, emulator: StorageEmulator, on_finalized: Callable[[dict], Awaitable[None]]):
        super().__init__()
        self.emulator, self.on_finalized = emulator, on_finalized
        self.url = f"http://127.0.0.1:{self.port}"
        self.refused_overwrites = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=256 << 20)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        await self.serve(app, aiohttp.ClientSession(auto_decompress=False))

    async def metadata(self, bucket: str, name: str) -> dict | None:
        url = f"{self.emulator.upstream}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        async with self.http.get(url) as r:
            return await r.json(content_type=None) if r.status == 200 else None

    async def forward(self, request: web.Request) -> web.Response:
        # Object names are one %2F-encoded segment: split the raw path, then decode.
        segments = [unquote(s) for s in request.rel_url.raw_path.split("/") if s]
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["Host"] = f"127.0.0.1:{self.port}"
        upload = request.method == "POST" and segments[:1] == ["upload"]
        bucket = segments[4] if upload and len(segments) > 4 else None  # /upload/storage/v1/b/B/o
        if upload and request.query.get("ifGenerationMatch") == "0" and request.query.get("name"):
            if await self.metadata(bucket, request.query["name"]) is not None:
                self.refused_overwrites += 1
                return condition_not_met()
        media = (request.method == "GET" and request.query.get("alt") == "media"
                 and len(segments) == 6 and segments[:3] == ["storage", "v1", "b"] and segments[4] == "o")
        obj = await self.metadata(segments[3], segments[5]) if media else None  # /storage/v1/b/B/o/N
        rng = headers.get("Range", "")
        if media and obj and rng.startswith("bytes=-"):
            headers["Range"] = f"bytes={max(0, int(obj['size']) - int(rng[len('bytes=-'):]))}-"
        target = URL(f"{self.emulator.upstream}{request.raw_path}", encoded=True)
        async with self.http.request(request.method, target, headers=headers, data=body) as r:
            payload = await r.read()
            out = {k: v for k, v in r.headers.items() if k.lower() not in HOP}
            status = r.status
        if media and obj and status < 300:
            out.update(object_headers(obj))
        if upload and status < 300 and request.query.get("uploadType") != "resumable":
            await self.on_finalized(json.loads(payload))
        elif request.method == "PUT" and segments[:1] == ["upload"] and status in (200, 201):
            await self.on_finalized(json.loads(payload))  # a resumable upload's last part
        return web.Response(status=status, body=payload, headers=out)


def object_headers(obj: dict) -> dict[str, str]:
    """The headers Cloud Storage sends with object media, from the object's metadata."""
    headers = {
        "x-goog-generation": obj.get("generation"),
        "x-goog-metageneration": obj.get("metageneration"),
        "x-goog-stored-content-length": obj.get("size"),
        "x-goog-storage-class": obj.get("storageClass"),
    }
    if obj.get("crc32c") and obj.get("md5Hash"):
        headers["x-goog-hash"] = f"crc32c={obj['crc32c']},md5={obj['md5Hash']}"
    return {k: str(v) for k, v in headers.items() if v is not None}


def condition_not_met() -> web.Response:
    message = "At least one of the pre-conditions you specified did not hold."
    return web.json_response(status=412, data={"error": {"code": 412, "message": message, "errors": [{
        "message": message, "domain": "global", "reason": "conditionNotMet",
        "locationType": "header", "location": "If-Match"}]}})
