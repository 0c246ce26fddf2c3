"""The ``pretrain`` and ``finetune`` stages end to end on the tiny workspace (conftest.py).

Checks the issue's requirements: the declared components and only they train in each stage, a killed run
resumes to bit-identical weights with continuous dvclive metrics, two runs with one seed agree, the loss
falls on a tiny overfit set, and every adapter saves and reloads to identical logits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import crab.train.finetune as finetune_module
import crab.train.language as language_module
import crab.train.pretrain as pretrain_module
from crab.config import Params, PretrainGroundingConfig
from crab.errors import CrabError
from crab.models.base import BaseModelPaths, load_llm
from crab.train.finetune import finetune, load_finetuned
from crab.train.data import feature_statistics, training_dataset
from crab.train.loop import fit
from crab.train.pretrain import load_pretrained, pretrain


class Killed(RuntimeError):
    """Stands for the process being killed."""


def _pretrain_params(workspace: Any, **optim: object) -> Params:
    params = workspace.params
    cfg = params.pretrain
    return dataclasses.replace(params, pretrain=dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **optim)))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _tsv_steps(log_dir: Path, name: str) -> list[int]:
    lines = (log_dir / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()[1:]
    return [int(line.split("\t")[0]) for line in lines]


@pytest.fixture(scope="module")
def base_llm(workspace: Any) -> dict[str, torch.Tensor]:
    return load_llm(BaseModelPaths.of(workspace.params.base_models.out_dir).llm).state_dict()


def _second_workspace(workspace: Any, factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory over the same AV-UIE data and reports (features are read by absolute path)."""
    other = factory.mktemp("killed")
    (other / "data").mkdir()
    (other / "data" / "avuie").symlink_to(workspace.root / "data" / "avuie")
    (other / "reports").symlink_to(workspace.root / "reports")
    monkeypatch.chdir(other)
    return other


def _kill_after(step: int, done: int) -> None:
    if done == step:
        raise Killed(f"killed after step {done}")


def test_pretrain_resumes_a_killed_run_to_identical_weights_and_continuous_metrics(
    workspace: Any, stage_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _pretrain_params(workspace, epochs=2.0, batch_size=2, grad_accum=2)  # 12 micro-batches, 6 steps
    reference = pretrain(params)
    assert reference.num_steps == 6
    expected = _weights(stage_dir / "models/pretrain")
    expected_history = json.loads((stage_dir / "models/pretrain/train_summary.json").read_text())["history"]

    other = _second_workspace(workspace, tmp_path_factory, monkeypatch)
    monkeypatch.setattr(pretrain_module, "fit", functools.partial(fit, on_step_end=functools.partial(_kill_after, 3)))
    with pytest.raises(Killed):
        pretrain(params)
    work = other / "models/checkpoints/pretrain"
    assert sorted(p.name for p in work.glob("step-*")) == ["step-00002"]
    assert not (other / "models/pretrain").exists()
    monkeypatch.setattr(pretrain_module, "fit", fit)
    resumed = pretrain(params)

    weights = _weights(other / "models/pretrain")
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    summary = json.loads((other / "models/pretrain/train_summary.json").read_text())
    assert summary["history"] == expected_history
    assert resumed.final_loss == reference.final_loss
    for name in ("loss", "lr", "grad_norm", "tokens_per_s", "epoch"):
        assert _tsv_steps(other / "models/pretrain_log", name) == [1, 2, 3, 4, 5, 6]
    assert not (other / "models/checkpoints").exists()  # a finished stage removes its work folder


def test_pretrain_is_deterministic_and_trains_projectors_and_llm(
    workspace: Any, stage_dir: Path, base_llm: dict[str, torch.Tensor]
) -> None:
    params = _pretrain_params(workspace, epochs=1.0)
    first = pretrain(params)
    weights = _weights(stage_dir / "models/pretrain")
    second = pretrain(params)
    again = _weights(stage_dir / "models/pretrain")
    assert first == second
    assert all(torch.equal(weights[k], again[k]) for k in weights)

    assert set(first.trainable) == {"visual_projector", "audio_projector", "language_model"}
    assert all(n > 0 for n in first.trainable.values())
    assert first.num_examples == {"avcap": 4, "ave": 4, "avqa": 4}  # the quarantined AVE record is left out
    changed = {k: not torch.equal(weights[f"language_model.{k}"], v) for k, v in base_llm.items()}
    assert all(changed.values())
    files = sorted(p.name for p in (stage_dir / "models/pretrain").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_summary.json"} <= set(files)
    assert json.loads((stage_dir / "models/pretrain_log/metrics.json").read_text())["step"] == first.num_steps
    assert not (stage_dir / "dvc.yaml").exists()  # dvclive must not write pipeline files


def test_pretrain_without_llm_training_changes_only_the_projectors(
    workspace: Any, stage_dir: Path, base_llm: dict[str, torch.Tensor]
) -> None:
    params = _pretrain_params(workspace, epochs=1.0)
    params = dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, train_llm=False))
    result = pretrain(params)
    assert result.trainable["language_model"] == 0
    assert result.trainable["visual_projector"] > 0 and result.trainable["audio_projector"] > 0
    weights = _weights(stage_dir / "models/pretrain")
    assert all(torch.equal(weights[f"language_model.{k}"], v) for k, v in base_llm.items())
    model, tokenizer = load_pretrained(stage_dir / "models/pretrain")
    assert model.audio_projector.query_tokens.requires_grad  # loading does not freeze anything by itself
    stats = feature_statistics(training_dataset(params, params.pretrain.tasks, tokenizer, model.config))
    torch.testing.assert_close(model.visual_projector.feature_mean, stats["video"][0])  # tiny: standardised input
    torch.testing.assert_close(model.audio_projector.feature_std, stats["audio"][1])


