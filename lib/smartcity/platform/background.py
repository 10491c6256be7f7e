"""A lab command running in the background, in a session of its own, watched through its folder.

A notebook starts a live run this way (``python -m smartcity live ...``): the process outlives the
kernel that started it (a kernel restart does not kill it), and whoever looks later finds it
through ``supervisor.json`` (its pid and how it was started), ``exit.json`` (how it ended) and its
log, all in one folder. A pid counts as the command only while /proc shows it running with the
command's words: a zombie, or a pid reused by another program, does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERVISOR_FILE = "supervisor.json"
EXIT_FILE = "exit.json"


class BackgroundError(RuntimeError):
    """The background command failed or could not start; the message carries its log's tail."""


@dataclass(frozen=True)
class Background:
    """One background command of the lab: its folder, a name for messages, the words its command line holds."""

    folder: Path
    name: str  # "live run"
    words: tuple[bytes, ...]  # what /proc/<pid>/cmdline holds while it runs, e.g. (b"smartcity", b"live")
    log_name: str = "command.log"

    @property
    def log(self) -> Path:
        return self.folder / self.log_name

    def info(self) -> dict[str, Any] | None:
        path = self.folder / SUPERVISOR_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def alive(self, pid: int) -> bool:
        """The command is running as ``pid`` (not a zombie, not a pid reused by another program)."""
        if not Path("/proc/self").is_dir():  # no /proc (macOS): the signal test is all there is
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone
            return False
        state = stat.rsplit(")", 1)[1].split()[0]
        return state != "Z" and all(word in cmdline for word in self.words)

    def running_pid(self) -> int | None:
        info = self.info()
        return info["pid"] if info and self.alive(info["pid"]) else None

    def log_tail(self, lines: int = 30) -> str:
        path = self.log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def start(
        self, args: Sequence[str], ready: Callable[[], bool], *, cwd: Path, timeout_s: float = 300.0, **info: Any
    ) -> dict[str, Any]:
        """Run ``python -m smartcity <args>`` in a session of its own; return once ``ready()`` says so.

        A command that exits first, or is not ready within ``timeout_s``, raises with its log's tail.
        ``info`` is kept in supervisor.json beside the pid.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / EXIT_FILE).unlink(missing_ok=True)
        with open(self.log, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "smartcity", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,  # its own process group: a notebook kernel's restart does not kill it
            )
        kept = {"pid": proc.pid, "started_at": time.time(), **info}
        (self.folder / SUPERVISOR_FILE).write_text(json.dumps(kept, indent=1) + "\n")
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise BackgroundError(
                    f"the {self.name} exited with code {proc.returncode} before it was ready:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BackgroundError(f"the {self.name} was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        return kept

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop it as Ctrl-C would (SIGTERM), then kill its whole process group after ``timeout_s``; True if it ran."""
        info = self.info()
        if info is None or not self.alive(info["pid"]):
            return False
        pid = info["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.alive(pid):
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                break
            time.sleep(0.5)
        return True

    def record_exit(self, error: str | None) -> None:
        """What the command leaves for :meth:`ended`: ok, or the error that ended it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / EXIT_FILE).write_text(json.dumps({"ok": error is None, "error": error}) + "\n")

    def ended(self) -> None:
        """Raise unless the command ended well (its exit file says ok)."""
        path = self.folder / EXIT_FILE
        ended = json.loads(path.read_text()) if path.exists() else None
        if ended is None or not ended.get("ok"):
            why = ended.get("error") if ended else "it ended without saying how (killed?)"
            raise BackgroundError(f"the {self.name} failed: {why}\n{self.log_tail()}")
