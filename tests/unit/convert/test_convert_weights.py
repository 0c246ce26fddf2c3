"""``crab convert-crab-weights`` on synthetic Crab checkpoints with the reference's key names and shapes.

The checkpoints are built here from the authors' code, independently of :mod:`crab.convert.keymap`: the
``named_parameters()`` of ``VLProjector`` / ``ALProjector`` (``models/multimodal_encoder.py``; the Q-Former
is LAVIS' ``BertLMHeadModel``, whose MLM decoder weight is tied to the word embeddings and so appears
once) and of the PEFT-0.3 fork's I-LoRA ``Linear`` (``peft_hyper/tuners/lora.py``), behind the
``base_model.model.`` prefix of ``UnifiedTrainer._save_checkpoint`` (F1/F2) or the ``model.`` prefix of the
pre-training ``non_lora_trainables.bin``. Sizes are scaled down (Q-Former 64 wide, 2 layers, 4 heads, 3
queries; LLM 32 wide, 2 layers), the structure is the paper's. The converted folders are loaded with
``load_finetuned`` / ``load_pretrained`` and checked numerically against a re-implementation of Crab's
projector forward and of the per-head I-LoRA formula (crab-reference 1.3, 2.1) on the same tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from crab.cli import main
from crab.convert import ConversionError, convert_crab_weights, map_checkpoints, target_shapes
from crab.convert.writer import _crab_config, _crab_tokenizer, _llm_config
from crab.models.configuration_crab import CrabConfig, crab_tiny_config
from crab.train.finetune import load_finetuned
from crab.train.pretrain import load_pretrained

QF_WIDTH, QF_FFN, QF_LAYERS, QF_HEADS, QUERIES = 64, 256, 2, 4, 3
VISION_WIDTH, AUDIO_WIDTH = 24, 20
LLM_WIDTH, LLM_FFN, LLM_LAYERS, LLM_HEADS = 32, 64, 2, 2
RANK, HEADS, ALPHA = 4, 3, 16.0
BERT_VOCAB, BERT_POSITIONS = 30, 16
WORDS = ["hello", "world", "dog", "bark", "music", "event", "answer", "the", "a", "is"]
PROJ = {"visual": ("vl_projector", VISION_WIDTH), "audio": ("al_projector", AUDIO_WIDTH)}
LINEARS = {
    "self_attn.q_proj": (LLM_WIDTH, LLM_WIDTH),
    "self_attn.k_proj": (LLM_WIDTH, LLM_WIDTH),
    "self_attn.v_proj": (LLM_WIDTH, LLM_WIDTH),
    "self_attn.o_proj": (LLM_WIDTH, LLM_WIDTH),
    "mlp.gate_proj": (LLM_FFN, LLM_WIDTH),
    "mlp.up_proj": (LLM_FFN, LLM_WIDTH),
    "mlp.down_proj": (LLM_WIDTH, LLM_FFN),
}  # fmt: skip  (d_out, d_in)
PEFT = "base_model.model."


def _rand(g: torch.Generator, *shape: int, scale: float = 0.2, base: float = 0.0) -> torch.Tensor:
    return base + scale * torch.randn(*shape, generator=g)


def crab_projector(stem: str, prefix: str, seed: int) -> dict[str, torch.Tensor]:
    """``{prefix}{vl|al}_projector.*`` parameters as Crab names and shapes them (tiny sizes)."""
    g = torch.Generator().manual_seed(seed)
    crab_name, width = PROJ[stem]
    p = f"{prefix}{crab_name}.{stem}_"
    sd = {f"{p}ln.weight": _rand(g, width, base=1.0), f"{p}ln.bias": _rand(g, width),
          f"{p}query_tokens": _rand(g, 1, QUERIES, QF_WIDTH, scale=1.0)}  # fmt: skip
    q = f"{p}Qformer."

    def linear(name: str, d_out: int, d_in: int) -> None:
        sd[f"{name}.weight"] = _rand(g, d_out, d_in, scale=d_in**-0.5)
        sd[f"{name}.bias"] = _rand(g, d_out, scale=0.1)

    def norm(name: str, width: int = QF_WIDTH) -> None:
        sd[f"{name}.weight"], sd[f"{name}.bias"] = _rand(g, width, base=1.0, scale=0.1), _rand(g, width, scale=0.1)

    sd[f"{q}bert.embeddings.word_embeddings.weight"] = _rand(g, BERT_VOCAB, QF_WIDTH)
    sd[f"{q}bert.embeddings.position_embeddings.weight"] = _rand(g, BERT_POSITIONS, QF_WIDTH)
    norm(f"{q}bert.embeddings.LayerNorm")
    for i in range(QF_LAYERS):
        layer = f"{q}bert.encoder.layer.{i}."
        for block, kv_width in (("attention", QF_WIDTH), ("crossattention", width)):
            linear(f"{layer}{block}.self.query", QF_WIDTH, QF_WIDTH)
            linear(f"{layer}{block}.self.key", QF_WIDTH, kv_width)
            linear(f"{layer}{block}.self.value", QF_WIDTH, kv_width)
            linear(f"{layer}{block}.output.dense", QF_WIDTH, QF_WIDTH)
            norm(f"{layer}{block}.output.LayerNorm")
        for ffn in ("", "_query"):
            linear(f"{layer}intermediate{ffn}.dense", QF_FFN, QF_WIDTH)
            linear(f"{layer}output{ffn}.dense", QF_WIDTH, QF_FFN)
            norm(f"{layer}output{ffn}.LayerNorm")
    sd[f"{q}cls.predictions.bias"] = _rand(g, BERT_VOCAB)
    linear(f"{q}cls.predictions.transform.dense", QF_WIDTH, QF_WIDTH)
    norm(f"{q}cls.predictions.transform.LayerNorm")
    linear(f"{p}proj.0", LLM_WIDTH, QF_WIDTH)
    linear(f"{p}proj.2", LLM_WIDTH, LLM_WIDTH)
    return sd


def crab_lora(seed: int) -> dict[str, torch.Tensor]:
    """The I-LoRA parameters of every adapted linear, as Crab's fork names them (A, B0..B2, route)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(LLM_LAYERS):
        for sub, (d_out, d_in) in LINEARS.items():
            name = f"{PEFT}model.layers.{i}.{sub}"
            sd[f"{name}.lora_route.weight"] = _rand(g, HEADS, d_in, scale=1.0)
            sd[f"{name}.lora_A.weight"] = _rand(g, RANK, d_in, scale=d_in**-0.5)
            for h in range(HEADS):
                sd[f"{name}.lora_B{h}.weight"] = _rand(g, d_out, RANK, scale=0.3)
    return sd


