#!/usr/bin/env python3
"""Runs the local stack (`pulse up`) under a running `pulse generate --stack` and makes it have a
bad day, then checks that nothing was lost or doubled.

  crash   kill -9 the whole stack at random moments, restart it each time (issue 17)
  faults  backends that fail a share of calls (and stall some) for a while, then recover
  soak    a long steady run; samples RSS, open files, p99 freshness and DuckDB's memory to a CSV

After the load: wait until the bus owes nothing, re-drive what the bus dead-lettered as
`delivery_exhausted` (POST /replay, as an operator would), run `pulse verify` for every event
type the generator sent (raw archive against warehouse: nothing missing, doubled or
unexpected), stop the stack cleanly and check that every event whose publish the stack
acknowledged to the generator (`--acked`) is in the raw archive. Together: every acknowledged
event is in the warehouse exactly once. Exits 1 when anything is off.

  scripts/chaos.py crash --rounds 20 --rate 2000
  scripts/chaos.py faults --fault-rate 0.3 --fault-seconds 60 --rate 500
  scripts/chaos.py soak --minutes 30 --rate 1000 --csv soak.csv

`--pulse` is the binary (default: the release build in $CARGO_TARGET_DIR or ./target). The
stack binds 8 ports from `--port-base` (0: a free range is picked).
"""

import argparse
import csv
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def log(*args):
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def free_port_base():
    """A base with 8 consecutive free loopback ports, below the ephemeral range."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 10)
        sockets = []
        try:
            for port in range(base, base + 8):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise SystemExit("no free range of 8 ports found")


def http(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


class Stack:
    """`pulse up` as a child process on fixed ports over one data dir."""

    def __init__(self, args, work, env):
        self.args, self.work, self.env = args, work, env
        self.base = args.port_base
        # The control port, then each function on its own, as `pulse up` lays them out.
        self.url = f"http://127.0.0.1:{self.base}"
        self.preprocess_url = f"http://127.0.0.1:{self.base + 1}"
        self.table_manager_url = f"http://127.0.0.1:{self.base + 2}"
        self.process = None
        self.starts = 0

    def start(self, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        out = open(self.work / "stack.log", "ab")
        self.process = subprocess.Popen(
            [self.args.pulse, "--port-base", str(self.base), "up"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
        self.starts += 1
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"pulse up exited with {self.process.returncode}; see {self.work}/stack.log")
            try:
                http("GET", f"{self.url}/healthz", timeout=2)
                return time.monotonic()
            except OSError:
                time.sleep(0.1)
        raise SystemExit("pulse up did not answer within 300 s")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SystemExit("pulse up did not stop within 300 s of SIGINT")

    def bus(self):
        return json.loads(http("GET", f"{self.url}/bus"))

    def settle(self, timeout):
        """Waits until the bus owes nothing on three reads in a row."""
        deadline, idle = time.monotonic() + timeout, 0
        while idle < 3:
            if time.monotonic() > deadline:
                raise SystemExit(f"the stack had not settled after {timeout} s: {self.bus()}")
            time.sleep(0.5)
            idle = idle + 1 if self.bus()["undelivered"] == 0 else 0

    def metrics(self):
        return http("GET", f"{self.url}/metrics").decode()

    def duckdb_mib(self):
        """MiB the local warehouse holds in memory, all of it and its indexes (ART), as DuckDB's
        `duckdb_memory()` tells table-manager's `/query`."""
        sql = "SELECT tag, memory_usage_bytes FROM duckdb_memory()"
        rows = json.loads(http("POST", f"{self.table_manager_url}/query", {"sql": sql}))["rows"]
        total = sum(int(row["memory_usage_bytes"]) for row in rows) / 2**20
        index = sum(int(row["memory_usage_bytes"]) for row in rows if row["tag"] == "ART_INDEX") / 2**20
        return round(total, 1), round(index, 1)


