"""Start and stop the engines the lab owns (Kafka broker, PostgreSQL) without leaving orphans.

Three layers make sure an engine dies with the lab: callers use the handles as context managers
(stop on success, error and Ctrl-C); an ``atexit`` hook stops whatever is still running when the
interpreter or notebook kernel exits; and the kernel asks Linux to signal the child if its parent
dies without cleaning up (``PR_SET_PDEATHSIG``), which covers a killed kernel.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EngineError(RuntimeError):
    """An engine could not start, answer or stop; the message says which and where its log is."""


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for internal listeners and tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One process at a time in a folder (``.lock`` in it, an flock): the lab's download caches."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], bool]) -> None:
    """Poll a real readiness check (an API call, not a sleep) until it passes or the engine dies."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if not alive():
            raise EngineError(f"{what} exited during start-up")
        if time.monotonic() > deadline:
            raise EngineError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class StopsOnExit:
    """``with engine:`` stops it when the block ends, on success, error or Ctrl-C."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ManagedProcess(StopsOnExit):
    """A child process the lab started, stopped by signal, then killed if it does not exit in time."""

    _live: ClassVar[set[ManagedProcess]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 30.0,
        cwd: Path | None = None,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            user=user,
            env=None if env is None else dict(env),
            # PR_SET_PDEATHSIG must be set in the child, between fork and exec: what preexec_fn is for
            preexec_fn=_die_with_parent(stop_signal),  # noqa: PLW1509
            # a session of its own: a terminal's Ctrl-C reaches the lab, which stops its engines in
            # order (a live run drains the stream before its broker goes), not the engines directly
            start_new_session=True,
        )
        with self._lock:
            self._live.add(self)
        log.info("started %s (pid %d), log %s", name, self.proc.pid, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def wait_ready(self, check: Callable[[], bool], *, timeout: float) -> None:
        """Wait for a readiness check; if it fails, stop the engine and show the end of its log."""
        try:
            wait_until(check, timeout=timeout, what=self.name, alive=self.alive)
        except BaseException as exc:
            tail = self.log_tail()
            self.stop()
            if isinstance(exc, EngineError):
                raise EngineError(f"{exc}; last lines of {self.log_path}:\n{tail}") from None
            raise

    def stop(self) -> None:
        """Ask the engine to shut down cleanly; kill it if it has not exited within stop_timeout."""
        if self.alive():
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_timeout)
                self.proc.kill()
                self.proc.wait()
            except KeyboardInterrupt:
                self.proc.kill()
                self.proc.wait()
                raise
        self._log.close()
        with self._lock:
            self._live.discard(self)
        log.info("stopped %s", self.name)

    @classmethod
    def stop_all(cls) -> None:
        """Last resort at interpreter exit: stop every engine still running."""
        for proc in list(cls._live):
            try:
                proc.stop()
            except Exception:
                log.exception("could not stop %s", proc.name)


atexit.register(ManagedProcess.stop_all)


def stop_together(procs: Sequence[ManagedProcess]) -> None:
    """Signal every process first, then wait for each: engines that depend on one another (a quorum,
    a cluster's workers) shut down side by side instead of each waiting out the others' absence."""
    for proc in procs:
        if proc.alive():
            proc.proc.send_signal(proc.stop_signal)
    for proc in procs:
        proc.stop()


def run_checked(argv: Sequence[str], *, what: str, user: str | None = None) -> str:
    """Run a short tool (formatter, initdb) and turn a failure into an error that shows its output."""
    result = subprocess.run(list(argv), capture_output=True, text=True, user=user, check=False)
    if result.returncode != 0:
        raise EngineError(f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}".strip())
    return result.stdout


class EngineHandle(StopsOnExit):
    """An engine the lab talks to. Subclasses set ``process`` only when the lab started the engine:
    then stopping the handle stops it; an engine found already running is left alone."""

    process: ManagedProcess | None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