def crab_layer_norm(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps)


def crab_linear(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def crab_attention(h: torch.Tensor, kv: torch.Tensor, sd: dict[str, torch.Tensor], block: str) -> torch.Tensor:
    """LAVIS BertAttention: per-head softmax(q k^T / sqrt(d)) v, output dense, residual, LayerNorm (eps 1e-12)."""

    def heads(t: torch.Tensor) -> torch.Tensor:  # (S, L, H) -> (S, heads, L, H / heads)
        return t.unflatten(-1, (QF_HEADS, -1)).transpose(1, 2)

    q, k, v = (heads(crab_linear(t, sd, f"{block}.self.{n}")) for n, t in (("query", h), ("key", kv), ("value", kv)))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    context = (probs @ v).transpose(1, 2).flatten(-2)  # (S, Q, H)
    out = crab_linear(context, sd, f"{block}.output.dense")
    return crab_layer_norm(out + h, sd, f"{block}.output.LayerNorm", 1e-12)


def crab_projector_forward(sd: dict[str, torch.Tensor], stem: str, prefix: str, features: torch.Tensor) -> torch.Tensor:
    """Crab's ``VLProjector`` / ``ALProjector`` forward (query_embeds only, eval mode) on ``sd``'s tensors."""
    p = f"{prefix}{PROJ[stem][0]}.{stem}_"
    q = f"{p}Qformer.bert."
    x = crab_layer_norm(features, sd, f"{p}ln", 1e-5)  # (S, N, D)
    h = crab_layer_norm(sd[f"{p}query_tokens"].expand(x.shape[0], -1, -1), sd, f"{q}embeddings.LayerNorm", 1e-12)
    for i in range(QF_LAYERS):
        layer = f"{q}encoder.layer.{i}."
        h = crab_attention(h, h, sd, f"{layer}attention")
        h = crab_attention(h, x, sd, f"{layer}crossattention")
        inner = F.gelu(crab_linear(h, sd, f"{layer}intermediate_query.dense"))
        h = crab_layer_norm(crab_linear(inner, sd, f"{layer}output_query.dense") + h, sd,
                            f"{layer}output_query.LayerNorm", 1e-12)  # fmt: skip
    return crab_linear(F.gelu(crab_linear(h, sd, f"{p}proj.0")), sd, f"{p}proj.2")  # (S, Q, H_llm)


def template() -> CrabConfig:
    return crab_tiny_config(10, video_token_id=3, audio_token_id=4, image_token_id=5, vision_hidden_size=VISION_WIDTH,
                            audio_hidden_size=AUDIO_WIDTH, num_queries=QUERIES)  # fmt: skip


def write_llm(folder: Path) -> int:
    """A tiny Llama folder with a plain tokenizer (no Crab tokens, like Llama-2's); returns its vocab size."""
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=LLM_WIDTH, intermediate_size=LLM_FFN,
                         num_hidden_layers=LLM_LAYERS, num_attention_heads=LLM_HEADS, num_key_value_heads=LLM_HEADS,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return len(vocab)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Checkpoint folder (F1, P1, P2, AVS files), tiny LLM folder, and the reference dicts."""
    root = tmp_path_factory.mktemp("crab_ckpt")
    finetune = {**crab_projector("visual", f"{PEFT}model.", 1), **crab_projector("audio", f"{PEFT}model.", 2),
                **crab_lora(3)}  # fmt: skip
    visual_pre = {**crab_projector("visual", "model.", 4), "model.embed_tokens.weight": torch.zeros(30, LLM_WIDTH)}
    audio_pre = crab_projector("audio", "model.", 5)
    base_vocab = write_llm(root / "llm")
    vocab = base_vocab + 17
    avs = {f"{PEFT}model.seg_module.text_hidden_fcs.0.0.weight": torch.randn(LLM_WIDTH, LLM_WIDTH),
           f"{PEFT}model.seg_module.no_mask_embed.weight": torch.randn(1, 8),
           f"{PEFT}model.embed_tokens.weight": torch.randn(vocab, LLM_WIDTH),
           f"{PEFT}lm_head.weight": torch.randn(vocab, LLM_WIDTH)}  # fmt: skip
    files = {"finetune_weights.bin": finetune, "visual_pretrain.bin": visual_pre, "audio_pretrain.bin": audio_pre,
             "avs_finetune_weights.bin": avs}  # fmt: skip
    (root / "ckpt").mkdir()
    for name, sd in files.items():
        torch.save(sd, root / "ckpt" / name)
    return {"root": root, "files": files, "base_vocab": base_vocab}


@pytest.fixture(scope="module")
def converted(ckpt: dict[str, object]):
    root = ckpt["root"]
    result = convert_crab_weights(root / "ckpt", root / "llm", root / "out", template=template())
    model, tokenizer = load_finetuned(result.pretrain_dir, result.finetune_dir)
    return result, model, tokenizer


def test_projectors_compute_crabs_projector(ckpt: dict[str, object], converted) -> None:
    result, model, _ = converted
    files = ckpt["files"]
    crab = model.base_model.model
    pretrained, _ = load_pretrained(result.pretrain_dir)
    g = torch.Generator().manual_seed(7)
    for stem, ours, width, pre_file in (("visual", "visual_projector", VISION_WIDTH, "visual_pretrain.bin"),
                                        ("audio", "audio_projector", AUDIO_WIDTH, "audio_pretrain.bin")):  # fmt: skip
        features = torch.randn(4, 6, width, generator=g)  # (S, N, D): 4 segments of 6 tokens
        with torch.no_grad():
            fine = getattr(crab, ours)(features)  # the adapter's modules_to_save copy (F1)
            base = getattr(pretrained, ours)(features)  # the pre-trained folder (P1 / P2)
        expected_fine = crab_projector_forward(files["finetune_weights.bin"], stem, f"{PEFT}model.", features)
        expected_base = crab_projector_forward(files[pre_file], stem, "model.", features)
        assert fine.shape == (4, QUERIES, LLM_WIDTH)
        torch.testing.assert_close(fine, expected_fine, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(base, expected_base, rtol=1e-5, atol=1e-5)
    # Specific tensors in their places: cross-attention query weight, query tokens, MLP.
    sd, prefix = files["finetune_weights.bin"], f"{PEFT}model.vl_projector."
    projector = crab.visual_projector.modules_to_save["default"]
    torch.testing.assert_close(
        projector.qformer.encoder.layer[1].crossattention.attention.query.weight,
        sd[f"{prefix}visual_Qformer.bert.encoder.layer.1.crossattention.self.query.weight"],
    )
    torch.testing.assert_close(projector.query_tokens, sd[f"{prefix}visual_query_tokens"])
    torch.testing.assert_close(projector.linear_2.bias, sd[f"{prefix}visual_proj.2.bias"])


def test_ia_lora_layers_follow_crabs_per_head_formula(ckpt: dict[str, object], converted) -> None:
    result, model, _ = converted
    lora = ckpt["files"]["finetune_weights.bin"]
    base_llm = LlamaForCausalLM.from_pretrained(ckpt["root"] / "llm")
    assert (result.rank, result.num_heads) == (RANK, HEADS)
    g = torch.Generator().manual_seed(8)
    for layer, sub in ((1, "mlp.down_proj"), (0, "self_attn.k_proj"), (1, "mlp.gate_proj")):
        d_out, d_in = LINEARS[sub]
        module = model.base_model.model.language_model.model.layers[layer].get_submodule(sub)
        x = torch.randn(2, 5, d_in, generator=g)
        name = f"{PEFT}model.layers.{layer}.{sub}"
        w0 = base_llm.model.layers[layer].get_submodule(sub).weight
        gates = torch.softmax(x @ lora[f"{name}.lora_route.weight"].T, dim=-1)  # (2, 5, heads)
        expected = x @ w0.T
        for h in range(HEADS):  # Crab: result += w_i * B_i(A(x)) * alpha / r
            head = x @ lora[f"{name}.lora_A.weight"].T @ lora[f"{name}.lora_B{h}.weight"].T
            expected = expected + gates[..., h : h + 1] * head * (ALPHA / RANK)
        with torch.no_grad():
            torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def test_llm_tokenizer_config_and_report(ckpt: dict[str, object], converted) -> None:
    result, model, tokenizer = converted
    base_vocab = ckpt["base_vocab"]
    crab = model.base_model.model
    assert len(tokenizer) == base_vocab + 17 and tokenizer.convert_tokens_to_ids("<image>") == base_vocab
    assert crab.config.video_token_id == base_vocab + 3 and crab.config.audio_token_id == base_vocab + 6
    base_llm = LlamaForCausalLM.from_pretrained(ckpt["root"] / "llm")
    embed = crab.language_model.get_input_embeddings().weight
    torch.testing.assert_close(embed[:base_vocab], base_llm.get_input_embeddings().weight)  # Llama's rows kept
    assert embed.shape == (base_vocab + 17, LLM_WIDTH) and 0.005 < embed[base_vocab:].std() < 0.05  # N(0, 0.02)
    assert not crab.generation_config.do_sample
    report = json.loads((result.out_dir / "conversion_report.json").read_text())
    files = {f["file"]: f for f in report["files"]}
    fine = files["finetune_weights.bin"]
    # per projector: 61 mapped, 19 dropped (2 BERT embeddings, 2 x 6 text-FFN, 5 MLM head); 14 linears x 5 LoRA keys
    assert fine["mapped"] == {"visual_projector": 61, "audio_projector": 61, "ia_lora": 70}
    assert sum(fine["dropped"].values()) == 38 and fine["num_keys"] == 61 * 2 + 38 + 70
    assert files["visual_pretrain.bin"]["mapped"] == {"visual_projector": 61}
    assert sum(files["visual_pretrain.bin"]["dropped"].values()) == 20  # + the pre-training embed_tokens
    avs = files["avs_finetune_weights.bin"]
    assert avs["mapped"] == {} and sorted(avs["skipped"].values()) == [2, 2]
    assert any(reason.startswith("segmentation module not implemented yet") for reason in avs["skipped"])
    assert report["ia_lora"] == {"rank": RANK, "num_heads": HEADS, "num_linears": 14}
    assert report["pretrain_projectors_from"] == {"visual_projector": "visual_pretrain.bin",
                                                  "audio_projector": "audio_pretrain.bin"}  # fmt: skip


def test_avs_embeddings_on_request(ckpt: dict[str, object], tmp_path: Path) -> None:
    root = ckpt["root"]
    result = convert_crab_weights(root / "ckpt", root / "llm", tmp_path / "out", template=template(),
                                  use_avs_embeddings=True)  # fmt: skip
    model, _ = load_pretrained(result.pretrain_dir)
    avs = ckpt["files"]["avs_finetune_weights.bin"]
    torch.testing.assert_close(model.language_model.lm_head.weight, avs[f"{PEFT}lm_head.weight"])
    torch.testing.assert_close(model.get_input_embeddings().weight, avs[f"{PEFT}model.embed_tokens.weight"])


@pytest.fixture(scope="module")
def shapes(ckpt: dict[str, object]):
    llm = ckpt["root"] / "llm"
    tokenizer = _crab_tokenizer(llm)
    return target_shapes(_crab_config(template(), _llm_config(llm, len(tokenizer)), tokenizer))


def _finetune(ckpt: dict[str, object]) -> dict[str, torch.Tensor]:
    return dict(ckpt["files"]["finetune_weights.bin"])


def test_unknown_key_names_file_and_key(ckpt: dict[str, object], tmp_path: Path) -> None:
    sd = _finetune(ckpt)
    sd[f"{PEFT}model.vl_projector.visual_Qformer.bert.encoder.layer.0.attention.self.distance_embedding.weight"] = (
        torch.zeros(3, 16))  # fmt: skip
    (tmp_path / "ckpt").mkdir()
    torch.save(sd, tmp_path / "ckpt" / "finetune_weights.bin")
    with pytest.raises(ConversionError, match=r"finetune_weights\.bin: unknown key '.*self\.distance_embedding"):
        convert_crab_weights(tmp_path / "ckpt", ckpt["root"] / "llm", tmp_path / "out", template=template())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "query_tokens",
            r"'base_model\.model\.model\.vl_projector\.visual_query_tokens': "
            r"expected shape \(1, 3, 64\), found \(1, 4, 64\)",
        ),
        ("cross_key", r"crossattention\.self\.key\.weight': expected shape \(64, 20\), found \(64, 24\)"),
        ("lora_b", r"lora_B1\.weight': expected shape \(64, 4\), found \(32, 4\)"),
        ("missing_head", r"layers\.1\.self_attn\.v_proj \(3 heads\): missing lora_B2"),
        ("seg_in_finetune", r"'base_model\.model\.model\.seg_module\.x' belongs to the segmentation weights"),
        ("missing_projector", r"finetune_weights\.bin: lacks 2 of the audio_projector weights"),
    ],
)
def test_bad_checkpoints_give_named_errors(ckpt: dict[str, object], shapes, edit: str, message: str) -> None:
    sd = _finetune(ckpt)
    if edit == "query_tokens":
        sd[f"{PEFT}model.vl_projector.visual_query_tokens"] = torch.zeros(1, QUERIES + 1, QF_WIDTH)
    elif edit == "cross_key":  # the visual width in the audio Q-Former: the projectors must not be swapped
        sd[f"{PEFT}model.al_projector.audio_Qformer.bert.encoder.layer.0.crossattention.self.key.weight"] = (
            torch.zeros(QF_WIDTH, VISION_WIDTH))  # fmt: skip
    elif edit == "lora_b":
        sd[f"{PEFT}model.layers.0.mlp.up_proj.lora_B1.weight"] = torch.zeros(LLM_WIDTH, RANK)
    elif edit == "missing_head":
        del sd[f"{PEFT}model.layers.1.self_attn.v_proj.lora_B2.weight"]
    elif edit == "seg_in_finetune":
        sd[f"{PEFT}model.seg_module.x"] = torch.zeros(1)
    else:
        del sd[f"{PEFT}model.al_projector.audio_proj.0.weight"], sd[f"{PEFT}model.al_projector.audio_ln.bias"]
    with pytest.raises(ConversionError, match=message):
        map_checkpoints({"finetune_weights.bin": sd}, shapes)


def test_without_pretrain_files_the_base_projectors_are_f1s(ckpt: dict[str, object], shapes) -> None:
    weights = map_checkpoints({"finetune_weights.bin": _finetune(ckpt)}, shapes)
    assert weights.projector_sources == {"visual_projector": "finetune_weights.bin",
                                         "audio_projector": "finetune_weights.bin"}  # fmt: skip
    assert weights.base_projectors.keys() == weights.finetune_projectors.keys()
    stacked = weights.lora["language_model.model.layers.0.mlp.down_proj.ia_lora_B.default.weight"]
    assert stacked.shape == (LLM_WIDTH, HEADS * RANK)
    head_1 = ckpt["files"]["finetune_weights.bin"][f"{PEFT}model.layers.0.mlp.down_proj.lora_B1.weight"]
    torch.testing.assert_close(stacked[:, RANK : 2 * RANK], head_1)  # column block i is Crab's lora_B{i}


def test_cli_errors_print_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["convert-crab-weights", "--checkpoint-dir", str(tmp_path / "none"), "--llm", str(tmp_path),
                   "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.count("\n") == 0
    assert err.startswith("crab: error: ") and "no such checkpoint folder" in err