class Generator:
    """`pulse generate --stack` at a steady rate, recording what the stack acknowledged."""

    def __init__(self, args, work, env, stack_url):
        self.acked = work / "acked.txt"
        self.out = open(work / "generate.json", "wb")
        self.err = open(work / "generate.log", "ab")
        self.process = subprocess.Popen(
            [args.pulse, "generate", "--stack", stack_url, "--rate", f"{args.rate}/s",
             "--duration", f"{args.generate_seconds}s", "--acked", str(self.acked), "--json"],
            stdout=self.out, stderr=self.err, env=env,
        )

    def stop(self):
        """Stops publishing (as Ctrl-C does) and waits for the run's report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=600)
        self.out.close()
        try:
            return json.loads((Path(self.out.name)).read_text())
        except json.JSONDecodeError:
            return {}


def acked_events(path):
    events = set()
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                events.add((parts[0], parts[1]))
    return events


def archived_events(data_dir):
    """(type, id) of every raw archive object: raw/<type>/YYYY/MM/DD/HH/MM/<id>.json."""
    events = set()
    raw = data_dir / "gcs" / "pulse-raw" / "raw"
    for path in raw.rglob("*.json") if raw.exists() else []:
        parts = path.relative_to(raw).parts
        events.add((parts[0], path.stem))
    return events


def dead_letters(data_dir):
    counts = {}
    root = data_dir / "gcs" / "pulse-raw" / "dead-letter"
    for path in root.rglob("*.json") if root.exists() else []:
        reason = path.relative_to(root).parts[0]
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def redrive_exhausted(stack):
    """Re-drives the bus's `delivery_exhausted` dead letters through preprocess's replay."""
    report = json.loads(http("POST", f"{stack.preprocess_url}/replay",
                             {"dead_letter_prefix": "dead-letter/delivery_exhausted/"}, timeout=600))
    return report


def verify(args, stack, event_types, since):
    """`pulse verify` for each type over the run's event time (late events included)."""
    start = (since - dt.timedelta(minutes=15)).replace(second=0, microsecond=0)
    end = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)).replace(second=0, microsecond=0)
    results = {}
    for event_type in sorted(event_types):
        run = subprocess.run(
            [args.pulse, "verify", "--event-type", event_type,
             "--from", start.strftime("%Y-%m-%dT%H:%M:00Z"), "--to", end.strftime("%Y-%m-%dT%H:%M:00Z"),
             "--json", "--table-manager", stack.table_manager_url,
             "--preprocess", stack.preprocess_url],
            capture_output=True, text=True,
        )
        try:
            found = json.loads(run.stdout)
        except json.JSONDecodeError:
            raise SystemExit(f"pulse verify failed: {run.stdout}\n{run.stderr}")
        results[event_type] = {
            "archived": found["archived"], "stored": found["stored"],
            "missing": len(found["missing"]), "duplicated": len(found["duplicated"]),
            "unexpected": len(found["unexpected"]),
        }
    return results


def worst_p99_freshness(text):
    """The worst table's p99 of event → row freshness, from Prometheus text."""
    worst = None
    for line in text.splitlines():
        m = re.match(r'pulse_freshness_event_seconds\{(.*)\} (\S+)$', line)
        if m and 'quantile="0.99"' in m.group(1):
            value = float(m.group(2))
            if value == value:  # not NaN
                worst = value if worst is None else max(worst, value)
    return worst


def process_sample(pid):
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    open_files = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kib / 1024, open_files


