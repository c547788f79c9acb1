"""Run a throwaway PostgreSQL cluster from the locally installed server binaries.

The cluster lives in a private temp dir, listens on 127.0.0.1 at its own port, keeps its
unix socket inside that dir, and is deleted by ``close()``; it never touches a cluster
managed by the distribution's service scripts. The lifecycle (private directory, close,
context manager, atexit net) is devstack/server.py's.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from devstack.server import LocalServer

StopMode = Literal["fast", "immediate", "smart"]

_PG_ENV_PREFIXES = ("PG",)


def find_pg_bindir() -> Path:
    """Locate the directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        # On Debian pg_config can come from libpq-dev alone, naming a bindir without the
        # server binaries, so it is only trusted when initdb is really there.
        proc = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(proc.stdout.strip())
        if proc.returncode == 0 and (candidate / "initdb").is_file():
            return candidate

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name))

    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if debian:
        return max(debian, key=version_key)
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (no initdb); run scripts/setup.sh or "
        "`apt-get install -y postgresql`"
    )


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Only reached as root on a machine without the postgresql package's user: initdb
    # and postgres refuse to run as root, so some unprivileged owner has to exist.
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=True,
    )
    return pwd.getpwnam(name)


class PostgresServer(LocalServer):
    """A private PostgreSQL cluster, started with ``pg_ctl`` and removed on ``close()``.

    ``fsync`` and ``synchronous_commit`` default to durable (on). Turning ``fsync`` off is
    safe for tests that kill the server process (the OS still has the pages) but not for
    power loss; turning ``synchronous_commit`` off can lose just-committed transactions
    on an immediate stop, so crash tests should keep it on.
    """

    kind: ClassVar[str] = "PostgreSQL"
    dir_prefix: ClassVar[str] = "devstack-pg-"

    def __init__(
        self,
        *,
        port: int | None = None,
        fsync: bool = True,
        synchronous_commit: bool = True,
        bin_dir: Path | None = None,
        os_user: str = "postgres",
        start_timeout_s: int = 60,
        extra_settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port=port)
        self._fsync = fsync
        self._synchronous_commit = synchronous_commit
        self._bin_dir = bin_dir
        self._os_user = os_user
        self._start_timeout_s = start_timeout_s
        self._extra_settings = dict(extra_settings or {})
        self._owner: tuple[int, int] | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """DSN of another database on this server (TCP, user ``postgres``, no password)."""
        return f"postgresql://postgres@{self.host}:{self._port}/{quote(database, safe='')}"

    @property
    def base_dir(self) -> Path:
        return self.private_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_pg_bindir()
        return self._bin_dir

    @property
    def is_running(self) -> bool:
        if not self._initialised():
            return False
        # pg_ctl status: 0 running, 3 not running, 4 no data dir.
        proc = self._run_as_owner(
            [str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
        )
        return proc.returncode == 0

    @property
    def pid(self) -> int | None:
        """PID of the postmaster, or None when it is not running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError, RuntimeError):
            return None
        return int(first) if self.is_running else None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (initialising the cluster on first use) and wait until ready."""
        if not self._initialised():
            self._init_cluster()
        if self.is_running:
            return
        proc = self._pg_ctl("start", "-l", str(self.log_path))
        if proc.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
            )

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop via ``pg_ctl``: ``fast`` rolls back sessions, ``immediate`` simulates a crash."""
        if not self.is_running:
            return
        proc = self._pg_ctl("stop", "-m", mode)
        if proc.returncode != 0 and self.is_running:
            raise RuntimeError(f"pg_ctl stop failed:\n{proc.stdout}{proc.stderr}")

    def kill(self) -> None:
        """Stop at once (``immediate``: no checkpoint), as in a crash; the next start recovers."""
        self.stop("immediate")

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create database ``name`` and return its DSN."""
        exists = self.psql(
            "SELECT 1 FROM pg_database WHERE datname = :'name'", variables={"name": name}
        ).strip()
        if exists:
            if not exist_ok:
                raise RuntimeError(f"database {name!r} already exists")
        else:
            self.psql('CREATE DATABASE :"name"', variables={"name": name})
        return self.dsn_for(name)

    def psql(
        self, sql: str, *, database: str = "postgres", variables: Mapping[str, str] | None = None
    ) -> str:
        """Run SQL through ``psql`` over TCP and return its unaligned, tuples-only output.

        ``variables`` are interpolated by psql itself (``:'var'`` literal, ``:"var"``
        identifier), which quotes them correctly; that only works for SQL read from stdin,
        hence the pipe rather than ``-c``.
        """
        cmd = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self._port),
            "-U",
            "postgres",
            "-d",
            database,
        ]
        for key, value in (variables or {}).items():
            cmd += ["-v", f"{key}={value}"]
        proc = subprocess.run(
            cmd, input=sql, capture_output=True, text=True, env=self._clean_env(), check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    # -- internals ---------------------------------------------------------------------

    def _initialised(self) -> bool:
        return self._dir is not None and (self.data_dir / "PG_VERSION").exists()

    def _init_cluster(self) -> None:
        base = self._make_dir()
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = _ensure_os_user(self._os_user)
            self._owner = (user.pw_uid, user.pw_gid)
            for path in (base, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        proc = self._run_as_owner(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Only skips fsync of initdb's own files: a throwaway cluster does not need
                # to survive power loss, and this saves seconds per test session.
                "--no-sync",
            ],
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self._port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "on" if self._fsync else "off",
            "synchronous_commit": "on" if self._synchronous_commit else "off",
            # Without fsync torn pages cannot happen on a process crash, so skip the cost.
            "full_page_writes": "on" if self._fsync else "off",
            "max_connections": "200",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        settings.update(self._extra_settings)
        conf = "\n".join(f"{k} = {v}" for k, v in settings.items())
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write(f"\n# devstack overrides (later lines win)\n{conf}\n")

    def _pg_ctl(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``pg_ctl <action>`` on this cluster, waiting (up to the start timeout) until done."""
        command = [str(self.bin_dir / "pg_ctl"), action, "-D", str(self.data_dir), *args]
        return self._run_as_owner([*command, "-w", "-t", str(self._start_timeout_s)], check=False)

    def _clean_env(self) -> dict[str, str]:
        # Inherited PGDATA/PGPORT/PGHOST/... would silently redirect pg_ctl and psql.
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PG_ENV_PREFIXES)}
        env["LC_ALL"] = "C"
        return env

    def _run_as_owner(self, cmd: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        env = self._clean_env()
        if self._owner is not None:
            uid, gid = self._owner
            kwargs.update(user=uid, group=gid, extra_groups=[])
            env["HOME"] = str(self.base_dir)
            env["USER"] = env["LOGNAME"] = pwd.getpwuid(uid).pw_name
        return subprocess.run(
            cmd,
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self._start_timeout_s + 30,
            check=check,
            **kwargs,
        )
