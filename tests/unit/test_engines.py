"""The lab's process handling: engines stop on exit, on error and when their parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from smartcity.platform.processes import EngineError, ManagedProcess, free_port, port_open, wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_context_manager_stops_the_process(tmp_path: Path) -> None:
    with ManagedProcess("sleeper", ["sleep", "60"], log_path=tmp_path / "log") as proc:
        assert proc.alive()
    assert not proc.alive()


def test_a_process_that_ignores_the_signal_is_killed(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    proc = ManagedProcess("stubborn", [sys.executable, "-c", script], log_path=tmp_path / "log", stop_timeout=0.5)
    wait_until(lambda: "up" in proc.log_tail(), timeout=10, what="stubborn", alive=proc.alive)
    proc.stop()
    assert not proc.alive()


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from smartcity.platform.processes import ManagedProcess
    proc = ManagedProcess("sleeper", ["sleep", "60"], log_path=Path(sys.argv[1]))
    print(proc.pid, flush=True)
    sys.stdin.readline()       # the test has seen the engine running
    if sys.argv[2] == "exit":
        sys.exit(0)            # normal exit: the atexit hook stops the engine
    time.sleep(60)             # killed with SIGKILL: the kernel signals the engine
    """
)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_engines_do_not_outlive_the_lab(tmp_path: Path, how: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "log"), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(parent.stdout.readline())
    assert alive(pid)
    parent.stdin.write("go\n")
    parent.stdin.flush()
    if how == "kill":
        parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    assert wait_dead(pid), f"engine {pid} outlived its parent ({how})"


def test_wait_until_reports_an_engine_that_died(tmp_path: Path) -> None:
    proc = ManagedProcess("quitter", ["true"], log_path=tmp_path / "log")
    with pytest.raises(EngineError, match="quitter exited during start-up"):
        proc.wait_ready(lambda: False, timeout=10)


def test_wait_until_times_out(tmp_path: Path) -> None:
    proc = ManagedProcess("idler", ["sleep", "60"], log_path=tmp_path / "log")
    with pytest.raises(EngineError, match="idler did not become ready within 1 s"):
        proc.wait_ready(lambda: False, timeout=1)
    assert not proc.alive()


def test_free_port_is_free() -> None:
    assert not port_open("127.0.0.1", free_port())