def test_language_phase_teaches_the_llm_then_the_projectors_align_to_it_frozen(
    workspace: Any, stage_dir: Path, base_llm: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    params = _pretrain_params(workspace, epochs=1.0)
    language = dataclasses.replace(params.pretrain.optim, epochs=2.0, batch_size=4)  # 12 + 8 direct: 10 steps
    params = dataclasses.replace(params, pretrain=dataclasses.replace(
        params.pretrain, language=language, train_llm=False, direct_answers=True))  # fmt: skip
    reference = pretrain(params)
    expected = _weights(stage_dir / "models/pretrain")
    assert reference.trainable["language_model"] == 0  # frozen while the projectors align
    assert all(not torch.equal(expected[f"language_model.{k}"], v) for k, v in base_llm.items())  # it learned
    summary = json.loads((stage_dir / "models/pretrain/train_summary.json").read_text())
    assert summary["language"]["num_steps"] == 10 and summary["direct_answers"] is True
    assert json.loads((stage_dir / "models/pretrain_log/language/metrics.json").read_text())["step"] == 10
    assert _tsv_steps(stage_dir / "models/pretrain_log/language", "loss")[-1] == 10
    assert not (stage_dir / "models/checkpoints").exists()

    other = _second_workspace(workspace, tmp_path_factory, monkeypatch)
    monkeypatch.setattr(language_module, "fit", functools.partial(fit, on_step_end=functools.partial(_kill_after, 3)))
    with pytest.raises(Killed):
        pretrain(params)
    assert sorted(p.name for p in (other / "models/checkpoints/pretrain.language").glob("step-*")) == ["step-00002"]
    monkeypatch.setattr(language_module, "fit", fit)
    pretrain(params)
    weights = _weights(other / "models/pretrain")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert _tsv_steps(other / "models/pretrain_log/language", "loss") == list(range(1, 11))
    assert not (other / "models/checkpoints").exists()


def _kill_in_phase(phase: str, step: int, *args: Any, **kwargs: Any) -> Any:
    """``fit`` that is killed after ``step`` optimizer steps of the run named ``phase`` (other runs finish)."""
    if kwargs.get("desc") == phase:
        kwargs["on_step_end"] = functools.partial(_kill_after, step)
    return fit(*args, **kwargs)


def test_grounding_phase_trains_the_llm_after_the_frozen_alignment_and_resumes_when_killed(
    workspace: Any, stage_dir: Path, base_llm: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    params = _pretrain_params(workspace, epochs=1.0)
    cfg = params.pretrain
    grounding = PretrainGroundingConfig(
        tasks=["ave", "avqa"], answers="direct", optim=dataclasses.replace(cfg.optim, epochs=2.0, batch_size=4)
    )  # 4 AVE + 4 AVQA train records (the quarantined one left out), 2 epochs of 2 batches: 4 steps
    params = dataclasses.replace(params, pretrain=dataclasses.replace(cfg, train_llm=False, grounding=grounding))
    aligned_only = pretrain(dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, grounding=None)))
    aligned = _weights(stage_dir / "models/pretrain")
    reference = pretrain(params)
    expected = _weights(stage_dir / "models/pretrain")

    assert reference.trainable["language_model"] == 0  # the alignment itself keeps the LLM frozen
    assert reference.final_loss == aligned_only.final_loss  # and is the same run with or without grounding
    summary = json.loads((stage_dir / "models/pretrain/train_summary.json").read_text())["grounding"]
    assert summary["num_steps"] == 4 and summary["num_examples"] == {"ave": 4, "avqa": 4}
    assert summary["trainable_parameters"]["language_model"] > 0
    assert all(not torch.equal(expected[f"language_model.{k}"], v) for k, v in base_llm.items())
    for name in ("visual_projector.linear_2.weight", "audio_projector.query_tokens"):
        assert not torch.equal(expected[name], aligned[name])  # the projectors go on training
    assert _tsv_steps(stage_dir / "models/pretrain_log/grounding", "loss") == [1, 2, 3, 4]

    other = _second_workspace(workspace, tmp_path_factory, monkeypatch)
    monkeypatch.setattr(pretrain_module, "fit", functools.partial(_kill_in_phase, "pretrain.grounding", 3))
    with pytest.raises(Killed):
        pretrain(params)
    assert sorted(p.name for p in (other / "models/checkpoints/pretrain.grounding").glob("step-*")) == ["step-00002"]
    monkeypatch.setattr(pretrain_module, "fit", fit)
    pretrain(params)
    weights = _weights(other / "models/pretrain")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert _tsv_steps(other / "models/pretrain_log/grounding", "loss") == [1, 2, 3, 4]
    assert not (other / "models/checkpoints").exists()


