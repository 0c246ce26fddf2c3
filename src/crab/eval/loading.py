"""Loading our metrics as Hugging Face ``evaluate`` modules, from the package, offline.

DESIGN.md section 7: metrics are pure functions exposed as ``evaluate`` modules loaded from local paths,
never from the hub (stack-notes section 5: ``evaluate.load("accuracy")`` cannot work offline, local module
folders load in about 0.01 s). Each module is the folder ``crab/eval/metrics/<name>/<name>.py``; this module
resolves it inside the installed package, so the pipeline does not depend on the working directory.
``evaluate`` is imported only when a metric is loaded (it costs seconds to import), so the pure metric
functions stay cheap to import for the CLI and the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import evaluate

__all__ = ["METRIC_NAMES", "load_metric", "metric_path"]

#: The metric modules shipped in ``crab/eval/metrics``.
METRIC_NAMES: tuple[str, ...] = (
    "ave_accuracy",
    "avqa_accuracy",
    "avvp_f",
    "arig_ciou",
    "avs_segmentation",
    "avss_segmentation",
)

_METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def metric_path(name: str) -> Path:
    """The folder of metric module ``name`` inside the package.

    Raises:
        ValueError: ``name`` is not one of :data:`METRIC_NAMES`.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
    return _METRICS_DIR / name


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load one of our ``evaluate`` metric modules by path, with the hub switched off.

    Args:
        name: one of :data:`METRIC_NAMES`, e.g. ``"avqa_accuracy"``.
        **kwargs: passed to ``evaluate.load``; ``keep_in_memory`` defaults to True (our inputs are small,
            and it leaves no Arrow cache files or locks behind).

    Returns:
        The loaded metric; use ``compute(...)`` or ``add_batch(...)`` then ``compute()``.

    Raises:
        ValueError: unknown ``name``.
    """
    path = metric_path(name)
    # Never reach the hub (DESIGN.md section 8); evaluate reads these when first imported, so a caller that
    # imported it earlier must have set them itself. A local folder never needs the hub either way.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    import evaluate  # deferred: importing evaluate takes seconds

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(path), **kwargs)
