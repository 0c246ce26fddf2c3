"""The ``report`` stage: papermill runs every notebook in ``notebooks/`` into ``reports/`` (ipynb + HTML).

DESIGN.md section 3: the notebooks render the paper's tables with our numbers beside the published ones,
the training curves, example predictions and a data overview. They read only stage outputs, and their logic
lives in :mod:`crab.report_tables` / :mod:`crab.report_data`, so this module is a driver:

1. check that ``metrics/<task>.json`` exists and is well formed for every evaluated task (``evaluate.tasks``
   and ``finetune_avs.tasks``, :func:`evaluated_tasks`; a missing one is an error that names the file; every other input is optional and the notebooks print
   "not available" for it);
2. for each ``notebooks/<name>.ipynb``, pass the parameters its ``parameters`` cell declares (paths and
   task lists derived from ``params.yaml``), execute it with papermill on the kernel named explicitly
   (:data:`KERNEL`) with the repository root as working directory;
3. export a static HTML without code cells (nbconvert ``exclude_input``). Tables are HTML and figures
   inline PNG, and the template's CDN scripts (require.js, MathJax, Mermaid) are left out, so the report
   shows everything offline.

Both files are written to temp names in ``reports/`` and renamed into place (atomic). A notebook that fails
leaves its executed copy, traceback included, as ``reports/<name>.failed.ipynb``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crab.config import Params
from crab.errors import CrabError, DataError
from crab.report_tables import read_metrics

__all__ = [
    "KERNEL",
    "NOTEBOOKS_DIR",
    "REPORTS_DIR",
    "ReportResult",
    "evaluated_tasks",
    "notebook_parameters",
    "report",
    "run_notebook",
    "training_log_dir",
]

log = logging.getLogger(__name__)

NOTEBOOKS_DIR = Path("notebooks")
REPORTS_DIR = Path("reports")
METRICS_DIR = Path("metrics")
PREDICTIONS_DIR = Path("predictions")
AVUIE_STATS = Path("data/avuie/stats.json")
VALIDATION_DIR = Path("reports/validation")
#: The Jupyter kernel the notebooks run on; the venv ships it (``<venv>/share/jupyter/kernels/python3``).
KERNEL = "python3"
CELL_TIMEOUT_S = 600

# The lab template with its CDN <script> tags removed: nothing in a report needs JavaScript.
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


@dataclass(frozen=True)
class ReportResult:
    """What ``report`` wrote.

    Attributes:
        notebooks: notebook name -> executed notebook (``reports/<name>.ipynb``).
        html: notebook name -> static HTML (``reports/<name>.html``).
        seconds: wall time per notebook (execution + export).
    """

    notebooks: dict[str, Path]
    html: dict[str, Path]
    seconds: dict[str, float]


def training_log_dir(out_dir: str) -> str:
    """The final dvclive folder of a training stage: ``models/<stage>_log`` for ``models/<stage>``.

    The rule of ``crab.train.stage.StagePaths.log_dir`` (a unit test keeps the two equal), restated here
    because importing the training loop would import torch into the report stage.
    """
    path = Path(out_dir)
    return str(path.with_name(f"{path.name}_log"))


def evaluated_tasks(params: Params) -> list[str]:
    """The tasks with metrics: the text tasks of ``evaluate``, then the mask tasks of ``evaluate_avs`` and
    ``evaluate_avss``."""
    return [*params.evaluate.tasks, *params.finetune_avs.tasks, *params.finetune_avss.tasks]


def notebook_parameters(params: Params) -> dict[str, Any]:
    """Every parameter any report notebook may declare, derived from ``params``.

    Args:
        params: reads ``evaluate`` (tasks, num_examples), ``finetune_avs`` / ``finetune_avss`` (tasks, out_dir),
            ``finetune`` and ``pretrain`` (out_dir).

    Returns:
        name -> value; each notebook receives the subset its ``parameters`` cell declares.
    """
    return {
        "tasks": evaluated_tasks(params),
        "metrics_dir": str(METRICS_DIR),
        "predictions_dir": str(PREDICTIONS_DIR),
        "training_logs": {
            "pretrain": training_log_dir(params.pretrain.out_dir),
            "finetune": training_log_dir(params.finetune.out_dir),
            "finetune_avs": training_log_dir(params.finetune_avs.out_dir),
            "finetune_avss": training_log_dir(params.finetune_avss.out_dir),
        },
        "num_examples": params.evaluate.num_examples,
        "avuie_stats": str(AVUIE_STATS),
        "validation_reports": {
            "raw": str(VALIDATION_DIR / "raw.json"),
            "avuie": str(VALIDATION_DIR / "avuie.json"),
        },
    }


def report(params: Params) -> ReportResult:
    """Execute every notebook of ``notebooks/`` into ``reports/`` (module docstring).

    Args:
        params: see :func:`notebook_parameters`.

    Returns:
        The executed notebooks, their HTML exports and the time each took.

    Raises:
        DataError: ``metrics/<task>.json`` is missing or malformed for an evaluated task.
        CrabError: ``notebooks/`` holds no notebook, or a notebook failed (names the cell's error and
            where the executed copy was kept).
    """
    for task in evaluated_tasks(params):
        path = METRICS_DIR / f"{task}.json"
        if not path.is_file():
            stage = ("evaluate_avs" if task in params.finetune_avs.tasks else
                     "evaluate_avss" if task in params.finetune_avss.tasks else "evaluate")  # fmt: skip
            raise DataError(path, f"no metrics for evaluated task {task!r}; run `crab {stage} --task {task}`")
        read_metrics(path)
    notebooks = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if not notebooks:
        raise CrabError(f"{NOTEBOOKS_DIR}: no notebooks to run")
    values = notebook_parameters(params)
    executed, html, seconds = {}, {}, {}
    for notebook in notebooks:
        start = time.perf_counter()
        executed[notebook.stem], html[notebook.stem] = run_notebook(notebook, REPORTS_DIR, values)
        seconds[notebook.stem] = round(time.perf_counter() - start, 3)
        log.info("report: %s -> %s (%.1f s)", notebook, html[notebook.stem], seconds[notebook.stem])
    return ReportResult(notebooks=executed, html=html, seconds=seconds)


def run_notebook(notebook: Path, out_dir: Path, values: dict[str, Any]) -> tuple[Path, Path]:
    """Execute one notebook with papermill and export it to HTML, both written atomically.

    Args:
        notebook: the parameterised notebook.
        out_dir: where ``<name>.ipynb`` and ``<name>.html`` go.
        values: candidate parameters; only those the notebook's ``parameters`` cell declares are passed.

    Returns:
        The executed notebook's path and the HTML's path.

    Raises:
        CrabError: the notebook raised (message: cell error; the executed copy is kept as
            ``<name>.failed.ipynb``).
    """
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    name = notebook.stem
    declared = papermill.inspect_notebook(str(notebook))
    parameters = {k: v for k, v in values.items() if k in declared}
    final_nb, final_html, failed = out_dir / f"{name}.ipynb", out_dir / f"{name}.html", out_dir / f"{name}.failed.ipynb"
    tmp_nb = out_dir / f".{name}.tmp-{os.getpid()}.ipynb"
    tmp_html = out_dir / f".{name}.tmp-{os.getpid()}.html"
    try:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(tmp_nb),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(Path.cwd()),
                progress_bar=False,
                log_output=False,
                execution_timeout=CELL_TIMEOUT_S,
            )
        except papermill.PapermillExecutionError as err:
            if tmp_nb.exists():
                os.replace(tmp_nb, failed)
            raise CrabError(
                f"{notebook}: cell {err.exec_count} raised {err.ename}: {err.evalue} (see {failed})"
            ) from err
        nb = nbformat.read(tmp_nb, as_version=4)
        tmp_html.write_text(_export_html(nb, title=name), encoding="utf-8")
        os.replace(tmp_nb, final_nb)
        os.replace(tmp_html, final_html)
    finally:
        tmp_nb.unlink(missing_ok=True)
        tmp_html.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    return final_nb, final_html


def _export_html(nb: Any, title: str) -> str:
    """Static HTML of an executed notebook: outputs and markdown only, no code, no CDN scripts."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"crab_report.html.j2": _OFFLINE_TEMPLATE})],
        template_file="crab_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body
