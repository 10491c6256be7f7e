"""Headless Chromium for the tests that look at pages: saved maps and the report offline, the live map."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

INSTALL_CHROMIUM = (
    "Debian/Ubuntu: apt-get install chromium (CI installs it in .ci/run); macOS: brew install --cask chromium; "
    "or point SMARTCITY_CHROMIUM at a Chromium or Chrome binary"
)


def chromium() -> str:
    """The browser to test with; without one the test says how to get it (and fails on CI)."""
    for candidate in (os.environ.get("SMARTCITY_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return str(shutil.which(candidate))
    message = f"headless Chromium is needed to check that maps render offline: {INSTALL_CHROMIUM}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


#: Networking off: every request goes to a closed port, every host name resolves to nothing.
OFFLINE = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND"]
#: Only this machine: host names resolve to nothing, loopback addresses (a local tile server) answer.
LOOPBACK_ONLY = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def chromium_run(args: list[str], scratch: str, network: list[str] = OFFLINE) -> str:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={scratch}/profile",
        *network,
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the browser and the helpers it started
            proc.wait()
    return out.decode(errors="replace") + err.decode(errors="replace")[-2000:]


def screenshot(url: str, width: int, height: int, network: list[str] = OFFLINE) -> np.ndarray:
    """RGB pixels of a page as headless Chromium renders it (by default with every request refused)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as scratch:
        shot = Path(scratch) / "shot.png"
        output = chromium_run([f"--window-size={width},{height}", f"--screenshot={shot}", url], scratch, network)
        assert shot.exists(), f"chromium made no screenshot:\n{output}"
        return np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")).astype(int)


def dump_dom(url: str, width: int, height: int, network: list[str] = OFFLINE) -> str:
    """The page's DOM after its scripts ran (within the virtual-time budget)."""
    with tempfile.TemporaryDirectory() as scratch:
        return chromium_run([f"--window-size={width},{height}", "--dump-dom", url], scratch, network)
