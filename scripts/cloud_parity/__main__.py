"""`python -m cloud_parity`: the cloud-mode run (see scripts/cloud-parity.sh, which builds what it
needs and runs `pulse demo` locally first). Exits 1 on any difference from the local run, any
refusal not as Cloud Run would answer, or a deployment that does not settle."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from . import plan, procs, scenario
from .stack import Stack, Tools

#: What neither this run nor its emulators can show (printed with every result).
NOT_SHOWN = [
    "IAM beyond run.invoker: the roles each service account holds on buckets, topics and the "
    "dataset (the emulators accept any caller)",
    "Pub/Sub's retry_policy timing and ack deadlines as configured (the emulator keeps its own)",
    "Cloud Storage over gRPC (list, copy, delete, metadata): parquet-loader's quarantine move",
    "Cloud SQL (the DATABASE_URL secret and the connector), Secret Manager, Artifact Registry, "
    "alerting and the dashboard",
    "BigQuery: insertId de-duplication, partitioning of load-created tables, tables.patch "
    "columns, autodetect loads, whether insertAll takes a JSON column's value as an object "
    "(the proxy sends it as text); view SQL is DuckDB's, not BigQuery's",
    "Cloud Run scaling: cpu_idle throttling, scale to zero and min/max instances (one "
    "instance per service, never throttled)",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="cloud_parity", description=__doc__)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--tf-check", type=Path, required=True)
    parser.add_argument("--tfvars", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--local-report", type=Path, required=True, help="`pulse demo --json` output")
    parser.add_argument("--fixture", type=Path, required=True, help="the demo's Parquet file")
    parser.add_argument("--pubsub-emulator", required=True)
    parser.add_argument("--storage-emulator", required=True)
    parser.add_argument("--emulator-python", required=True)
    parser.add_argument("--settle-timeout", type=float, default=120)
    args = parser.parse_args()
    try:
        return asyncio.run(run(args))
    except procs.Failure as failure:
        print(f"\nCLOUD PARITY FAILED: {failure}\n(logs in {args.work / 'logs'})", flush=True)
        return 1


async def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    local = json.loads(args.local_report.read_text())
    deployment = plan.deployment(plan.resolved_plan(args.repo, args.tf_check, args.tfvars.resolve(), args.work))
    tools = Tools(args.pubsub_emulator, args.storage_emulator, args.emulator_python,
                  args.repo / "scripts" / "bqemulator-offline.py", args.bin_dir)
    stack = Stack(deployment, tools, args.work)
    try:
        await stack.start()
        cloud = await scenario.run_demo(stack, local, args.fixture, args.settle_timeout)
        refused = await scenario.refusals(stack)
    finally:
        await stack.stop()
    rows = comparison(local, cloud, deployment)
    failures = print_report(rows, refused, cloud, stack, args.work)
    procs.log(f"cloud-mode run took {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


def comparison(local: dict, cloud: scenario.CloudCounts, deployment: plan.Deployment) -> list[tuple]:
    """(what, local, cloud, note) for every count the two runs must agree on."""
    predictions = deployment.service_by_binary("inference").env.get("PULSE_PREDICTIONS_TABLE", "predictions")
    rows = [
        ("events published to the raw topic", local["events"]["published"], cloud.published, ""),
        ("raw archive objects", local["raw_objects_written"], cloud.raw_objects, ""),
        ("messages on the processed topic", local["processed_messages_published"], cloud.processed_messages, ""),
    ]
    for table in sorted(set(local["rows_written"]) | {t for t, c in cloud.tables.items() if c["rows"]}):
        c = cloud.tables.get(table, {"rows": 0, "events": None})
        value = c["events"] if c["events"] is not None else c["rows"]
        note = f"{c['rows']} physical rows (BigQuery keeps insertId repeats)" if c["rows"] != value else ""
        rows.append((f"rows in {table}", local["rows_written"].get(table, 0), value, note))
    for reason in sorted(set(local["dead_lettered"]) | set(cloud.dead_letters)):
        rows.append((f"dead letters: {reason}", local["dead_lettered"].get(reason, 0),
                     cloud.dead_letters.get(reason, 0), ""))
    parquet = cloud.tables.get(local["parquet"]["table"], {"rows": 0})
    rows.append(("Parquet rows loaded", local["parquet"]["rows"], parquet["rows"], local["parquet"]["table"]))
    pred = cloud.tables.get(predictions, {"rows": 0, "events": 0})
    rows.append(("predictions", local.get("predictions_written") or 0, pred["events"] or 0, ""))
    rows.append(("messages Pub/Sub gave up on (dead-letter topic)", 0, cloud.given_up,
                 "the local run gives up on none"))
    return rows


def print_report(rows, refused, cloud, stack: Stack, work: Path) -> list[str]:
    failures = []
    print("\nCloud parity: `pulse demo` locally vs the Terraform plan on Google's emulators")
    print(f"  {'count':<52} {'local':>7} {'cloud':>7}")
    for what, local, cloud_value, note in rows:
        same = local == cloud_value
        if not same:
            failures.append(what)
        mark = "" if same else "  <-- DIFFERS"
        print(f"  {what:<52} {local!s:>7} {cloud_value!s:>7}{mark}{'  (' + note + ')' if note else ''}")
    print("\nRefusals, and what an operator reaches")
    for what, expected, got in refused:
        ok = expected == got
        if not ok:
            failures.append(what)
        print(f"  {what:<88} expected {expected}, got {got}{'' if ok else '  <-- WRONG'}")
    for refused in stack.refused_triggers:
        failures.append(refused)
        print(f"\n{refused}")
    for name, why in stack.failed.items():
        failures.append(f"{name} did not start")
        print(f"\nSERVICE DID NOT START: {name}\n{why}")
    for problem in cloud.unsettled:
        failures.append(problem)
        print(f"\n{problem}")
    for gap in stack.gaps:
        print(f"\nEMULATOR GAP (not checked): {gap}")
    print("\nNot shown by this run (the emulators or this harness cannot):")
    for item in NOT_SHOWN:
        print(f"  - {item}")
    if failures:
        print(f"\nCLOUD PARITY FAILED: {len(failures)} problem(s); logs in {work / 'logs'}")
    else:
        print("\nCloud parity: every count matches the local run and every refusal is Cloud Run's.")
    return failures


if __name__ == "__main__":
    sys.exit(main())
