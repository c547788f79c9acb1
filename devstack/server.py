"""The lifecycle the devstack servers share (devstack/kafka.py, devstack/postgres.py).

A `LocalServer` listens on 127.0.0.1 at a port chosen once, at construction, keeps all its
files in a private temporary directory, and is used as a context manager: ``with
KafkaBroker() as broker: ...`` starts it and ``close()`` stops it and deletes the directory.
``start()`` after ``stop()`` (or a crash) brings back the same server, same data, same address,
which is what crash and reconnect tests need. An interpreter that exits without ``close()``
(a crashed test session, Ctrl-C in ``python -m devstack up``) still stops the server and
deletes its files, through an atexit hook, so no orphan keeps ports, memory or disk.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from devstack._util import free_port, tail


class LocalServer(abc.ABC):
    """A throwaway server process: port, private directory, start/stop/close, atexit net."""

    # What the server is called in messages ("broker was never started").
    kind: ClassVar[str] = "server"
    # Prefix of the private directory's name under the system's temp dir.
    dir_prefix: ClassVar[str] = "devstack-"

    def __init__(self, *, port: int | None = None) -> None:
        self._port = port if port is not None else free_port()
        self._dir: Path | None = None
        self._atexit_registered = False

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def private_dir(self) -> Path:
        """The directory holding every file of the server (made by the first start())."""
        if self._dir is None:
            raise RuntimeError(f"{self.kind} was never started")
        return self._dir

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The server's own log, where start-up failures are explained."""

    @property
    @abc.abstractmethod
    def is_running(self) -> bool: ...

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server (initialising it on first use) and block until it serves clients."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop at once, as in a crash; ``start()`` recovers from what is on disk."""

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            if self._dir is not None:
                self._stop_before_delete()
        finally:
            self._delete_dir()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- for the subclasses ------------------------------------------------------------

    def _stop_before_delete(self) -> None:
        """How close() stops the server: its data is deleted next, so a crash stop will do."""
        self.kill()

    def _make_dir(self) -> Path:
        """The private directory, created (and the atexit net registered) on first use."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=self.dir_prefix))
            # An interpreter exiting without close() must not leave the server behind.
            if not self._atexit_registered:
                atexit.register(self._emergency_cleanup)
                self._atexit_registered = True
        return self._dir

    def log_tail(self, lines: int = 40, start: int = 0) -> str:
        """The last lines of the server's log after byte offset ``start``, for error messages."""
        return tail(self.log_path, lines=lines, start=start)

    def _wait_until(
        self,
        ready: Callable[[], bool],
        exited: Callable[[], int | None],
        timeout_s: float,
        context: Callable[[], str],
    ) -> None:
        """Poll ``ready`` until true; fail with ``context()`` if the process exits or time is up.

        ``exited`` returns the process's exit code once it has exited (None while it runs); on
        a timeout the server is killed first.
        """
        deadline = time.monotonic() + timeout_s
        while not ready():
            code = exited()
            if code is not None:
                raise RuntimeError(
                    f"{self.kind} exited with code {code} during startup\n{context()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.kind} not ready after {timeout_s:.0f}s\n{context()}")
            time.sleep(0.1)

    def _emergency_cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _delete_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._atexit_registered:
            atexit.unregister(self._emergency_cleanup)
            self._atexit_registered = False
