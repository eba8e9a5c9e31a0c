"""A server process started, probed and stopped by its pid."""

from __future__ import annotations

import abc
import atexit
import concurrent.futures
import ctypes
import ctypes.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from .._validation import bad_value, non_empty_str, positive_number, tcp_port, wrong_type
from ..exceptions import ScaleKitError

__all__ = [
    "ServerGroup",
    "ServerNotFoundError",
    "ServerProcess",
    "ServerStartError",
    "find_free_port",
]

LOOPBACK = "127.0.0.1"


P = TypeVar("P", bound="ServerProcess")
G = TypeVar("G", bound="ServerGroup")  # type: ignore[type-arg]


class ServerNotFoundError(ScaleKitError, FileNotFoundError):
    """The server's program (`redis-server`, `java` or ZooKeeper's jars) is missing.

    `install_hint` says what to install.
    """

    def __init__(self, message: str, install_hint: str) -> None:
        super().__init__(f"{message}; {install_hint}")
        self.install_hint = install_hint


class ServerStartError(ScaleKitError, RuntimeError):
    """A server process exited or did not answer its probe in time."""


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


#: The most servers one group starts (each is a real process with its own ports).
MAX_NODES = 99


def find_free_port(host: str = LOOPBACK, *, also_free: Sequence[int] = ()) -> int:
    """Return a TCP port on *host* that nothing listens on.

    `also_free` lists offsets that must be free too: Redis Cluster needs
    `port + 10000` for its bus, so it asks for `also_free=(10000,)`.
    The port is free when returned; another process could still take it
    before the caller binds, which the server classes handle by retrying.

    Raises:
        ArgumentTypeError: *host* is not a `str`.
        ConfigurationError: *host* is not an address of this machine.
    """
    non_empty_str("host", host)
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, 0))
            except OSError as exc:
                raise bad_value("host", host, f"an address of this machine ({exc})") from None
            port = int(sock.getsockname()[1])
        if all(port + off < 65536 and _port_is_free(port + off, host) for off in also_free):
            return port
    raise ServerStartError(f"found no free port on {host} with offsets {list(also_free)} free")


def check_workdir(workdir: Any) -> Path | None:
    """Return *workdir* as a `Path` (`None` stays `None`: a temporary one is made on start).

    Raises:
        ArgumentTypeError: *workdir* is neither `None`, a `str` nor an `os.PathLike`.
        ConfigurationError: *workdir* is an empty string.
    """
    if workdir is None:
        return None
    if not isinstance(workdir, (str, os.PathLike)):
        raise wrong_type("workdir", workdir, "a directory path (str or os.PathLike) or None")
    path = Path(workdir)
    if str(workdir) == "":
        raise bad_value("workdir", workdir, "a directory path, not an empty string")
    return path


def check_args(name: str, values: Any) -> list[str]:
    """Return *values* (extra command-line arguments) as a list of `str`.

    Raises:
        ArgumentTypeError: *values* is a string (one argument per item is
            expected) or not a sequence of strings.
    """
    expected = 'a sequence of str, one argument per item (e.g. ["--maxclients", "100"])'
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise wrong_type(name, values, expected)
    for item in values:
        if not isinstance(item, str):
            raise wrong_type(name, values, expected)
    return list(values)


def check_flag(name: str, value: Any) -> bool:
    """Return *value* if it is a `bool`.

    Raises:
        ArgumentTypeError: for anything else (`1`, `"yes"`).
    """
    if not isinstance(value, bool):
        raise wrong_type(name, value, "True or False")
    return value


