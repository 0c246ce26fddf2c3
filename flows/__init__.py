"""Prefect orchestration of the crab DVC pipeline (DESIGN.md section 3: "Prefect decides *when* and
*with what guardrails*; DVC decides *whether* a stage must run").

* :mod:`flows.pipeline` holds the flow ``crab_pipeline``: one Prefect task per DVC stage, in the order
  of the stage table :data:`crab.stages.STAGES`, each running ``dvc repro --single-item <stage>``.
* :mod:`flows.serve` serves the deployment that ``prefect.yaml`` declares (``python -m flows.serve``).

``flows`` is a top-level package beside ``src/``, not part of the installed ``crab`` package: import it
with the repository root on ``sys.path`` (``python -m ...`` and ``python -m pytest`` from the root do
that). Prefect itself loads the flow by file path (``flows/pipeline.py:crab_pipeline``), so deployments
need no import path. Nothing here imports torch or a stage module.
"""
