"""Small process and filesystem helpers shared by the devstack servers."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before the caller binds it, so another process could grab it
    in between; for a single-user dev box that race is acceptable and far simpler than
    passing a bound socket to a JVM.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40, start: int = 0) -> str:
    """Return the last ``lines`` lines of ``path`` after byte offset ``start``."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
