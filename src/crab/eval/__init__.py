"""Evaluation: metrics as pure functions, their ``evaluate`` modules, and trivial baselines.

DESIGN.md section 7. The metrics follow the official definitions in ``reference/evaluation.md``:

* :mod:`crab.eval.metrics_ave`: AVE per-second accuracy (YapengTian/AVE-ECCV18 protocol).
* :mod:`crab.eval.metrics_avqa`: MUSIC-AVQA accuracy per question type, modality group and overall
  (GeWu-Lab/MUSIC-AVQA ``main_avst.py``).
* :mod:`crab.eval.metrics_avvp`: AVVP segment- and event-level F (YapengTian/AVVP-ECCV20 ``eval_metrics.py``).
* :mod:`crab.eval.metrics_arig`: ARIG cIoU and AUC (hche11/Localizing-Visual-Sounds-the-Hard-Way).
* :mod:`crab.eval.metrics_avs`: S4 / MS3 mIoU and F-score (OpenNLPLab/AVSBench) and Ref-AVS seen / unseen /
  null (GeWu-Lab/Ref-AVS).
* :mod:`crab.eval.metrics_avss`: AVSBench-semantic mIoU and F per class.
* :mod:`crab.eval.baselines`: chance and majority / prior baselines with the same result dicts.
* :mod:`crab.eval.loading`: :func:`load_metric` loads ``crab/eval/metrics/<name>`` as an ``evaluate``
  module by path, offline.

Metric functions take already-parsed predictions (``None`` for a parse failure); parsing lives with each
task's answer format (``crab.avuie.<task>.parse_answer``). Importing this package does not import
``evaluate`` (that happens in :func:`load_metric`).
"""

from crab.eval.loading import METRIC_NAMES, load_metric, metric_path
from crab.eval.metrics_ave import ave_accuracy, ave_segment_labels
from crab.eval.metrics_avqa import avqa_accuracy
from crab.eval.scoring import parse_failure_rate

__all__ = [
    "METRIC_NAMES",
    "ave_accuracy",
    "ave_segment_labels",
    "avqa_accuracy",
    "load_metric",
    "metric_path",
    "parse_failure_rate",
]
