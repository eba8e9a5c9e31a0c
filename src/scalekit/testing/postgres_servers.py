"""A real PostgreSQL server: a private cluster made by `initdb`, run in the foreground.

`PostgresServer` runs `initdb` into its own temporary directory on the
first start, then `postgres -D <dir>` in the foreground on a free
127.0.0.1 port, Unix sockets off, trust authentication for the one
superuser `scalekit`, so the pid this object started is the postmaster
and every signal goes to it (`pg_ctl start` would daemonise and leave the
pid to a file). PostgreSQL refuses to run as root: as root, both programs
run as the `postgres` system user (made by Debian's `postgresql`
package), the server started through the same parent-death spawner as
the other servers (so it never outlives a killed test run), and the
directory is handed to that user.

The server is probed with the protocol's startup message over a raw
socket, so no driver is needed to start it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import Sequence
from typing import Any

from .._validation import non_empty_str, tcp_port
from .process import (
    ServerNotFoundError,
    ServerProcess,
    ServerStartError,
    check_args,
)

__all__ = ["PostgresServer"]

_INSTALL_HINT = "install it with 'apt-get install postgresql' (Debian/Ubuntu)"
_USER = "scalekit"
_DATABASE = "postgres"


def _find(binary: str) -> str:
    """*binary* on PATH, else in the newest `/usr/lib/postgresql/<version>/bin` (Debian)."""
    found = shutil.which(binary)
    if found is not None:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"),
        key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()],
    )
    if not versions:
        raise ServerNotFoundError(f"{binary!r} was not found on PATH", _INSTALL_HINT)
    return versions[-1]


class PostgresServer(ServerProcess):
    """A private PostgreSQL cluster on a free loopback port.

    ```python
    with PostgresServer() as server:
        connection = psycopg.connect(server.dsn)
    ```

    Data lives in `workdir/data` and survives `restart()` and `kill()`
    (crash recovery replays the WAL). `fsync` is off: data survives a
    crash of the server, not of the machine. `extra_args` are passed to
    `postgres` as is (e.g. `["-c", "max_connections=50"]`).

    Args:
        port: the port to listen on (default: a free one).
        extra_args: more `postgres` arguments.
        workdir: the directory for the cluster and the log (default: a
            new temporary one, removed by `close()`).
        startup_timeout: seconds to wait for the server to accept sessions.
        run_as: the system user to run as when this process is root
            (PostgreSQL refuses root).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        run_as: str = "postgres",
    ) -> None:
        if port is not None:
            tcp_port("port", port)
        args = check_args("extra_args", extra_args)
        non_empty_str("run_as", run_as)
        self._initdb = _find("initdb")
        self._postgres = _find("postgres")
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self._set_port(port)
        self.extra_args = args
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(run_as)
            except KeyError as exc:
                raise ServerNotFoundError(
                    f"PostgreSQL refuses to run as root and there is no {run_as!r} user",
                    _INSTALL_HINT,
                ) from exc
            # The child takes the user's ids before its exec (Popen's user= and group=),
            # and only then the spawner's parent-death signal: the kernel clears that
            # signal when a process changes its user, so a server started through
            # setpriv (which changes it after) outlived a test run that was killed.
            self._owner: tuple[int, int] | None = (user.pw_uid, user.pw_gid)
        else:
            self._owner = None

    @property
    def data_dir(self) -> str:
        return str(self.workdir / "data")

    @property
    def dsn(self) -> str:
        """A libpq connection string for the `scalekit` superuser, for `psycopg.connect`."""
        return f"host={self.host} port={self.port} user={_USER} dbname={_DATABASE}"

    @property
    def url(self) -> str:
        """`postgresql://scalekit@127.0.0.1:PORT/postgres`."""
        return f"postgresql://{_USER}@{self.host}:{self.port}/{_DATABASE}"

    def prepare(self) -> None:
        if self._owner is not None:
            os.chown(self.workdir, *self._owner)
        if os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            return
        argv = [
            self._initdb,
            "-D",
            self.data_dir,
            "-U",
            _USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=self.startup_timeout,
            **self._spawn_options(),
        )
        if done.returncode != 0:
            raise ServerStartError(
                f"initdb failed with code {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )

    def _spawn_options(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        uid, gid = self._owner
        return {"user": uid, "group": gid, "extra_groups": []}

    def command(self) -> list[str]:
        return [
            self._postgres,
            "-D",
            self.data_dir,
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "log_min_messages=warning",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        """True once the server takes a session (not merely the port: it may be recovering)."""
        params = f"user\0{_USER}\0database\0{_DATABASE}\0\0".encode()
        startup = struct.pack("!ii", 8 + len(params), 196608) + params
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(startup)
                kind = sock.recv(1)
                ok = kind == b"R"
                if ok:
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                return ok
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop with a fast shutdown (SIGINT: sessions are ended), SIGKILL after *timeout*."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        if self._paused:
            self.resume()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._proc = None
        self._paused = False

    def kill(self) -> None:
        """Kill the postmaster and its backends at once (SIGKILL to its process group).

        The group is the one this object's `start()` made (the postmaster
        leads it), so no other process is touched; its backends must go
        too, or the next start would find their shared memory in use.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._proc = None
        self._paused = False

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port})"
