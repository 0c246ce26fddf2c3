"""Router statistics gathered during batched generation equal a direct per-sequence computation.

A seeded tiny Crab with an IA-LoRA adapter decodes five prompts of different lengths in left-padded batches
of two; the recording must equal, per adapted layer, ``softmax(R x)`` summed over the tokens of each
sequence run alone and in full (prompt + answer without its last token), computed here from the layer
inputs and the router weight, not through the capture API. The EOS is chosen among the tokens the model
generates so that some rows finish while their batch mate goes on (the tokens they are fed then must not
count).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from peft import get_peft_model

from crab.eval.generation import generate_greedy
from crab.eval.router_stats import adapter_kind, record_router_stats, router_stats_filename
from crab.lora import RoutedLoraLayer, build_adapter_config, llm_target_regex
from crab.models.collator import CrabExample, build_example
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration

VIDEO, AUDIO, IMAGE = 5, 6, 7
BOS, PAD = 1, 0
VOCAB = 96
WIDTH = 64
MAX_NEW = 8
MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _crab() -> CrabForConditionalGeneration:
    config = crab_tiny_config(VOCAB, video_token_id=VIDEO, audio_token_id=AUDIO, image_token_id=IMAGE, bos_token_id=BOS)
    torch.manual_seed(0)
    return CrabForConditionalGeneration(config).eval()


def _adapted(kind: str) -> torch.nn.Module:
    config = build_adapter_config(
        kind, r=4, alpha=8, dropout=0.0, num_heads=3 if kind != "lora" else None,
        target_modules=llm_target_regex("language_model"),
    )  # fmt: skip
    torch.manual_seed(1)
    return get_peft_model(_crab(), config).eval()


@pytest.fixture(scope="module")
def ia_lora() -> torch.nn.Module:
    return _adapted("ia_lora")


def _examples(model: torch.nn.Module) -> list[CrabExample]:
    """Five prompts of 6, 9, 5, 8 and 7 text tokens, each with 2 frames and 3 audio clips of features."""
    config = model.get_base_model().config
    gen = torch.Generator().manual_seed(0)
    examples = []
    for i, n in enumerate((2, 5, 1, 4, 3)):
        prompt = [BOS, *range(20 + i, 20 + i + n), VIDEO, 40 + i, AUDIO, 50]
        video = torch.randn(2, 4, WIDTH, generator=gen)  # (T, P, D)
        audio = torch.randn(3, 5, WIDTH, generator=gen)  # (C, N, D)
        examples.append(build_example(prompt, [], config, video_features=video, audio_features=audio))
    return examples


def _generate(model, examples, batch_size: int, eos: int) -> list[list[int]]:
    answers, _ = generate_greedy(
        model, examples, batch_size=batch_size, max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=PAD,
        show_progress=False,
    )  # fmt: skip
    return answers


def _early_eos(model, examples) -> int:
    """A token the model generates after its first step in some answers but not in all (a mid-answer EOS)."""
    free = _generate(model, examples, batch_size=1, eos=VOCAB + 1)  # an id never generated: no early stop
    counts = Counter(t for a in free for t in set(a[1:]))
    eos = next(t for t, c in counts.most_common() if 0 < c < len(free) and t not in (VIDEO, AUDIO, IMAGE, PAD))
    return eos


def _direct(model, examples, answers) -> dict[str, tuple[torch.Tensor, int]]:
    """Per routed layer: sum of softmax(R x) over every sequence's prompt + answer[:-1], and the token count."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, RoutedLoraLayer)}
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: inputs.__setitem__(name, args[0]))
             for name, m in layers.items()]  # fmt: skip
    sums = {name: (torch.zeros(3, dtype=torch.float64), 0) for name in layers}
    try:
        with torch.no_grad():
            for example, answer in zip(examples, answers, strict=True):
                assert not {VIDEO, AUDIO, IMAGE} & set(answer[:-1]), "a generated placeholder: pick another seed"
                ids = torch.tensor([example.input_ids + answer[:-1]])  # (1, L)
                model(input_ids=ids, video_features=example.video_features[None],
                      audio_features=example.audio_features[None])  # fmt: skip
                for name, layer in layers.items():
                    router = layer.adapter_modules()[2]["default"].weight.double()  # (num_heads, d_in)
                    probs = torch.softmax(inputs[name][0].double() @ router.T, dim=-1)  # (L, num_heads)
                    total, count = sums[name]
                    sums[name] = (total + probs.sum(dim=0), count + ids.shape[1])
    finally:
        for hook in hooks:
            hook.remove()
    return sums


