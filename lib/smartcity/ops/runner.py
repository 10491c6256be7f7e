"""Run the six notebooks in order with papermill and render the report.

Parameters are validated before anything starts. Every key of the params file is injected into
every notebook, exactly as ``papermill -f params/<profile>.yaml`` would do by hand, so a notebook
never silently falls back to a default for a setting the file gives. A failing notebook stops the
run; its executed copy, with the error in place, stays in ``<output_dir>/notebooks/``.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError
from tqdm import tqdm

from smartcity import steps
from smartcity.params import Params
from smartcity.platform import jvm
from smartcity.platform.params import project_root
from smartcity.present import offline
from smartcity.present.report import NotebookRun
from smartcity.profiles import load_params, resolve_file
from smartcity.steps import NOTEBOOKS
from smartcity.stream import contract_check

log = logging.getLogger(__name__)


#: The kernel warns on every start that its loopback TCP sockets are unencrypted; errors still show.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


class RunError(RuntimeError):
    """A notebook failed or the stages disagree; the message names the notebook and cell."""


class _DropUnknownParameterWarnings(logging.Filter):
    """Papermill warns for each injected key a notebook does not declare; the runner injects all on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


@dataclass
class RunResult:
    cfg: Params
    notebooks: list[NotebookRun] = field(default_factory=list)
    index: Path | None = None
    problems: list[str] = field(default_factory=list)


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def check_kernel(kernel: str = "python3") -> None:
    """The notebooks must run on this environment's Python, where smartcity is installed."""
    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise RunError(f"no Jupyter kernel named {kernel!r}: is ipykernel installed in {sys.prefix}?") from None
    # jupyter_client runs a bare "python" as the current interpreter
    program = spec.argv[0]
    if program not in ("python", "python3") and shutil.which(program) != sys.executable and program != sys.executable:
        raise RunError(
            f"the Jupyter kernel {kernel!r} ({spec.resource_dir}) runs {program}, not this environment's "
            f"{sys.executable}; remove that kernelspec or run `{sys.executable} -m ipykernel install --user`"
        )


def render_html(executed: Path, target: Path) -> Path:
    """An executed notebook as standalone HTML, for sharing without Jupyter."""
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(offline.inline_frames(body))  # the notebook's maps render offline too
    return target


def execute(name: str, cfg: Params, parameters: dict[str, Any], kernel: str = "python3") -> NotebookRun:
    """Execute one notebook into <output_dir>/notebooks/ and render it; raise RunError on failure."""
    source = notebook_dir() / f"{name}.ipynb"
    executed = cfg.paths.output / "notebooks" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            source,
            executed,
            parameters=parameters,
            kernel_name=kernel,
            cwd=notebook_dir(),
            progress_bar=False,
            request_save_on_cell_execute=True,
            extra_arguments=QUIET_KERNEL,
        )
    except PapermillExecutionError as exc:
        raise RunError(
            f"notebook {name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\nthe executed notebook is kept at {executed}"
        ) from None
    html = render_html(executed, cfg.paths.output / "html" / f"{name}.html")
    return NotebookRun(name, executed, html, time.monotonic() - started)


def run(params_path: str | Path | None = None, notebooks: tuple[str, ...] = NOTEBOOKS) -> RunResult:
    """The whole lab, from one params file: notebooks in order, then the report."""
    cfg = load_params(params_path)  # invalid params fail here, before anything starts
    unknown = sorted(set(notebooks) - set(NOTEBOOKS))
    if unknown:
        raise RunError(f"unknown notebook(s) {', '.join(unknown)}; the lab's notebooks are {', '.join(NOTEBOOKS)}")
    notebooks = tuple(n for n in NOTEBOOKS if n in notebooks)
    steps.check_unattended(cfg)
    # what `smartcity params resolve` writes: the profile merged with what it extends, and its fingerprint
    parameters = resolve_file(params_path or project_root() / "params" / "local.yaml")
    _prepare(cfg, fresh=notebooks[0] == NOTEBOOKS[0])
    lab = steps.open_lab(cfg)
    result = RunResult(cfg)
    progress = tqdm(notebooks, desc="notebooks", unit="nb")
    try:
        for name in progress:
            progress.set_postfix_str(name)
            try:
                steps.share_engines(lab, name)
                result.notebooks.append(execute(name, cfg, parameters))
            except BaseException as exc:  # a live run started by 01 must not outlive a failed or interrupted run
                steps.stop_live(cfg, timeout_s=60)
                if not isinstance(exc, RunError):
                    raise
                executed = cfg.paths.output / "notebooks" / f"{name}.ipynb"
                result.notebooks.append(NotebookRun(name, executed, None, 0.0, str(exc).splitlines()[0]))
                result.index = steps.write_report(lab, result.notebooks)
                raise
    finally:
        progress.close()
        lab.stop()  # what the run shared between its notebooks (a Trino profile's Trino)
    result.index = steps.write_report(lab, result.notebooks)
    _, result.problems = lab.ledger.reconcile()
    if result.problems and set(notebooks) == set(NOTEBOOKS):
        raise RunError("the stages disagree on event counts:\n" + "\n".join(result.problems))
    return result


def _prepare(cfg: Params, fresh: bool) -> None:
    """What every notebook needs, checked before the first starts; a run from the start leaves nothing of an
    earlier run's outputs."""
    jvm.setup_all()  # Java present, jars cached: fail now rather than in notebook 2
    contract_check.jar()  # the stream's contract check compiled
    offline.setup_all()  # map assets cached (npm once): fail now rather than when 01 saves its map
    steps.prepare_engines(cfg)  # e.g. Trino's Java and server: fail now rather than in 03
    check_kernel()
    logging.getLogger("papermill").addFilter(_DropUnknownParameterWarnings())
    if fresh:
        for stale in ("notebooks", "html", "maps", "tables"):
            shutil.rmtree(cfg.paths.output / stale, ignore_errors=True)
        steps.open_lab(cfg).ledger.clear()


def refresh_stored_outputs(notebooks: tuple[str, ...] = NOTEBOOKS, timeout: int = 1800) -> None:
    """Re-execute the notebooks in place with their defaults: the reference outputs nbval compares.

    Streams are coalesced (carriage returns resolved) the way nbval reads a live run, and no
    timing metadata is written, so a refresh only changes what really changed.
    """
    for name in tqdm(notebooks, desc="refreshing", unit="nb"):
        path = notebook_dir() / f"{name}.ipynb"
        book = nbformat.read(path, as_version=4)
        client = NotebookClient(
            book,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(notebook_dir())}},
            coalesce_streams=True,
            record_timing=False,
            extra_arguments=QUIET_KERNEL,
        )
        try:
            client.execute()
        finally:
            nbformat.write(book, path)