def check(args, stack, generator_report, since, work, data_dir, extra):
    """The common ending: settle, re-drive, verify, stop, compare with what was acknowledged."""
    log("waiting for the stack to settle")
    stack.settle(args.settle_seconds)
    exhausted = dead_letters(data_dir).get("delivery_exhausted", 0)
    redriven = None
    if exhausted:
        # Files of dead letters may lag the store's journal; replay lists through the store.
        redriven = redrive_exhausted(stack)
        log(f"re-drove delivery_exhausted dead letters: {redriven}")
        stack.settle(args.settle_seconds)
    acked = acked_events(work / "acked.txt")
    types = {t for t, _ in acked}
    log(f"verifying {len(acked)} acknowledged events of {sorted(types)}")
    found = verify(args, stack, types, since)
    bus = stack.bus()
    stack.stop()
    archived = archived_events(data_dir)
    not_archived = sorted(acked - archived)
    letters = dead_letters(data_dir)
    problems = []
    for event_type, f in found.items():
        for what in ("missing", "duplicated", "unexpected"):
            if f[what]:
                problems.append(f"{event_type}: {f[what]} {what}")
    if not_archived:
        problems.append(f"{len(not_archived)} acknowledged events are not in the raw archive, e.g. {not_archived[:5]}")
    if sum(f["archived"] for f in found.values()) != len(archived):
        problems.append(f"verify saw {sum(f['archived'] for f in found.values())} archived events, the archive holds {len(archived)}")
    other_letters = {r: n for r, n in letters.items() if r != "delivery_exhausted"}
    if other_letters:
        problems.append(f"dead letters other than delivery_exhausted: {other_letters}")
    summary = dict(extra)
    summary.update({
        "rate_per_second": args.rate,
        "generator": {k: generator_report.get(k) for k in ("sent", "failed", "achieved_rate_per_second", "elapsed_seconds", "outcome")},
        "acknowledged": len(acked),
        "archived": len(archived),
        "stored": sum(f["stored"] for f in found.values()),
        "verify": found,
        "acknowledged_not_archived": len(not_archived),
        "dead_letters": letters,
        "redriven": redriven,
        "bus_at_end": bus,
        "stack_starts": stack.starts,
        "problems": problems,
    })
    return summary


