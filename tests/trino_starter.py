"""A Python process that starts a profile's Trino the way a notebook kernel does, then waits: what the
tests of Trino's lifetime signal (Trino must stop with whatever started it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from smartcity.params import Params
from smartcity.platform import trino
from smartcity.platform.processes import port_open
from tests.conftest import engines_using


class TrinoStarter:
    """Starts the profile at ``params`` in a child process (its own session) and waits until Trino answers."""

    SCRIPT = textwrap.dedent(
        """
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started where SIGINT is ignored
        from smartcity import steps
        from smartcity.profiles import load_params
        lab = steps.open_lab(load_params(sys.argv[1]))
        lab.trino()
        print("ready", flush=True)
        time.sleep(600)
        """
    )

    def __init__(self, cfg: Params, params: Path, errors: Path) -> None:
        self.cfg, self.errors = cfg, errors
        with open(errors, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.SCRIPT, str(params)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        assert self.proc.stdout.readline().strip() == b"ready", errors.read_text()
        assert port_open("127.0.0.1", cfg.trino.port) and engines_using(cfg.paths.trino)

    def end_by(self, how: signal.Signals) -> None:
        """Signal the process, then wait until it and its Trino are gone."""
        os.kill(self.proc.pid, how)
        try:
            self.proc.wait(trino.STOP_TIMEOUT_S + 60)  # Trino's orderly stop, then a kill, then the interpreter's exit
        except subprocess.TimeoutExpired:
            log = (self.cfg.paths.trino / "server.log").read_text(errors="replace").splitlines()[-15:]
            pytest.fail(f"still running; its stderr:\n{self.errors.read_text()}\nTrino's log:\n" + "\n".join(log))
        deadline = time.monotonic() + 60
        while engines_using(self.cfg.paths.trino) and time.monotonic() < deadline:
            time.sleep(0.5)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