def query(host: str, port: int, payload: bytes, *, timeout: float = 1.0) -> bytes:
    """Send *payload* on a fresh connection and return what the server says.

    Reads until the server closes or stops sending for *timeout* seconds.
    Raises `OSError` when nothing listens.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """libc's `prctl`, looked up once before any fork; None off Linux or without libc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel SIGKILL the child when *parent* dies.

    SIGKILL because it also ends a server frozen with SIGSTOP, which would
    leave a SIGTERM pending. The check after `prctl` closes the race where
    the parent died between the fork and the call.
    """
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every server, living as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the
    child exits, not the process: a server started from a short-lived thread
    (a fault schedule's, a fixture's executor) would die with that thread.
    Forking from this thread ties each server to the process instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._pid = -1  # the process the thread runs in; a fork needs a thread of its own

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, who re-raises it
                future.set_exception(exc)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        parent = os.getpid()
        with self._lock:
            if self._pid != parent:
                self._jobs = queue.SimpleQueue()
                threading.Thread(
                    target=self._run, name="scalekit-server-spawner", daemon=True
                ).start()
                self._pid = parent
            jobs = self._jobs
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        jobs.put(
            (lambda: subprocess.Popen(argv, preexec_fn=_die_with_parent(parent), **kwargs), future)
        )
        return future.result()


_spawner = _Spawner()
# Every server still running, stopped at interpreter exit even if never closed.
_live: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


@atexit.register
def _kill_live_servers() -> None:
    for server in list(_live):
        server.kill()


class ServerProcess(abc.ABC):
    """One server process that this object started and alone stops.

    Subclasses say how to run the server (`command()`) and how to tell
    it is ready (`is_ready()`). The process runs in its own session in
    `workdir` with its output in `workdir/server.log`; every signal goes
    to the pid this object started, never to a process found by name.

    Fault helpers: `stop()`, `start()`, `restart()`,
    `kill()` (SIGKILL, no clean shutdown), `pause()` (SIGSTOP: the
    port stays open but nothing answers) and `resume()` (SIGCONT).
    Usable as a context manager that starts and stops the server.
    """

    host: str = LOOPBACK

    def __init__(
        self, *, workdir: str | os.PathLike[str] | None = None, startup_timeout: float = 30.0
    ) -> None:
        positive_number("startup_timeout", startup_timeout)
        given = check_workdir(workdir)
        self._owns_workdir = given is None
        # The directory and the port are made when first needed (by start()),
        # so a server that is constructed and never started leaves nothing.
        self._workdir_source: Callable[[], Path] = (
            (lambda: given)
            if given is not None
            else lambda: Path(tempfile.mkdtemp(prefix=f"scalekit-{type(self).__name__.lower()}-"))
        )
        self._workdir: Path | None = None
        self._port: int | None = None
        self._port_offsets: tuple[int, ...] = ()
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def workdir(self) -> Path:
        """The working directory, made on first use (`start()`), not by the constructor."""
        if self._workdir is None:
            path = self._workdir_source()
            path.mkdir(parents=True, exist_ok=True)
            self._workdir = path
        return self._workdir

    @property
    def port(self) -> int:
        """The port the server listens on: the one given, else a free one picked on first use."""
        if self._port is None:
            self._port = find_free_port(also_free=self._port_offsets)
        return self._port

    @port.setter
    def port(self, port: int) -> None:
        self._port = port

    def _set_port(self, port: Any) -> None:
        """Validate and keep the constructor's *port* (`None`: pick one when first needed)."""
        self._port = None if port is None else tcp_port("port", port)

    # -- what subclasses provide -------------------------------------------
    @abc.abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abc.abstractmethod
    def is_ready(self) -> bool:
        """True once the server answers its probe."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Write config files into `workdir` before each start."""

    # -- state ---------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The pid of the running process, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last *lines* of the server's output, for error messages."""
        if self._workdir is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- life cycle ----------------------------------------------------------
    def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        if self.running:
            raise ServerStartError(f"{self!r} is already running (pid {self.pid})")
        self.prepare()
        argv = self.command()
        with open(self.log_path, "ab") as log:
            self._proc = _spawner.popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._spawn_options(),
            )
        _live.add(self)
        self._paused = False

    def _spawn_options(self) -> dict[str, Any]:
        """More `subprocess.Popen` arguments for `spawn()` (a server's user and group)."""
        return {}

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until `is_ready()` holds; raise ServerStartError otherwise."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        delay = 0.02
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise ServerStartError(
                    f"{self!r} exited with code {code} before answering; log:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self!r} did not answer within {self.startup_timeout}s; log:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def start(self) -> None:
        """Start the process and wait until it answers."""
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM), escalating to SIGKILL after *timeout* seconds."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        if self._paused:
            self.resume()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None
        self._paused = False

    def kill(self) -> None:
        """Kill at once (SIGKILL): no clean shutdown, as in a crash."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        self._paused = False

    def restart(self) -> None:
        """Stop cleanly, then start again on the same port and data directory."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open, nothing answers."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServerStartError(f"{self!r} is not running, so it cannot be paused")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the process and remove the working directory if this object made it."""
        self.stop()
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self: P) -> P:
        try:
            self.start()
        except BaseException:
            self.close()  # the process is already killed; remove the directory too
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten server must not outlive the test run.
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


S = TypeVar("S", bound=ServerProcess)


class ServerGroup(abc.ABC, Generic[S]):
    """Several `ServerProcess` members that start and stop together.

    The base of `RedisClusterServers` and
    `ZooKeeperEnsemble`: it owns the shared working
    directory, stops every member, and waits for a group-wide condition.
    Each member keeps its own fault helpers.
    """

    def __init__(self, *, workdir: str | os.PathLike[str] | None, startup_timeout: float) -> None:
        positive_number("startup_timeout", startup_timeout)
        self._given_workdir = check_workdir(workdir)
        self._owns_workdir = self._given_workdir is None
        self._workdir: Path | None = None
        self.startup_timeout = startup_timeout
        self.members: list[S] = []

    @property
    def workdir(self) -> Path:
        """The group's directory (one folder per member), made on first use, by `start()`."""
        if self._workdir is None:
            if self._given_workdir is not None:
                self._given_workdir.mkdir(parents=True, exist_ok=True)
                self._workdir = self._given_workdir
            else:
                prefix = f"scalekit-{type(self).__name__.lower()}-"
                self._workdir = Path(tempfile.mkdtemp(prefix=prefix))
        return self._workdir

    def _adopt(self, member: S, folder: str) -> S:
        """Make *member* work in `workdir/folder`, made when the member first needs it."""
        member._workdir_source = lambda: self.workdir / folder
        member._owns_workdir = False
        self.members.append(member)
        return member

    @abc.abstractmethod
    def start(self) -> None:
        """Start every member and wait until the group serves."""

    def wait_until(
        self, condition: Callable[[], bool], what: str, timeout: float | None = None
    ) -> None:
        """Poll *condition* until it holds; raise ServerStartError naming *what* after *timeout*."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while not condition():
            if time.monotonic() >= deadline:
                raise ServerStartError(f"{self!r}: {what} did not happen in time")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every member (cleanly, escalating to SIGKILL)."""
        for member in self.members:
            member.stop()

    def close(self) -> None:
        """Stop every member and remove the working directory if this object made it."""
        self.stop()
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self: G) -> G:
        try:
            self.start()
        except BaseException:
            self.close()  # the members are already stopped; remove the directory too
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ports={[getattr(m, 'port', None) for m in self.members]})"