def test_pretrain_loss_falls_on_a_tiny_overfit_set(workspace: Any, stage_dir: Path) -> None:
    params = _pretrain_params(workspace, epochs=30.0, batch_size=4, lr=1e-2, warmup_ratio=0.0, log_every_steps=5,
                              save_every_steps=100)  # fmt: skip
    params = dataclasses.replace(params, pretrain=dataclasses.replace(params.pretrain, tasks=["avcap"]))
    pretrain(params)
    history = json.loads((stage_dir / "models/pretrain/train_summary.json").read_text())["history"]
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


@pytest.fixture
def pretrained(workspace: Any, stage_dir: Path) -> Params:
    pretrain(_pretrain_params(workspace, epochs=1.0))
    return workspace.params


def _finetune(params: Params, monkeypatch: pytest.MonkeyPatch, **changes: object) -> tuple[Params, dict]:
    """Run ``finetune`` with ``changes`` to its section, keeping the in-memory setup for inspection."""
    params = dataclasses.replace(params, finetune=dataclasses.replace(params.finetune, **changes))
    kept: dict = {}
    original = finetune_module.setup_finetune

    def setup(p: Params) -> Any:
        kept["setup"] = original(p)
        return kept["setup"]

    monkeypatch.setattr(finetune_module, "setup_finetune", setup)
    kept["result"] = finetune(params)
    return params, kept


def _batch(kept: dict) -> dict:
    setup = kept["setup"]
    return setup.collate_fn([setup.dataset[i] for i in range(3)])


@pytest.mark.parametrize("adapter", ["ia_lora", "lora", "lora_moe"])
def test_finetune_trains_adapter_and_projectors_only_and_reloads_to_identical_logits(
    pretrained: Params, stage_dir: Path, monkeypatch: pytest.MonkeyPatch, adapter: str
) -> None:
    coef = 0.0 if adapter == "lora" else 0.01
    lora = dataclasses.replace(pretrained.finetune.lora, router_aux_loss_coef=coef)
    params, kept = _finetune(pretrained, monkeypatch, adapter=adapter, lora=lora)
    result = kept["result"]
    assert set(result.trainable) == {"adapter", "visual_projector", "audio_projector"}
    assert result.num_examples == {"ave": 4, "avqa": 4}

    model = kept["setup"].model.eval()
    before = _weights(stage_dir / "models/pretrain")
    for name, param in model.named_parameters():
        if "language_model" in name and not param.requires_grad:
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(param, before[key]), name  # the frozen LLM did not move
    projector = model.base_model.model.visual_projector.modules_to_save["default"].linear_2.weight
    assert not torch.equal(projector, before["visual_projector.linear_2.weight"])

    history = json.loads((stage_dir / "models/finetune/train_summary.json").read_text())["history"]
    assert ("router_aux_loss" in history[-1]) == (adapter != "lora")
    reloaded, _ = load_finetuned(params.pretrain.out_dir, params.finetune.out_dir)
    batch = _batch(kept)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    saved = load_file(str(stage_dir / "models/finetune/adapter_model.safetensors"))
    assert all(("lora_" in k) or ("_projector." in k) for k in saved)


def test_loaders_name_the_missing_stage_output(stage_dir: Path) -> None:
    with pytest.raises(CrabError, match="run `crab pretrain`"):
        load_pretrained(stage_dir / "models/pretrain")
    with pytest.raises(CrabError, match="run `crab finetune`"):
        load_finetuned(stage_dir / "models/pretrain", stage_dir / "models/finetune")
