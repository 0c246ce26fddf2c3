"""The generic loop: step plan, precision choice, optimizer groups, checkpoints, resumption guards."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from crab.config import OptimConfig
from crab.errors import CrabError
from crab.train.checkpoint import latest_checkpoint
from crab.train.loop import (_set_activation_checkpointing, _truncate_live, build_optimizer, fit, plan_steps,
                             resolve_mixed_precision)  # fmt: skip
from crab.train.stage import StagePaths
from crab.train.pretrain import setup_pretrain

OPTIM = OptimConfig(
    epochs=2.0, batch_size=2, grad_accum=2, lr=1e-3, weight_decay=0.1, warmup_ratio=0.1, max_grad_norm=1.0,
    mixed_precision="no", log_every_steps=2, save_every_steps=1,
)  # fmt: skip


def test_plan_counts_micro_batches_steps_and_warmup() -> None:
    plan = plan_steps(12, OPTIM)
    assert (plan.batches_per_epoch, plan.num_steps, plan.num_micro_batches, plan.num_warmup_steps) == (6, 6, 12, 1)
    half = plan_steps(11, dataclasses.replace(OPTIM, epochs=0.5))  # 6 micro-batches per epoch -> 3 -> 2 steps
    assert (half.num_steps, half.num_micro_batches) == (2, 4)
    assert plan_steps(12, OPTIM, num_replicas=2).batches_per_epoch == 3


def test_mixed_precision_falls_back_where_the_device_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_mixed_precision("no", cpu) == "no"
    assert resolve_mixed_precision("fp16", cpu) == "no"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_mixed_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_mixed_precision("bf16", cpu) == "no"
    assert resolve_mixed_precision("bf16", torch.device("meta")) == "no"


def test_weight_decay_applies_to_matrices_only() -> None:
    layer = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(list(layer.named_parameters()), OPTIM)
    decays = {tuple(p.shape): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays == {(2, 3): 0.1, (2,): 0.0}


def test_truncating_the_live_log_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    tsv = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tloss\n1\t3.0\n2\t2.0\n3\t1.0\n")
    _truncate_live(tmp_path, 2)
    assert tsv.read_text() == "step\tloss\n1\t3.0\n2\t2.0\n"


@pytest.fixture
def setup(workspace: Any, stage_dir: Path) -> Any:
    return setup_pretrain(workspace.params)


def _fit(setup: Any, work_dir: Path, optim: OptimConfig = OPTIM, **kwargs: Any) -> Any:
    return fit(setup.model, setup.dataset, setup.collate_fn, optim, seed=0, work_dir=work_dir,
               fingerprint=setup.fingerprint, **kwargs)  # fmt: skip


def test_checkpoints_keep_the_last_two_and_a_finished_run_resumes_without_training(setup: Any, tmp_path: Path) -> None:
    work = StagePaths.of(tmp_path / "models" / "pretrain").work_dir
    first = _fit(setup, work)
    assert first.resumed_from_step is None and first.plan.num_steps == 6
    assert sorted(p.name for p in work.glob("step-*")) == ["step-00005", "step-00006"]
    assert [h["step"] for h in first.history] == [2, 4, 6]

    weights = {n: p.detach().clone() for n, p in setup.model.named_parameters()}
    again = _fit(setup, work)  # killed after its last checkpoint: nothing left to train
    assert again.resumed_from_step == 6 and again.num_tokens == 0
    assert again.history == first.history
    assert all(torch.equal(p, weights[n]) for n, p in setup.model.named_parameters())


def test_checkpoints_of_other_settings_are_not_resumed(setup: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _fit(setup, work, dataclasses.replace(OPTIM, epochs=1.0))
    assert latest_checkpoint(work).name == "step-00003"
    result = _fit(setup, work, dataclasses.replace(OPTIM, epochs=1.0, lr=5e-4))
    assert result.resumed_from_step is None and result.num_tokens > 0
    assert sorted(p.name for p in work.glob("step-*")) == ["step-00002", "step-00003"]


def test_a_diverging_loss_stops_the_run_with_the_step(setup: Any, tmp_path: Path) -> None:
    def nan_loss(model: torch.nn.Module) -> torch.Tensor:
        return torch.tensor(float("nan"))

    with pytest.raises(CrabError, match="the loss became nan at step 1"):
        _fit(setup, tmp_path / "work", extra_loss=nan_loss)


def test_fit_refuses_a_model_without_trainable_parameters(setup: Any, tmp_path: Path) -> None:
    setup.model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        _fit(setup, tmp_path / "work")


def test_activation_checkpointing_is_on_while_training_and_gives_the_same_weights(
    workspace: Any, stage_dir: Path, tmp_path: Path
) -> None:
    optim = dataclasses.replace(OPTIM, epochs=1.0)
    plain, checkpointed = setup_pretrain(workspace.params), setup_pretrain(workspace.params)
    _fit(plain, tmp_path / "plain", optim)

    layers = checkpointed.model.language_model.model.layers
    seen: list[bool] = []
    _fit(checkpointed, tmp_path / "gc", dataclasses.replace(optim, gradient_checkpointing=True),
         on_step_end=lambda step: seen.append(all(layer.gradient_checkpointing for layer in layers)))  # fmt: skip
    assert seen == [True] * 3
    assert not any(layer.gradient_checkpointing for layer in layers)  # off again after training
    trained = dict(plain.model.named_parameters())
    num_trainable = 0
    for name, param in checkpointed.model.named_parameters():
        torch.testing.assert_close(param, trained[name], rtol=1e-6, atol=1e-7, msg=name)
        num_trainable += param.requires_grad
    assert num_trainable > 0

    # Same math, so the switch does not invalidate a checkpoint: the finished plain run resumes with it on.
    again = _fit(plain, tmp_path / "plain", dataclasses.replace(optim, gradient_checkpointing=True))
    assert again.resumed_from_step == 3 and again.num_tokens == 0


def test_activation_checkpointing_needs_a_model_that_supports_it(tmp_path: Path) -> None:
    with pytest.raises(CrabError, match="does not support it"):
        _set_activation_checkpointing(torch.nn.Linear(2, 2), True, "pretrain")
    assert _set_activation_checkpointing(torch.nn.Linear(2, 2), False, "pretrain") is None
