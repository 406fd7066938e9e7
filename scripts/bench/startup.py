#!/usr/bin/env python3
"""Start a function binary, time process start to the first 200 on /healthz, then read its
idle RSS after a second of rest. Prints one JSON line. Usage: startup.py BINARY [RUNS]."""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one_run(binary):
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = dict(os.environ, PORT=str(port), PULSE_DATA_DIR=data_dir, RUST_LOG="warn")
        started = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
        try:
            while not healthz_ok(port):
                if proc.poll() is not None:
                    sys.exit(f"{binary} exited with {proc.returncode}")
                if time.perf_counter() - started > 10:
                    sys.exit(f"{binary} did not answer /healthz within 10 s")
                time.sleep(0.0005)
            ready_ms = (time.perf_counter() - started) * 1000
            time.sleep(1)
            with open(f"/proc/{proc.pid}/status") as status:
                rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            return ready_ms, rss_kb
        finally:
            proc.terminate()
            proc.wait()


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    results = [one_run(binary) for _ in range(runs)]
    ready = sorted(r[0] for r in results)
    print(json.dumps({
        "runs": runs,
        "ready_ms_median": round(statistics.median(ready), 1),
        "ready_ms_max": round(ready[-1], 1),
        "idle_rss_mb_max": round(max(r[1] for r in results) / 1024, 1),
        "binary_mb": round(os.path.getsize(binary) / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
