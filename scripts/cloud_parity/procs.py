"""Child processes (emulators, function binaries) and loopback servers of the run."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
from aiohttp import web

class Failure(Exception):
    """The run cannot go on; the message says what is wrong."""


#: Cloud Run sends SIGTERM and waits this long before SIGKILL.
STOP_GRACE_SECONDS = 10


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same one twice in a run (the OS may offer
    a port again once the probe socket is closed, before its first taker binds it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def log(message: str) -> None:
    print(f"[cloud-parity {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Process:
    """A child process whose output goes to `logs/NAME.log`."""

    def __init__(self, name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = logs / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.killed = False

    async def start(self) -> None:
        out = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            env=self.env if self.env is not None else dict(os.environ), start_new_session=True,
        )
        out.close()

    def exited(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_http(self, url: str, timeout: float = 90, headers: dict | None = None) -> None:
        """Waits until `url` answers 2xx, failing with the log's tail if the process exits."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.exited() is not None:
                    raise Failure(f"{self.name} exited ({self.exited()}) before it was ready:\n{self.tail()}")
                try:
                    async with http.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status < 300:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise Failure(f"{self.name} not ready at {url} after {timeout} s:\n{self.tail()}")
                await asyncio.sleep(0.2)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (the process group: the emulators fork)."""
        if not self.proc or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            self.killed = True
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        except ProcessLookupError:
            pass


class LoopbackServer:
    """A server of the run on a loopback port of its own (a proxy, the push signer), with the
    client session its handlers send on; `stop` closes both."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    async def serve(self, app: web.Application, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.runner = await serve(app, self.port)

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        if self.http:
            await self.http.close()


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
