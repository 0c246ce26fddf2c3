"""The single-task baseline (``finetune.adapter: single_task``): one LoRA adapter per task, trained on that
task alone, saved per task, loaded as named adapters of one model, resumable per task."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import crab.train.single_task as single_task_module
from crab.config import Params
from crab.errors import CrabError
from crab.train.finetune import adapter_folders, finetune, load_finetuned, setup_finetune, use_task_adapter
from crab.train.loop import fit
from crab.train.pretrain import load_pretrained, pretrain

TASKS = ["ave", "avqa"]


class Killed(RuntimeError):
    """Stands for the process being killed."""


def _single_task_params(params: Params) -> Params:
    return dataclasses.replace(
        params, finetune=dataclasses.replace(params.finetune, adapter="single_task", tasks=TASKS)
    )


@pytest.fixture
def pretrained(workspace: Any, stage_dir: Path) -> Params:
    cfg = workspace.params.pretrain
    params = dataclasses.replace(
        workspace.params, pretrain=dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, epochs=1.0))
    )
    pretrain(params)
    return _single_task_params(params)


def _adapter_weights(finetune_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {task: load_file(str(finetune_dir / task / "adapter_model.safetensors")) for task in TASKS}


def _batch(params: Params, task: str) -> dict:
    setup = setup_finetune(params, tasks=[task])
    return setup.collate_fn([setup.dataset[i] for i in range(2)])


def test_single_task_trains_one_lora_per_task_on_its_own_data(pretrained: Params, stage_dir: Path) -> None:
    result = finetune(pretrained)
    out = stage_dir / "models/finetune"
    assert result.num_examples == {"ave": 4, "avqa": 4}
    assert set(result.trainable) == {"adapter", "visual_projector", "audio_projector"}
    assert adapter_folders(out) == {task: out / task for task in TASKS}
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["adapter"] == "single_task" and summary["tasks"] == TASKS
    for task in TASKS:
        task_summary = json.loads((out / task / "train_summary.json").read_text())
        assert task_summary["num_examples"] == {task: 4}  # trained on its own task only
        assert json.loads((out / task / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert result.num_steps == sum(s["plan"]["num_steps"] for s in summary["per_task"].values())
    log_metrics = json.loads((stage_dir / "models/finetune_log/metrics.json").read_text())
    assert set(log_metrics) == set(TASKS)
    for task in TASKS:
        assert (stage_dir / "models/finetune_log/plots/metrics" / task / "train/loss.tsv").is_file()
    assert not (stage_dir / "models/checkpoints").exists()

    model, _ = load_finetuned(pretrained.pretrain.out_dir, out)
    assert set(model.peft_config) == set(TASKS)
    batch = _batch(pretrained, "ave")
    logits = {}
    for task in TASKS:
        use_task_adapter(model, task)
        with torch.no_grad():
            logits[task] = model(**batch).logits
        alone = PeftModel.from_pretrained(load_pretrained(pretrained.pretrain.out_dir)[0], out / task).eval()
        with torch.no_grad():
            assert torch.allclose(alone(**batch).logits, logits[task], atol=1e-6), task  # adapter + projectors
    assert not torch.allclose(logits["ave"], logits["avqa"])
    with pytest.raises(CrabError, match="not for task 'avcap'"):
        use_task_adapter(model, "avcap")


def test_single_task_resumes_a_run_killed_in_the_second_task(
    pretrained: Params, stage_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    finetune(pretrained)
    expected = _adapter_weights(stage_dir / "models/finetune")

    other = tmp_path_factory.mktemp("killed_single_task")
    (other / "data").mkdir()
    (other / "data" / "avuie").symlink_to(stage_dir / "data" / "avuie")
    (other / "reports").symlink_to(stage_dir / "reports")
    (other / "models").mkdir()
    (other / "models" / "pretrain").symlink_to(stage_dir / "models" / "pretrain")
    monkeypatch.chdir(other)
    trained: list[str] = []

    def killing_fit(*args: Any, desc: str, **kwargs: Any) -> Any:
        trained.append(desc)
        if desc == "finetune avqa":

            def kill(step: int) -> None:
                raise Killed(f"killed after step {step}")

            kwargs["on_step_end"] = kill
        return fit(*args, desc=desc, **kwargs)

    monkeypatch.setattr(single_task_module, "fit", killing_fit)
    with pytest.raises(Killed):
        finetune(pretrained)
    assert (other / "models/checkpoints/finetune/done/ave/train_summary.json").is_file()
    assert not (other / "models/finetune").exists()
    monkeypatch.setattr(single_task_module, "fit", fit)
    finetune(pretrained)
    resumed = _adapter_weights(other / "models/finetune")
    assert trained == ["finetune ave", "finetune avqa"]  # the finished task was not trained again
    for task in TASKS:
        assert resumed[task].keys() == expected[task].keys()
        assert all(torch.equal(resumed[task][k], expected[task][k]) for k in expected[task]), task


def test_adapter_folders_names_the_missing_adapter(stage_dir: Path) -> None:
    out = stage_dir / "models/finetune"
    out.mkdir(parents=True)
    (out / "train_summary.json").write_text(json.dumps({"adapter": "single_task", "tasks": TASKS}))
    (out / "ave").mkdir()
    (out / "ave" / "adapter_config.json").write_text("{}")
    with pytest.raises(CrabError, match=r"single-task adapters missing: .*avqa"):
        adapter_folders(out)
