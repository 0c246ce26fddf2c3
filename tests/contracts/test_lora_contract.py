"""Contract of the LLM adapters with peft, in the style of peft's ``PeftCommonTester``.

Runs on a tiny ``LlamaForCausalLM`` (2 layers, hidden 64, vocab 128) for every value of
``finetune.adapter`` (``ia_lora``, ``lora``, ``lora_moe``) where a check applies: inject -> trainable set,
train a few steps, save -> load in a FRESH process -> identical logits, disabling gives the base model,
target matching can be confined to the LLM inside a multimodal wrapper; for the routed adapters also
router weights that sum to 1 and a refused merge. These are the guarantees Crab's vendored peft fork
never checked (reference section 2.2, 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from peft import PeftConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from crab.lora import (
    ADAPTER_KINDS,
    ROUTED_ADAPTER_KINDS,
    RoutedLoraLayer,
    build_adapter_config,
    capture_router_weights,
    llm_target_regex,
)

TINY_LLAMA = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

SEED = 0
NUM_ADAPTED = 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
# Trainable parameters with the builder defaults (r=8, 3 heads), per layer: q/k/v/o (64->64) x 4,
# gate/up (64->128) x 2, down (128->64) x 1.
NUM_TRAINABLE = {
    # A r*d_in + B d_out*3r + router 3*d_in: 2,240; 3,776; 2,944
    "ia_lora": 2 * (4 * 2_240 + 2 * 3_776 + 2_944),
    # A r*d_in + B d_out*r: 1,024; 1,536; 1,536
    "lora": 2 * (4 * 1_024 + 2 * 1_536 + 1_536),
    # 3 x (A r*d_in + B d_out*r) + router 3*d_in: 3,264; 4,800; 4,992
    "lora_moe": 2 * (4 * 3_264 + 2 * 4_800 + 4_992),
}
ADAPTER_PARTS = {
    "ia_lora": {"ia_lora_A", "ia_lora_B", "ia_lora_router"},
    "lora": {"lora_A", "lora_B"},
    "lora_moe": {"lora_moe_A", "lora_moe_B", "lora_moe_router"},
}
CONFIG_CLASSES = {"ia_lora": "IALoraConfig", "lora": "LoraConfig", "lora_moe": "LoraMoeConfig"}

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import crab.lora  # registers IA_LORA and LORA_MOE with peft
    from peft import PeftConfig, PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    adapter_dir, ids_path, out_path, seed, threads, tiny = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    torch.manual_seed(int(seed))
    base = LlamaForCausalLM(LlamaConfig(**json.loads(tiny)))
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.load(ids_path)).logits
    torch.save({"logits": logits, "config_cls": type(PeftConfig.from_pretrained(adapter_dir)).__name__}, out_path)
    """
)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(SEED)
    return LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).eval()


