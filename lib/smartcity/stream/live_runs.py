"""A live run as a process of its own (``smartcity live``), for the notebooks: 01_simulate in live mode starts
it, 02_stream attaches to it and waits for it, and it stops by itself after ``live_seconds`` (or the way
Ctrl-C stops it: ``smartcity live --stop``). Its files are in the run's folder (``outputs/<profile>/live/``,
:mod:`smartcity.stream.monitor`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from smartcity.platform.background import Background, BackgroundError
from smartcity.platform.params import display_path, project_root
from smartcity.stream import monitor


def process(folder: Path) -> Background:
    """The live run of the profile whose run folder is ``folder``, as a background process."""
    return Background(folder, "live run", (b"smartcity", b"live"), "live.log")


def start(
    folder: Path, params: dict[str, Any], profile: str, live_seconds: float, ready_timeout_s: float
) -> dict[str, Any]:
    """Start ``smartcity live`` on these flat ``params``; returns once its first status sample is written, so a
    failure to start is raised here."""
    run = process(folder)
    pid = run.running_pid()
    if pid is not None:
        raise BackgroundError(
            f"a live run of profile {profile!r} is already running (pid {pid}); stop it "
            f"first: smartcity live --stop --params {display_path(folder / 'params.yaml')}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in (monitor.STATUS_FILE, monitor.BATCHES_FILE, monitor.SUMMARY_FILE):
        (folder / name).unlink(missing_ok=True)
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    status = folder / monitor.STATUS_FILE
    return run.start(
        ["live", "--params", str(params_file), "--quiet"],
        lambda: status.exists() and status.stat().st_size > 0,
        cwd=project_root(),
        timeout_s=ready_timeout_s,
        params=display_path(params_file),
        log=display_path(run.log),
        status=display_path(status),
        stops=f"after {live_seconds:g} s, then drains" if live_seconds else "when stopped",
    )


def wait(folder: Path, profile: str, live_seconds: float, timeout_s: float, progress: bool) -> dict[str, Any]:
    """Wait for a bounded run to finish and return its summary. An open-ended run (``live_seconds`` 0) is not
    waited for: the summary so far is returned and it keeps running. A failed run raises with its error and log."""
    run = process(folder)
    info = run.info()
    if info is None:
        raise BackgroundError(f"no live run of profile {profile!r} was started: run 01_simulate with mode: live")
    if live_seconds == 0 and run.alive(info["pid"]):
        return monitor.summarize_run(folder)
    monitor.wait_for(
        lambda: not run.alive(info["pid"]),
        info["started_at"],
        live_seconds,
        timeout_s,
        f"stop it with smartcity live --stop --params {info['params']}",
        progress,
    )
    run.ended()
    return monitor.read_summary(folder)