def test_recording_during_batched_generation_equals_the_direct_computation(ia_lora) -> None:
    examples = _examples(ia_lora)
    eos = _early_eos(ia_lora, examples)
    with record_router_stats(ia_lora, eos_token_id=eos) as recording:
        answers = _generate(ia_lora, examples, batch_size=2, eos=eos)
    summary = recording.summary("ave")

    # the case is the intended one: some rows stop at EOS while others run to the budget in the same batch
    assert any(a[-1] == eos and len(a) < MAX_NEW for a in answers)
    assert any(len(a) == MAX_NEW for a in answers)
    assert answers == _generate(ia_lora, examples, batch_size=1, eos=eos)  # batching does not change answers

    direct = _direct(ia_lora, examples, answers)
    assert summary["task"] == "ave" and summary["adapter"] == "ia_lora" and summary["num_heads"] == 3
    assert len(summary["layers"]) == len(direct) == 4 * len(MODULES)  # 4 LLM layers x 7 linears
    for layer in summary["layers"]:
        total, count = direct["base_model.model." + layer["name"]]
        assert layer["tokens"] == count
        assert layer["mean"] == pytest.approx((total / count).tolist(), abs=1e-6)
        assert layer["module"] in MODULES and layer["name"].endswith(layer["module"])
        assert layer["name"].startswith("language_model.model.layers.")
    assert [layer["layer_index"] for layer in summary["layers"]] == [i for i in range(4) for _ in MODULES]
    uniform = [1 / 3] * 3
    assert any(layer["mean"] != pytest.approx(uniform, abs=1e-3) for layer in summary["layers"])  # not trivial
    head_mean = [sum(layer["mean"][h] for layer in summary["layers"]) / len(summary["layers"]) for h in range(3)]
    assert summary["head_mean"] == pytest.approx(head_mean)
    assert sum(summary["head_mean"]) == pytest.approx(1.0)
    json.dumps(summary)  # JSON-able as written by the evaluate stage


def test_the_recording_is_batch_independent(ia_lora) -> None:
    """Left padding and the tokens fed after a row's EOS are not counted, so batch 1 and batch 3 agree."""
    examples = _examples(ia_lora)
    eos = _early_eos(ia_lora, examples)
    summaries = []
    for batch_size in (1, 3):
        with record_router_stats(ia_lora, eos_token_id=eos) as recording:
            _generate(ia_lora, examples, batch_size=batch_size, eos=eos)
        summaries.append(recording.summary("avqa"))
    alone, batched = summaries
    assert [layer["tokens"] for layer in alone["layers"]] == [layer["tokens"] for layer in batched["layers"]]
    for one, other in zip(alone["layers"], batched["layers"], strict=True):
        assert one["mean"] == pytest.approx(other["mean"], abs=1e-6)
    # the hooks are gone afterwards: a forward outside the block records nothing
    assert all(m.router_observer is None for m in ia_lora.modules() if isinstance(m, RoutedLoraLayer))


def test_plain_lora_gives_the_empty_summary() -> None:
    model = _adapted("lora")
    assert adapter_kind(model) == "lora"
    examples = _examples(model)[:1]
    with record_router_stats(model, eos_token_id=2) as recording:
        _generate(model, examples, batch_size=1, eos=2)
    assert recording.summary("ave") == {"task": "ave", "adapter": "lora", "num_heads": None, "head_mean": [],
                                        "layers": []}  # fmt: skip


def test_adapter_kind_and_file_name() -> None:
    assert adapter_kind(_crab()) == "none"
    assert router_stats_filename("ref_avs") == "router_ref_avs.json"
