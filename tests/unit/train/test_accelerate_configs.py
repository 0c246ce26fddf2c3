"""The ``accelerate launch`` configs of ``configs/accelerate/`` as accelerate itself reads them.

Each YAML is loaded with accelerate's config classes, then turned into the launch environment by
accelerate's own launcher code, from which the FSDP and DeepSpeed plugins are built the way a launched
process builds them. That checks what the issue names (one node, ``--num_processes`` required, bf16, FSDP
wrapping the model's ``_no_split_modules``, ZeRO-2 with accumulation, clipping and micro-batch from params)
without GPUs or DeepSpeed installed; the launcher functions are accelerate 1.15's (pinned in pyproject.toml).
And the training loop refuses an accumulation set outside params, which its step plan would not count.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from crab.config import OptimConfig
from crab.errors import CrabError
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.train.loop import configure_deepspeed, fit

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "accelerate"
KINDS = {
    "ddp.yaml": DistributedType.MULTI_GPU,
    "fsdp.yaml": DistributedType.FSDP,
    "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
}
OPTIM = OptimConfig(
    epochs=1.0, batch_size=4, grad_accum=8, lr=1e-4, weight_decay=0.0, warmup_ratio=0.03, max_grad_norm=0.5,
    mixed_precision="bf16", log_every_steps=1, save_every_steps=100,
)  # fmt: skip


def _launch_env(name: str, *flags: str) -> dict[str, str]:
    """The environment ``accelerate launch --config_file <name> <flags> -m crab.cli pretrain`` gives its workers."""
    argv = ["--config_file", str(CONFIGS / name), *flags, "--main_process_port", "0", "-m", "crab.cli", "pretrain"]
    args, defaults, mixed_precision_from_config = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed:  # as accelerate.commands.launch.launch_command does before the DeepSpeed launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mixed_precision_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    assert args.module and args.training_script == "crab.cli"
    return env


def _launched(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make this process's environment the launched worker's (accelerate's plugins read it)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_config_is_one_node_bf16_and_needs_num_processes(name: str) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == KINDS[name]
    assert (config.num_machines, config.mixed_precision, config.use_cpu) == (1, "bf16", False)
    assert config.num_processes == -1  # a placeholder: launching without --num_processes is refused
    with pytest.raises(ValueError, match="--num_processes"):
        _launch_env(name)


def test_ddp_config_launches_one_torchrun_worker_per_process() -> None:
    env = _launch_env("ddp.yaml", "--num_processes", "8")
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_USE_FSDP" not in env and "ACCELERATE_USE_DEEPSPEED" not in env


def test_fsdp_config_wraps_the_models_no_split_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    _launched(monkeypatch, _launch_env("fsdp.yaml", "--num_processes", "8"))
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # parameters sharded outside forward/backward (ZeRO-3-like)
    assert plugin.activation_checkpointing  # gradient checkpointing of the wrapped layers
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")
    assert not plugin.cpu_ram_efficient_loading  # the stages build the model on every rank
    assert sorted(plugin.transformer_cls_names_to_wrap) == sorted(CrabForConditionalGeneration._no_split_modules)
    model = CrabForConditionalGeneration(crab_tiny_config(64, video_token_id=60, audio_token_id=61, image_token_id=62))
    classes = {type(m).__name__ for m in model.modules()}
    assert set(plugin.transformer_cls_names_to_wrap) <= classes  # accelerate fails on a class it cannot find


def test_deepspeed_config_is_zero2_with_the_stage_settings_from_params(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _launch_env("deepspeed_zero2.yaml", "--num_processes", "8")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env  # it would override params' grad_accum
    _launched(monkeypatch, env)
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 2 and plugin.deepspeed_config["zero_optimization"]["stage"] == 2
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"  # filled from the Accelerator
    configure_deepspeed(plugin, OPTIM)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == OPTIM.batch_size
    assert plugin.deepspeed_config["gradient_clipping"] == OPTIM.max_grad_norm


def test_a_deepspeed_value_other_than_params_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _launched(monkeypatch, _launch_env("deepspeed_zero2.yaml", "--num_processes", "8"))
    plugin = DeepSpeedPlugin()
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 16  # as a DeepSpeed JSON file could set it
    with pytest.raises(CrabError, match="train_micro_batch_size_per_gpu"):
        configure_deepspeed(plugin, OPTIM)


class _Scale(torch.nn.Module):
    """A one-parameter model with the Crab forward contract (batch dict in, ``.loss`` out)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=(self.weight * x).square().mean())


def test_accumulation_set_outside_params_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # What `accelerate launch --gradient_accumulation_steps 3` (or a DeepSpeed config) sets for the workers:
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3")
    data = [torch.tensor([float(i)]) for i in range(8)]
    optim = dataclasses.replace(OPTIM, mixed_precision="no", grad_accum=2)
    with pytest.raises(CrabError, match="accumulates 3 micro-batches, params 2"):
        fit(_Scale(), data, lambda xs: {"x": torch.stack(xs), "attention_mask": torch.ones(len(xs), 1)}, optim,
            seed=0, work_dir=tmp_path / "work", fingerprint={})  # fmt: skip
