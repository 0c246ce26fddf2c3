"""``pretrain`` then ``finetune`` in two data-parallel processes under ``accelerate launch`` (gloo DDP on CPU).

Launches ``accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2`` on this file,
whose ``__main__`` part runs ``python -m crab.cli pretrain`` and ``... finetune`` in each process (through
``runpy``, so the CLI module runs exactly as ``-m crab.cli``) after wrapping three seams to record what each
rank did: the micro-batches the stage's :class:`~crab.train.data.ResumableBatchSampler` gave it, whether it
wrote the stage's outputs, and a digest of its trained parameters. ``ACCELERATE_USE_CPU=1`` makes the
processes CPU workers (the config is the GPU one; accelerate's ``--cpu`` flag would start one process).

The test checks that the runs finish, that rank 0 alone wrote the outputs (and one dvclive log, no
leftovers), that the ranks trained on the disjoint slices the sampler promises, that both ended with the same
weights (gradients were all-reduced), and that the published models load to those weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.unit.train.conftest import Workspace, stage_dir, workspace  # noqa: F401  (the tiny training workspace)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DDP_CONFIG = REPO / "configs" / "accelerate" / "ddp.yaml"
NUM_PROCESSES = 2
STAGES = ("pretrain", "finetune")
TIMEOUT_S = 300


def _digest(named: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names and float32 bytes of ``named``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(named):
        digest.update(name.encode())
        digest.update(named[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# The launched script (one copy per process)
# --------------------------------------------------------------------------------------------------


def _run_worker(out_dir: Path) -> int:
    """Run ``crab pretrain`` then ``crab finetune`` in this process; write ``rank<r>.json`` to ``out_dir``.

    Returns:
        The exit status of the first failing stage, else 0.
    """
    import crab.train.finetune as finetune_module
    import crab.train.loop as loop_module
    import crab.train.pretrain as pretrain_module
    from accelerate import PartialState

    record: dict[str, Any] = {"batches": {}, "wrote": [], "trained": {}, "digest": {}, "num_processes": {}}
    current: list[str] = []  # the running stage
    trained: dict[str, torch.nn.Module] = {}

    class RecordingSampler(loop_module.ResumableBatchSampler):
        def batch(self, position: int) -> list[int]:
            indices = super().batch(position)
            record["batches"].setdefault(current[-1], []).append(indices)
            return indices

    def recording_fit(real: Any) -> Any:
        def fit(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            trained[current[-1]] = model
            return real(model, *args, **kwargs)

        return fit

    def recording_publish(real: Any) -> Any:
        def publish_stage(paths: Any, write_outputs: Any, *rest: Any) -> None:
            def write(folder: Path) -> None:
                record["wrote"].append(current[-1])
                write_outputs(folder)

            real(paths, write, *rest)

        return publish_stage

    loop_module.ResumableBatchSampler = RecordingSampler
    for module in (pretrain_module, finetune_module):
        module.fit = recording_fit(module.fit)
        module.publish_stage = recording_publish(module.publish_stage)

    status = 0
    for stage in STAGES:
        current.append(stage)
        sys.argv = ["crab", stage]
        try:
            runpy.run_module("crab.cli", run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            status = int(stop.code or 0)
        if status:
            break
        params = {n: p for n, p in trained[stage].named_parameters() if p.requires_grad}
        record["trained"][stage] = sorted(params)
        record["digest"][stage] = _digest(params)
    state = PartialState()
    record["num_processes"] = state.num_processes
    (out_dir / f"rank{state.process_index}.json").write_text(json.dumps(record), encoding="utf-8")
    return status


# --------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------


def _write_params(space: Workspace, folder: Path) -> Any:
    """``params.yaml`` of the tiny workspace, with accumulation in pre-training; returns the params."""
    params = space.params
    pretrain = dataclasses.replace(
        params.pretrain, optim=dataclasses.replace(params.pretrain.optim, grad_accum=2, save_every_steps=2)
    )
    params = dataclasses.replace(params, pretrain=pretrain)
    (folder / "params.yaml").write_text(yaml.safe_dump(dataclasses.asdict(params)), encoding="utf-8")
    return params


def _launch(folder: Path, out_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the launch command in ``folder``; on timeout kill its whole process group (launcher and workers)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(DDP_CONFIG), "--num_processes", str(NUM_PROCESSES),
           "--main_process_port", "0", __file__, str(out_dir)]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    with subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), time.perf_counter() - start


def _loss_steps(log_dir: Path) -> list[int]:
    lines = (log_dir / "plots" / "metrics" / "train" / "loss.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [int(line.split("\t")[0]) for line in lines]


def test_two_ranks_split_the_data_sync_weights_publish_once(workspace: Workspace, stage_dir: Path) -> None:  # noqa: F811
    from crab.train.data import ResumableBatchSampler
    from crab.train.finetune import load_finetuned
    from crab.train.loop import plan_steps
    from crab.train.pretrain import load_pretrained

    params = _write_params(workspace, stage_dir)
    out_dir = stage_dir / "ranks"
    out_dir.mkdir()
    done, seconds = _launch(stage_dir, out_dir)
    assert done.returncode == 0, (
        f"accelerate launch failed after {seconds:.0f} s:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(NUM_PROCESSES)]

    assert [r["num_processes"] for r in ranks] == [NUM_PROCESSES] * NUM_PROCESSES
    assert [r["wrote"] for r in ranks] == [list(STAGES), []]  # rank 0 alone wrote the outputs

    models = stage_dir / "models"
    assert sorted(p.name for p in models.iterdir()) == ["finetune", "finetune_log", "pretrain", "pretrain_log"]
    for stage in STAGES:
        cfg = getattr(params, stage)
        summary = json.loads((models / stage / "train_summary.json").read_text(encoding="utf-8"))
        num_examples = sum(summary["num_examples"].values())
        plan = plan_steps(num_examples, cfg.optim, NUM_PROCESSES)
        assert summary["plan"] == vars(plan)  # the step plan counts both processes
        assert _loss_steps(models / f"{stage}_log") == list(range(1, plan.num_steps + 1))  # one dvclive writer

        # Each rank got exactly its slice of every global batch; within an epoch the slices are disjoint
        # and together cover the mixture.
        seen = [r["batches"][stage] for r in ranks]
        for rank, batches in enumerate(seen):
            sampler = ResumableBatchSampler(
                num_examples, cfg.optim.batch_size, cfg.seed, num_replicas=NUM_PROCESSES, rank=rank
            )
            assert batches == [sampler.batch(p) for p in range(plan.num_micro_batches)]
        first_epoch = [i for batches in seen for batch in batches[: plan.batches_per_epoch] for i in batch]
        assert sorted(first_epoch) == list(range(num_examples))

        # DDP all-reduced the gradients: both processes end with the same trained weights.
        assert ranks[0]["trained"][stage] == ranks[1]["trained"][stage]
        assert ranks[0]["digest"][stage] == ranks[1]["digest"][stage]

    # The published models load, to the weights the processes trained.
    pretrained, _ = load_pretrained(models / "pretrain")
    named = dict(pretrained.named_parameters())
    assert _digest({n: named[n] for n in ranks[0]["trained"]["pretrain"]}) == ranks[0]["digest"]["pretrain"]
    finetuned, _ = load_finetuned(models / "pretrain", models / "finetune")
    named = dict(finetuned.named_parameters())
    assert _digest({n: named[n] for n in ranks[0]["trained"]["finetune"]}) == ranks[0]["digest"]["finetune"]


if __name__ == "__main__":
    sys.exit(_run_worker(Path(sys.argv[1])))
