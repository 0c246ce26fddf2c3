"""Paper-profile shapes on the ``meta`` device: per-component parameter counts against crab-reference.

The paper model (Llama-2-7B-chat + two Q-Former projectors, crab-reference sections 1.3-1.7 and 8) is built
with ``torch.device("meta")``, so no weight is allocated or downloaded, and every count is checked against
a count derived here layer by layer from the architecture's formula (not pinned from a run). The literal
totals next to the formulas were computed by hand from the same formulas; the Llama-2-7B base count,
6,738,415,616, is the published one and pins the LLM formula. The adapters are attached with the
``finetune`` stage's own :func:`~crab.train.finetune.attach_adapter` on a ``FinetuneConfig`` read from
``params.yaml``, so the trainable set checked is the one the stage trains.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from crab.config import FinetuneConfig, load_params
from crab.lora import LLAMA_TARGET_MODULES
from crab.models.configuration_crab import crab_llama2_7b_config
from crab.models.modeling_crab import CrabForConditionalGeneration, parameter_counts, set_trainable
from crab.models.tokenizer import CRAB_ADDED_TOKENS, PLACEHOLDER_TOKENS
from crab.train.finetune import attach_adapter, trainable_components
from crab.train.finetune_avs import train_decoder_and_token_rows
from crab.train.token_rows import trained_rows

REPO = Path(__file__).resolve().parents[3]

# crab-reference section 8 and 1.3-1.7.
LLM_WIDTH, LLM_FFN, LLM_LAYERS = 4096, 11008, 32
BASE_VOCAB, NUM_ADDED_TOKENS = 32000, 17
QFORMER_WIDTH, QFORMER_FFN, QFORMER_LAYERS, NUM_QUERIES = 768, 3072, 2, 32
CLIP_WIDTH, BEATS_WIDTH = 1024, 768  # CLIP ViT-L/14 and BEATs feature widths (the Q-Formers' encoder widths)
LLAMA2_7B_PUBLISHED = 6_738_415_616  # Llama-2-7b(-chat)-hf with its 32000-token vocabulary
#: (d_in, d_out) of the seven adapted linears of a LLaMA decoder layer (crab-reference 2.2).
LLAMA_LINEARS = {
    "q_proj": (LLM_WIDTH, LLM_WIDTH),
    "k_proj": (LLM_WIDTH, LLM_WIDTH),
    "v_proj": (LLM_WIDTH, LLM_WIDTH),
    "o_proj": (LLM_WIDTH, LLM_WIDTH),
    "gate_proj": (LLM_WIDTH, LLM_FFN),
    "up_proj": (LLM_WIDTH, LLM_FFN),
    "down_proj": (LLM_FFN, LLM_WIDTH),
}


def linear(d_in: int, d_out: int, bias: bool = True) -> int:
    return d_in * d_out + (d_out if bias else 0)


def layer_norm(width: int) -> int:
    return 2 * width  # weight and bias


def llama_count(vocab: int) -> int:
    """Llama-2-7B: embeddings, 32 x (q/k/v/o + gate/up/down, no biases + 2 RMSNorms), final norm, untied LM head."""
    attention = 4 * linear(LLM_WIDTH, LLM_WIDTH, bias=False)
    mlp = 2 * linear(LLM_WIDTH, LLM_FFN, bias=False) + linear(LLM_FFN, LLM_WIDTH, bias=False)
    decoder_layer = attention + mlp + 2 * LLM_WIDTH  # RMSNorms have a weight only
    return vocab * LLM_WIDTH + LLM_LAYERS * decoder_layer + LLM_WIDTH + vocab * LLM_WIDTH


def attention_count(key_width: int) -> int:
    """BERT attention block: query from the queries, key/value from ``key_width``, output dense + LayerNorm."""
    h = QFORMER_WIDTH
    return linear(h, h) + 2 * linear(key_width, h) + linear(h, h) + layer_norm(h)


def query_ffn_count() -> int:
    """The queries' FFN (``intermediate_query`` + ``output_query`` with its LayerNorm)."""
    return linear(QFORMER_WIDTH, QFORMER_FFN) + linear(QFORMER_FFN, QFORMER_WIDTH) + layer_norm(QFORMER_WIDTH)


def qformer_layer_count(encoder_width: int) -> int:
    """One Q-Former layer: self-attention, cross-attention to the encoder tokens (every layer), query FFN."""
    return attention_count(QFORMER_WIDTH) + attention_count(encoder_width) + query_ffn_count()


def projector_count(encoder_width: int) -> int:
    """LayerNorm on the features + 32 queries + embedding LayerNorm and 2 layers + Linear-GELU-Linear MLP."""
    qformer = layer_norm(QFORMER_WIDTH) + QFORMER_LAYERS * qformer_layer_count(encoder_width)
    mlp = linear(QFORMER_WIDTH, LLM_WIDTH) + linear(LLM_WIDTH, LLM_WIDTH)
    return layer_norm(encoder_width) + NUM_QUERIES * QFORMER_WIDTH + qformer + mlp


