"""The worker as the tests and the benchmark run it: processes, commands, or in this event loop.

- `WorkerProcess`: one `delivery-receipts-worker run` (or any other subcommand) as a process,
  configured by environment like a deployment; signalled by pid (SIGKILL, SIGTERM,
  SIGSTOP/SIGCONT), probed on its HTTP port (`/healthz`, `/metrics`).
- `Fleet`: starts worker processes for a run (devstack/runs.py) and guarantees none outlives
  the block, pass or fail.
- `worker_command`: a subcommand run to its exit (`migrate`, `offsets show`…).
- `running_worker`: the real worker in this event loop, for tests that read its metrics object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from devstack._util import free_port
from devstack.progress import wait_for
from worker.config import Settings
from worker.metrics import WorkerMetrics
from worker.service import run_worker

# The console script of this interpreter's environment.
WORKER_BIN = Path(sys.executable).with_name("delivery-receipts-worker")

# What a run (devstack/runs.py) sets: passed to worker processes as their environment.
SETTING_VARIABLES = (
    "kafka_bootstrap_servers",
    "database_url",
    "input_topic",
    "summary_topic",
    "dlq_topic",
    "consumer_group",
    "http_host",
)


def worker_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a worker process for `settings`' run.

    This process's environment without fault injection (`WORKER_CRASH_*`) and without the
    variables of `SETTING_VARIABLES`, then those of `settings`, then `overrides`.
    """
    names = {name.upper() for name in SETTING_VARIABLES}
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("WORKER_CRASH_") and k not in names
    }
    own = {name.upper(): str(getattr(settings, name)) for name in SETTING_VARIABLES}
    return {**clean, **own, **overrides}


# -- commands run to their exit --------------------------------------------------------------


@dataclass
class Completed:
    code: int
    out: str
    err: str


async def run_to_exit(
    command: Sequence[str], env: Mapping[str, str], *, timeout_s: float = 120
) -> Completed:
    """Run `command` to its exit (killed after `timeout_s`): exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


async def worker_command(
    settings: Settings, *argv: str, timeout_s: float = 120, **env: str
) -> Completed:
    """The console script with `argv`, configured by environment for `settings`' run."""
    return await run_to_exit(
        [str(WORKER_BIN), *argv], worker_env(settings, **env), timeout_s=timeout_s
    )


# -- worker processes ------------------------------------------------------------------------


@dataclass
class Metrics:
    """One scrape of a worker's /metrics."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """Sum over every label combination."""
        return sum(v for (n, _), v in self.samples.items() if n == name)


class WorkerProcess:
    """One worker process (`delivery-receipts-worker run` unless `command` says otherwise),
    its output in `log_path`, its HTTP endpoint on 127.0.0.1:`port`."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path,
        port: int,
        *,
        command: Sequence[str] = (str(WORKER_BIN), "run"),
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.started_at = time.monotonic()
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(command),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def kill(self) -> int:
        """SIGKILL and reap; returns the exit status (-9)."""
        self.send(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def pause(self) -> None:
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def stop(self, timeout_s: float = 40) -> int:
        """SIGTERM (a graceful stop), SIGKILL if still running after `timeout_s`; the status."""
        self.send(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    async def wait_exit(self, timeout_s: float) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout_s}s\n{self.log_tail()}"
            ) from None

    def check_alive(self) -> None:
        """Raise with the end of its output if it has exited."""
        if not self.alive:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.returncode}:\n{tail}")

    async def http(self, path: str) -> tuple[int, str] | None:
        """(status, body) of GET path on the worker's HTTP port, or None if it does not answer."""
        try:
            timeout = aiohttp.ClientTimeout(total=3)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{self.port}{path}") as response,
            ):
                return response.status, await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def metrics(self) -> Metrics:
        answer = await self.http("/metrics")
        if answer is None or answer[0] != 200:
            return Metrics({})
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(answer[1]):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return Metrics(samples)

    async def wait_serving(self, timeout_s: float = 60, *, status: int | None = None) -> None:
        """Until it answers on `/healthz` (with `status`, if given)."""

        async def serving() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited ({self.returncode})\n{self.log_tail()}")
            answer = await self.http("/healthz")
            return answer is not None and status in (None, answer[0])

        await wait_for(serving, timeout_s=timeout_s, what=f"{self.name} to serve HTTP")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


class Fleet:
    """Starts worker processes and guarantees none outlives the block.

    `defaults` is environment every worker gets (before what `start` is given). Leaving the
    block SIGKILLs whatever still runs, or with `stop_grace_s` stops it gracefully (SIGTERM,
    SIGKILL after that many seconds).
    """

    def __init__(
        self,
        directory: Path,
        defaults: Mapping[str, str] | None = None,
        *,
        stop_grace_s: float | None = None,
    ) -> None:
        self.directory = directory
        self.defaults = dict(defaults or {})
        self.stop_grace_s = stop_grace_s
        self.replicas: list[WorkerProcess] = []
        self._count = 0

    def start(self, settings: Settings, *, name: str | None = None, **env: str) -> WorkerProcess:
        """A `run` process for `settings`' run on a free HTTP port, with `env` on top."""
        self._count += 1
        name = name or f"worker-{self._count}"
        full = worker_env(settings, HTTP_PORT=str(free_port()), **{**self.defaults, **env})
        self.directory.mkdir(parents=True, exist_ok=True)
        replica = WorkerProcess(name, full, self.directory / f"{name}.log", int(full["HTTP_PORT"]))
        self.replicas.append(replica)
        return replica

    @property
    def alive(self) -> list[WorkerProcess]:
        return [r for r in self.replicas if r.alive]

    def logs(self, lines: int = 15) -> str:
        return "\n".join(r.log_tail(lines) for r in self.replicas)

    def stop_all(self) -> None:
        for r in self.replicas:
            if r.alive:
                r.resume()  # a stopped process cannot act on SIGTERM; SIGKILL works anyway
                if self.stop_grace_s is None:
                    r.kill()
                else:
                    r.stop(self.stop_grace_s)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# -- in this event loop ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, metrics: WorkerMetrics | None = None
) -> AsyncIterator[WorkerMetrics]:
    """The real worker, in this event loop, stopped (as by SIGTERM) when the block ends."""
    metrics = metrics or WorkerMetrics()
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop, handle_signals=False, metrics=metrics))
    try:
        yield metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, settings.shutdown_grace_s + 10)


def metric_value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value
