"""BigQuery: PyPI's bqemulator (started through scripts/bqemulator-offline.py, as the Rust tests
start it) with the plan's dataset, its Terraform-owned tables and views, and the counts read
back with queries.

What it cannot show, and this run therefore does not claim: partitioning kept on tables a
load job creates, `tables.patch` adding a real column (only metadata changes), insertId
de-duplication (the counts below count distinct `event_id`s, what the deduplicated views
show, and say when physical rows differ), load with autodetect, IAM on datasets, and
BigQuery's SQL where DuckDB's differs (a view the emulator refuses is reported, loudly).

The functions reach it through a proxy that mends one gap: bqemulator stores a JSON column's
value sent to insertAll as an object (user_activity's `metadata`) by its Python repr, which
DuckDB cannot cast to JSON, so the insert fails with 500. The proxy sends such values as JSON
text instead. Whether BigQuery itself takes an object there is therefore not shown here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

from . import procs
from .plan import Deployment, Table


class BigQueryError(Exception):
    pass


class BigQueryEmulator:
    def __init__(self, python: str, wrapper: Path, gcs_root: Path, project: str, logs: Path):
        self.port = procs.free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.project = project
        env = {**os.environ, "BQEMU_GCS_LOCAL_ROOT": str(gcs_root)}
        self.process = procs.Process("bigquery-emulator", [
            python, str(wrapper), "start", "--rest-port", str(self.port), "--grpc-port", "0",
            "--project", project, "--log-level", "warning",
        ], logs, env)
        self.api = f"{self.endpoint}/bigquery/v2/projects/{project}"

    async def start(self) -> None:
        await self.process.start()
        await self.process.wait_http(f"{self.api}/datasets", timeout=120)

    async def call(self, method: str, path: str, body: dict | None = None) -> dict:
        async with aiohttp.ClientSession() as http:
            async with http.request(method, f"{self.api}{path}", json=body) as r:
                answer = await r.json(content_type=None)
                if r.status >= 300:
                    raise BigQueryError(f"{method} {path}: {r.status} {answer}")
                return answer or {}

    async def create(self, deployment: Deployment) -> list[str]:
        """The plan's datasets, tables and views; returns the gaps met (views refused)."""
        gaps = []
        for d in deployment.datasets:
            await self.call("POST", "/datasets", {
                "datasetReference": {"projectId": self.project, "datasetId": d["dataset_id"]},
                "location": d["location"]})
        for t in sorted(deployment.tables, key=lambda t: t.view_query is not None):
            try:
                await self.call("POST", f"/datasets/{t.dataset}/tables", table_resource(self.project, t))
            except BigQueryError as e:
                if t.view_query is None:
                    raise
                gaps.append(f"view {t.dataset}.{t.table_id} refused by bqemulator: {e}")
        return gaps

    async def query(self, sql: str) -> list[dict]:
        answer = await self.call("POST", "/queries", {"query": sql, "useLegacySql": False, "timeoutMs": 30000})
        if answer.get("errors"):  # bqemulator answers a failed query 200 with `errors`
            raise BigQueryError(f"{sql}: {answer['errors']}")
        names = [f["name"] for f in answer.get("schema", {}).get("fields", [])]
        return [dict(zip(names, (c["v"] for c in row["f"]))) for row in answer.get("rows", [])]

    async def table_counts(self, dataset: str) -> dict[str, dict]:
        """Per table: rows, and distinct event_id when the table has that column."""
        listed = await self.call("GET", f"/datasets/{dataset}/tables")
        counts = {}
        for entry in listed.get("tables", []):
            name = entry["tableReference"]["tableId"]
            table = await self.call("GET", f"/datasets/{dataset}/tables/{name}")
            if table.get("type") == "VIEW":
                continue
            fields = {f["name"] for f in table.get("schema", {}).get("fields", [])}
            ref = f"`{self.project}.{dataset}.{name}`"
            distinct = ", COUNT(DISTINCT event_id) AS events" if "event_id" in fields else ""
            row = (await self.query(f"SELECT COUNT(*) AS n{distinct} FROM {ref}"))[0]
            counts[name] = {"rows": int(row["n"]), "events": int(row["events"]) if distinct else None}
        return counts


INSERT_ALL = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/insertAll$")


class BigQueryProxy(procs.LoopbackServer):
    """`BIGQUERY_ENDPOINT` for the functions: bqemulator, JSON column values sent as text."""

    def __init__(self, emulator: BigQueryEmulator):
        super().__init__()
        self.emulator = emulator
        self.url = f"http://127.0.0.1:{self.port}"
        self.mended = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        await self.serve(app, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)))

    async def forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        insert = INSERT_ALL.match(request.path) if request.method == "POST" else None
        if insert and body:
            body = await self.json_as_text(insert.groups(), body)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        target = URL(f"{self.emulator.endpoint}{request.raw_path}", encoded=True)
        async with self.http.request(request.method, target, headers=headers, data=body) as r:
            payload = await r.read()
            out = {k: v for k, v in r.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
            return web.Response(status=r.status, body=payload, headers=out)

    async def json_as_text(self, table: tuple[str, str, str], body: bytes) -> bytes:
        project, dataset, name = table
        url = f"{self.emulator.endpoint}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{name}"
        async with self.http.get(url) as r:
            if r.status != 200:
                return body
            schema = (await r.json(content_type=None)).get("schema", {}).get("fields", [])
        json_columns = {f["name"] for f in schema if f.get("type") == "JSON"}
        request = json.loads(body)
        for row in request.get("rows", []):
            for column in json_columns & set(row.get("json", {})):
                if isinstance(row["json"][column], (dict, list)):
                    row["json"][column] = json.dumps(row["json"][column])
                    self.mended += 1
        return json.dumps(request).encode()


def table_resource(project: str, t: Table) -> dict:
    resource: dict = {"tableReference": {"projectId": project, "datasetId": t.dataset, "tableId": t.table_id}}
    if t.view_query is not None:
        resource["view"] = {"query": t.view_query, "useLegacySql": False}
        return resource
    resource["schema"] = {"fields": t.schema or []}
    if t.time_partitioning:
        resource["timePartitioning"] = {"type": t.time_partitioning.get("type"),
                                        **({"field": t.time_partitioning["field"]} if t.time_partitioning.get("field") else {})}
    if t.clustering:
        resource["clustering"] = {"fields": t.clustering}
    return resource