def adapter_count(kind: str, d_in: int, d_out: int, r: int, num_heads: int) -> int:
    """Adapter parameters on one linear (all bias-free).

    IA-LoRA: shared A (r x d_in) + ``num_heads`` B heads (d_out x r) + router (num_heads x d_in).
    LoRA: A (r x d_in) + B (d_out x r). LoRA-MoE: ``num_heads`` (A_i, B_i) pairs + the same router.
    """
    if kind == "ia_lora":
        return r * d_in + num_heads * d_out * r + d_in * num_heads
    if kind == "lora":
        return r * (d_in + d_out)
    if kind == "lora_moe":
        return num_heads * r * (d_in + d_out) + d_in * num_heads
    raise ValueError(kind)


def adapter_total(kind: str, r: int, num_heads: int) -> int:
    return LLM_LAYERS * sum(adapter_count(kind, *dims, r, num_heads) for dims in LLAMA_LINEARS.values())


def paper_model() -> CrabForConditionalGeneration:
    with torch.device("meta"):
        return CrabForConditionalGeneration(crab_llama2_7b_config())


def finetune_config(adapter: str, num_heads: int) -> FinetuneConfig:
    """``params.yaml``'s ``finetune`` section (r 8, alpha 16, dropout 0.05) with the adapter and head count set."""
    cfg = load_params(REPO / "params.yaml").finetune
    return dataclasses.replace(cfg, adapter=adapter, lora=dataclasses.replace(cfg.lora, num_heads=num_heads))


def test_paper_model_lives_on_meta_with_the_extended_vocabulary() -> None:
    model = paper_model()
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    assert all(b.is_meta for b in model.buffers())
    assert len(CRAB_ADDED_TOKENS) == NUM_ADDED_TOKENS
    vocab = BASE_VOCAB + NUM_ADDED_TOKENS
    assert model.config.text_config.vocab_size == vocab == 32017
    assert tuple(model.get_input_embeddings().weight.shape) == (vocab, LLM_WIDTH)
    assert tuple(model.get_output_embeddings().weight.shape) == (vocab, LLM_WIDTH)  # untied
    # crab-reference 1.6: <image> 32000, <video> 32003, <audio> 32006, all among the 17 new rows.
    ids = (model.config.image_token_id, model.config.video_token_id, model.config.audio_token_id)
    assert ids == (32000, 32003, 32006) and len(PLACEHOLDER_TOKENS) == 3
    assert all(BASE_VOCAB <= i < vocab for i in ids)


def test_llm_count_is_llama2_7b_plus_17_rows_in_embeddings_and_lm_head() -> None:
    assert llama_count(BASE_VOCAB) == LLAMA2_7B_PUBLISHED  # the formula reproduces the published count
    expected = llama_count(BASE_VOCAB + NUM_ADDED_TOKENS)
    assert expected == LLAMA2_7B_PUBLISHED + 2 * NUM_ADDED_TOKENS * LLM_WIDTH == 6_738_554_880
    assert parameter_counts(paper_model())["language_model"] == expected


def test_projector_counts_layer_by_layer() -> None:
    model = paper_model()
    for name, encoder_width in (("visual_projector", CLIP_WIDTH), ("audio_projector", BEATS_WIDTH)):
        projector = getattr(model, name)
        layers = projector.qformer.encoder.layer
        assert len(layers) == QFORMER_LAYERS
        for layer in layers:  # cross-attention in every layer (cross_attention_frequency 1)
            assert layer.crossattention.attention.key.in_features == encoder_width
            assert sum(p.numel() for p in layer.attention.parameters()) == attention_count(QFORMER_WIDTH)
            assert sum(p.numel() for p in layer.crossattention.parameters()) == attention_count(encoder_width)
            ffn = [*layer.intermediate_query.parameters(), *layer.output_query.parameters()]
            assert sum(p.numel() for p in ffn) == query_ffn_count()
            assert sum(p.numel() for p in layer.parameters()) == qformer_layer_count(encoder_width)
        assert tuple(projector.query_tokens.shape) == (1, NUM_QUERIES, QFORMER_WIDTH)
        assert (projector.linear_1.in_features, projector.linear_1.out_features) == (QFORMER_WIDTH, LLM_WIDTH)
        assert (projector.linear_2.in_features, projector.linear_2.out_features) == (LLM_WIDTH, LLM_WIDTH)
    # Hand arithmetic: MLP 19,931,136; Q-Former layer 9,844,992 (CLIP) / 9,451,776 (BEATs).
    assert linear(QFORMER_WIDTH, LLM_WIDTH) + linear(LLM_WIDTH, LLM_WIDTH) == 19_931_136
    assert (qformer_layer_count(CLIP_WIDTH), qformer_layer_count(BEATS_WIDTH)) == (9_844_992, 9_451_776)
    expected = {"visual_projector": projector_count(CLIP_WIDTH), "audio_projector": projector_count(BEATS_WIDTH)}
    assert expected == {"visual_projector": 39_649_280, "audio_projector": 38_862_336}
    counts = parameter_counts(model)
    assert {k: counts[k] for k in expected} == expected