def input_ids(batch: int = 2, length: int = 9) -> torch.Tensor:
    return torch.randint(0, TINY_LLAMA["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(1))


class AudioVisualWrapper(nn.Module):
    """Crab-like layout: the LLM plus a projector that also owns a ``q_proj`` linear."""

    def __init__(self) -> None:
        super().__init__()
        self.language_model = tiny_llama()
        self.audio_projector = nn.Module()
        self.audio_projector.q_proj = nn.Linear(64, 64)


def adapter_config(kind: str) -> PeftConfig:
    """The builder's config for ``kind`` with its defaults (r=8, alpha=16, dropout 0.05, 3 heads)."""
    return build_adapter_config(kind, target_modules=llm_target_regex("model"))


@pytest.fixture(scope="module", params=ADAPTER_KINDS)
def trained(request, tmp_path_factory):
    """A Llama with the adapter ``request.param`` trained 3 AdamW steps (every B non-zero), saved to disk."""
    model = get_peft_model(tiny_llama(), adapter_config(request.param))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = input_ids()
    model.train()
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    save_dir = tmp_path_factory.mktemp(f"{request.param}_adapter")
    model.save_pretrained(save_dir)
    return request.param, model, save_dir


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_inject_gives_exactly_the_adapter_trainable_set(kind):
    model = get_peft_model(tiny_llama(), adapter_config(kind))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(model.base_model.targeted_module_names) == NUM_ADAPTED
    assert len(trainable) == len(ADAPTER_PARTS[kind]) * NUM_ADAPTED
    assert {n.split(".")[-3] for n in trainable} == ADAPTER_PARTS[kind]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == NUM_TRAINABLE[kind]


def test_training_makes_every_head_non_zero(trained):
    _, model, _ = trained
    heads = [p for n, p in model.named_parameters() if n.split(".")[-3].endswith("_B")]
    assert len(heads) == NUM_ADAPTED
    assert all(head.abs().min() > 0 for head in heads)


def test_save_then_load_in_a_fresh_process_gives_identical_logits(trained, tmp_path):
    kind, model, save_dir = trained
    ids = input_ids()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    peft_type = json.loads((save_dir / "adapter_config.json").read_text())["peft_type"]
    assert peft_type == kind.upper()
    torch.save(ids, tmp_path / "ids.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [str(save_dir), str(tmp_path / "ids.pt"), str(tmp_path / "out.pt"), str(SEED)]
    args += [str(torch.get_num_threads()), json.dumps(TINY_LLAMA)]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["config_cls"] == CONFIG_CLASSES[kind]
    assert (loaded["logits"] - expected).abs().max().item() == 0.0


def test_disable_adapter_gives_base_logits(trained):
    _, model, _ = trained
    ids = input_ids()
    with torch.no_grad():
        base = tiny_llama()(input_ids=ids).logits
        adapted = model(input_ids=ids).logits
        with model.disable_adapter():
            disabled = model(input_ids=ids).logits
    assert (adapted - base).abs().max() > 1e-3
    assert torch.equal(disabled, base)


@pytest.mark.parametrize("trained", ROUTED_ADAPTER_KINDS, indirect=True)
def test_router_weights_sum_to_one_per_layer(trained):
    _, model, _ = trained
    ids = input_ids()
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0
    with torch.no_grad(), capture_router_weights(model) as capture:
        capture.set_token_mask(mask)
        model(input_ids=ids, attention_mask=mask)
    assert len(capture.stats) == NUM_ADAPTED
    for stats in capture.stats.values():
        assert stats.token_count.item() == ids.numel() - 3
        torch.testing.assert_close(stats.mean_probs().sum().item(), 1.0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("trained", ROUTED_ADAPTER_KINDS, indirect=True)
def test_merge_and_unload_is_refused_but_unload_returns_the_base(trained):
    _, model, save_dir = trained
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        model.merge_and_unload()
    ids = input_ids()
    with torch.no_grad():
        base = tiny_llama()(input_ids=ids).logits
        fresh = get_peft_model(tiny_llama(), PeftConfig.from_pretrained(save_dir))
        unloaded = fresh.unload()
        assert not any(isinstance(m, RoutedLoraLayer) for m in unloaded.modules())
        assert torch.equal(unloaded(input_ids=ids).logits, base)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_regex_targets_only_the_llm_inside_a_wrapper(kind):
    config = build_adapter_config(kind, r=4, alpha=8, dropout=0.0, target_modules=llm_target_regex("language_model"))
    model = get_peft_model(AudioVisualWrapper(), config)
    adapted = model.base_model.targeted_module_names
    assert len(adapted) == NUM_ADAPTED
    assert all(name.startswith("language_model.model.layers.") for name in adapted)
    assert type(model.base_model.model.audio_projector.q_proj) is nn.Linear
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.split(".")[-3] in ADAPTER_PARTS[kind] and ".language_model." in n for n in trainable)


def test_suffix_targets_would_also_hit_the_projector():
    # Why the regex matters: peft's suffix matching adapts every q_proj, like Crab would have.
    model = get_peft_model(AudioVisualWrapper(), build_adapter_config("ia_lora", target_modules=["q_proj"]))
    assert "audio_projector.q_proj" in model.base_model.targeted_module_names


def test_plain_lora_saves_and_loads_through_the_same_builder(tmp_path: Path):
    config = build_adapter_config("lora", r=4, alpha=8, dropout=0.0, target_modules=llm_target_regex("model"))
    model = get_peft_model(tiny_llama(), config)
    assert all(".lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    model.save_pretrained(tmp_path)
    assert type(PeftConfig.from_pretrained(tmp_path)).__name__ == "LoraConfig"