def run(args):
    if args.port_base == 0:
        args.port_base = free_port_base()
    work = Path(tempfile.mkdtemp(prefix=f"pulse-{args.mode}-", dir=args.work_dir))
    data_dir = work / "data"
    env = dict(os.environ, PULSE_DATA_DIR=str(data_dir), RUST_LOG=os.environ.get("RUST_LOG", "warn"),
               RUST_LIB_BACKTRACE="0")
    for name in list(env):
        if name.startswith("PULSE_TEST_FAULT"):
            del env[name]
    log(f"{args.mode}: work dir {work}, ports from {args.port_base}")
    rng = random.Random(args.seed)
    stack = Stack(args, work, env)
    since = dt.datetime.now(dt.timezone.utc)
    extra = {"mode": args.mode, "seed": args.seed}
    samples = []

    if args.mode == "crash":
        stack.start()
        generator = Generator(args, work, env, stack.url)
        kills = []
        for round_ in range(1, args.rounds + 1):
            up = rng.uniform(args.min_up, args.max_up)
            time.sleep(up)
            if generator.process.poll() is not None:
                raise SystemExit(f"the generator ended early; see {work}/generate.log")
            stack.kill()
            kills.append(round(up, 2))
            log(f"round {round_}/{args.rounds}: killed -9 after {up:.1f} s up; "
                f"{len(acked_events(generator.acked))} acknowledged so far")
            started = time.monotonic()
            stack.start()
            log(f"  restarted in {time.monotonic() - started:.1f} s")
        time.sleep(args.min_up)
        report = generator.stop()
        extra.update({"rounds": args.rounds, "up_seconds_before_kill": kills})

    elif args.mode == "faults":
        fault_env = {
            "PULSE_TEST_FAULT_RATE": str(args.fault_rate),
            "PULSE_TEST_FAULT_STALL_RATE": str(args.stall_rate),
            "PULSE_TEST_FAULT_STALL_MS": str(args.stall_ms),
            "PULSE_TEST_FAULT_SECONDS": str(args.fault_seconds),
        }
        stack.start(fault_env)
        generator = Generator(args, work, env, stack.url)
        # Faults for their time, then as long again of recovery under the same load.
        time.sleep(args.fault_seconds + args.recovery_seconds)
        report = generator.stop()
        extra.update({"fault_rate": args.fault_rate, "fault_seconds": args.fault_seconds,
                      "stall_rate": args.stall_rate, "stall_ms": args.stall_ms,
                      "recovery_seconds": args.recovery_seconds,
                      "faults_injected": injected_faults(stack.metrics())})

    else:  # soak
        stack.start()
        generator = Generator(args, work, env, stack.url)
        started = time.monotonic()
        csv_path = Path(args.csv)
        with open(csv_path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["elapsed_s", "rss_mib", "open_files", "p99_event_freshness_s",
                             "acknowledged", "bus_in_flight", "bus_log_bytes", "duckdb_mib",
                             "duckdb_index_mib"])
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.sample_seconds)
                rss, files = process_sample(stack.process.pid)
                p99 = worst_p99_freshness(stack.metrics())
                bus = stack.bus()
                acked = sum(1 for _ in open(generator.acked)) if generator.acked.exists() else 0
                row = [round(time.monotonic() - started), round(rss, 1), files,
                       None if p99 is None else round(p99, 3), acked, bus["undelivered"],
                       (bus.get("log") or {}).get("bytes"), *stack.duckdb_mib()]
                writer.writerow(row)
                out.flush()
                samples.append(row)
                log(f"soak {row}")
        report = generator.stop()
        extra.update({"minutes": args.minutes, "csv": str(csv_path),
                      "curve": summarise_curve(samples)})

    summary = check(args, stack, report, since, work, data_dir, extra)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
    if summary["problems"]:
        log(f"FAILED; the work dir is kept: {work}")
        return 1
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def injected_faults(metrics_text):
    counts = {}
    for line in metrics_text.splitlines():
        m = re.match(r'pulse_test_faults_total\{(.*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            key = f"{labels.get('backend')}/{labels.get('kind')}"
            counts[key] = counts.get(key, 0) + int(float(m.group(2)))
    return counts


def summarise_curve(samples):
    """First, last, min and max of each sampled figure, and their drift over the run."""
    if not samples:
        return {}
    columns = {"rss_mib": 1, "open_files": 2, "p99_event_freshness_s": 3, "duckdb_mib": 7}
    tenth = max(1, len(samples) // 10)
    out = {}
    for name, i in columns.items():
        values = [s[i] for s in samples if s[i] is not None]
        if not values:
            continue
        first = [s[i] for s in samples[:tenth] if s[i] is not None]
        last = [s[i] for s in samples[-tenth:] if s[i] is not None]
        out[name] = {
            "min": min(values), "max": max(values),
            "first_tenth_mean": round(sum(first) / len(first), 3) if first else None,
            "last_tenth_mean": round(sum(last) / len(last), 3) if last else None,
        }
    return out


def main():
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["crash", "faults", "soak"])
    parser.add_argument("--pulse", default=str(Path(target) / "release" / "pulse"))
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--port-base", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill times")
    parser.add_argument("--work-dir", default=None, help="where the run's data dir goes (default: /tmp)")
    parser.add_argument("--settle-seconds", type=int, default=600)
    parser.add_argument("--summary", help="also write the JSON summary here")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    # crash
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--min-up", type=float, default=2.0, help="least time up before a kill, s")
    parser.add_argument("--max-up", type=float, default=10.0, help="most time up before a kill, s")
    # faults
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--fault-seconds", type=int, default=60)
    parser.add_argument("--recovery-seconds", type=int, default=20)
    parser.add_argument("--stall-rate", type=float, default=0.02)
    parser.add_argument("--stall-ms", type=int, default=2000)
    # soak
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--csv", default="soak.csv")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    # The generator runs until stopped; its planned length only has to be long enough.
    args.generate_seconds = int({
        "crash": args.rounds * (args.max_up + 30),
        "faults": args.fault_seconds + args.recovery_seconds,
        "soak": args.minutes * 60,
    }[args.mode]) + 120
    if not Path(args.pulse).exists():
        raise SystemExit(f"{args.pulse} does not exist: cargo build --release -p pulse --bins")
    try:
        sys.exit(run(args))
    except (Exception, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code in (0, None):
            raise
        # What the processes said last, for whoever reads the failure.
        for work in sorted(Path(args.work_dir or tempfile.gettempdir()).glob(f"pulse-{args.mode}-*")):
            for name in ("stack.log", "generate.log"):
                path = work / name
                if path.exists():
                    lines = path.read_text(errors="replace").splitlines()
                    tail = [line for line in lines if "publish failed" not in line][-40:]
                    print(f"--- last lines of {path}:", *tail, sep="\n", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