def test_paper_pretrain_trains_the_projectors_only() -> None:
    # pretrain.train_llm: false (paper) -> setup_pretrain's set_trainable(llm="frozen", projectors=True).
    # Crab also updated the LM head and input embeddings here by accident (crab-reference 3.2); we do not.
    model = paper_model()
    counts = set_trainable(model, llm="frozen", projectors=True)
    projectors = {"visual_projector": projector_count(CLIP_WIDTH), "audio_projector": projector_count(BEATS_WIDTH)}
    assert counts == {**projectors, "language_model": 0}
    assert trainable_components(model) == projectors


def test_reference_per_linear_ia_lora_counts() -> None:
    # crab-reference 2.2, r 8, 3 heads: q/k/v/o 143,360 each; gate/up 309,248 each; down 219,392.
    per_linear = {name: adapter_count("ia_lora", *dims, 8, 3) for name, dims in LLAMA_LINEARS.items()}
    assert per_linear == {**dict.fromkeys(("q_proj", "k_proj", "v_proj", "o_proj"), 143_360),
                          "gate_proj": 309_248, "up_proj": 309_248, "down_proj": 219_392}  # fmt: skip


@pytest.mark.parametrize(
    ("adapter", "num_heads", "total"),
    [
        ("ia_lora", 3, 45_162_496),  # crab-reference 2.2: "about 45.2 M"
        ("ia_lora", 1, 21_127_168),  # crab-reference 2.2: "about 21.1 M"
        ("lora", 3, 19_988_480),  # plain LoRA ignores num_heads
        ("lora_moe", 3, 63_381_504),
    ],
)
def test_finetune_adapter_counts_and_trainable_set(adapter: str, num_heads: int, total: int) -> None:
    cfg = finetune_config(adapter, num_heads)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 16, 0.05)  # crab-reference 2.2
    heads = num_heads if adapter != "lora" else 1
    assert adapter_total(adapter, cfg.lora.r, heads) == total
    with torch.device("meta"):  # the adapter weights are created on meta too: nothing allocated
        model = attach_adapter(CrabForConditionalGeneration(crab_llama2_7b_config()), cfg)
    assert all(p.is_meta for p in model.parameters())

    adapted = {name: module for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}
    expected_names = {
        f"base_model.model.language_model.model.layers.{i}.{block}.{leaf}"
        for i in range(LLM_LAYERS)
        for leaf, block in zip(LLAMA_TARGET_MODULES, ["self_attn"] * 4 + ["mlp"] * 3, strict=True)
    }
    assert set(adapted) == expected_names  # the LLM's 224 linears only, no Q-Former linear
    for name, module in adapted.items():
        own = [p for n, p in module.named_parameters() if not n.startswith("base_layer")]
        leaf = name.rsplit(".", 1)[1]
        assert sum(p.numel() for p in own) == adapter_count(adapter, *LLAMA_LINEARS[leaf], cfg.lora.r, heads)
        assert all(p.requires_grad for p in own)

    projectors = {"visual_projector": projector_count(CLIP_WIDTH), "audio_projector": projector_count(BEATS_WIDTH)}
    assert trainable_components(model) == {"adapter": total, **projectors}  # the LLM stays frozen


def test_paper_finetune_avs_trains_the_decoder_and_the_17_added_token_rows_only() -> None:
    # Crab's F2 (crab-reference 3.6), fixed: the mask decoder and the added tokens' embedding / LM-head rows train;
    # the LLM, the IA-LoRA adapter F1 trained and the projectors stay frozen. Built on meta like the F1 checks.
    with torch.device("meta"):
        crab = CrabForConditionalGeneration(crab_llama2_7b_config(use_mask_decoder=True))
        model = attach_adapter(crab, finetune_config("ia_lora", 3))
    rows = list(range(BASE_VOCAB, BASE_VOCAB + NUM_ADDED_TOKENS))  # Crab's 17 tokens follow Llama-2's 32000
    assert len(CRAB_ADDED_TOKENS) == NUM_ADDED_TOKENS

    counts = train_decoder_and_token_rows(model, rows)
    decoder = sum(p.numel() for p in crab.mask_decoder.parameters())
    assert decoder > 0
    assert counts == {"mask_decoder": decoder, "embed_tokens": 17 * LLM_WIDTH, "lm_head": 17 * LLM_WIDTH}
    embed, head = crab.get_input_embeddings().weight, crab.get_output_embeddings().weight
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    rows_params = {name for name, param in model.named_parameters() if param is embed or param is head}
    assert len(rows_params) == 2 and rows_params <= trainable
    assert {name for name in trainable - rows_params if "mask_decoder." not in name} == set()
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable - rows_params) == decoder
    assert trained_rows(embed).tolist() == rows == trained_rows(head).tolist()  # gradients masked to these rows
