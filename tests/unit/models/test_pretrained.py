"""The paper profile's ``base_models`` on stand-ins: the released weights' exact on-disk formats, tiny sizes.

The stand-ins are what a user copies into ``models/pretrained/``: a two-tower ``CLIPModel`` folder with its
``preprocessor_config.json`` (openai/clip-vit-large-patch14's layout; 24 vision layers, as Crab reads hidden
states 14, 22 and 23), an official ``{cfg, model}`` BEATs checkpoint, and a Llama folder whose tokenizer has
Llama-2's three specials, no Crab tokens and no chat template (older copies of the release have none).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast)  # fmt: skip

from crab.config import Params, PretrainedPathsConfig, load_params
from crab.features.extract import encode_frames, load_encoders
from crab.models.base import BaseModelPaths, base_models, load_base_models
from crab.models.beats import beats_tiny, save_beats_checkpoint
from crab.models.pretrained import PretrainedWeightsError
from crab.models.tokenizer import CRAB_ADDED_TOKENS, LLAMA2_CHAT_TEMPLATE, build_prompt
from crab.train.pretrain import build_crab_model

REPO = Path(__file__).resolve().parents[3]


def _clip(folder: Path, num_layers: int = 24) -> None:
    vision = {"image_size": 28, "patch_size": 14, "hidden_size": 8, "num_hidden_layers": num_layers,
              "num_attention_heads": 2, "intermediate_size": 16}  # fmt: skip
    text = {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "vocab_size": 50}  # fmt: skip
    CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=8)).save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)


def _llama(folder: Path) -> LlamaForCausalLM:
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    backend.train_from_iterator(["a violin plays on the left", "the dog barks twice"] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", add_bos_token=True)  # fmt: skip
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    llm = LlamaForCausalLM(config)
    llm.save_pretrained(folder)
    return llm


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> tuple[PretrainedPathsConfig, LlamaForCausalLM]:
    root = tmp_path_factory.mktemp("pretrained")
    _clip(root / "clip-vit-large-patch14")
    beats = beats_tiny(0)
    save_beats_checkpoint(beats, beats.cfg, root / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    llm = _llama(root / "Llama-2-7b-chat-hf")
    paths = PretrainedPathsConfig(vision=str(root / "clip-vit-large-patch14"),
                                  audio=str(root / "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"),
                                  llm=str(root / "Llama-2-7b-chat-hf"))  # fmt: skip
    return paths, llm


def _paper(out_dir: Path, paths: PretrainedPathsConfig) -> Params:
    params = load_params(REPO / "params.yaml")
    base = dataclasses.replace(params.base_models, out_dir=str(out_dir), pretrained=paths)
    return dataclasses.replace(params, profile="paper", base_models=base)


def test_the_stage_writes_crabs_tokenizer_and_a_manifest_pointing_at_the_weights(
    standins: tuple[PretrainedPathsConfig, LlamaForCausalLM], tmp_path: Path
) -> None:
    paths, released = standins
    out = tmp_path / "base"
    manifest = base_models(_paper(out, paths)).manifest
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tokenizer"]  # weights are not copied
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["profile"] == "paper" and manifest["vision"]["feature_layer"] == 23
    assert manifest["vision"]["mask_feature_layers"] == [14, 22] and manifest["vision"]["num_patches"] == 4
    assert manifest["audio"]["num_tokens_per_second"] == 48
    located = BaseModelPaths.of(out)
    assert (located.vision, located.audio, located.llm) == tuple(Path(p).resolve() for p in (paths.vision, paths.audio,
                                                                                              paths.llm))  # fmt: skip
    assert located.tokenizer == out / "tokenizer"

    base_vocab = released.config.vocab_size
    loaded = load_base_models(out)
    tokenizer = loaded.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in CRAB_ADDED_TOKENS]
    assert ids == list(range(base_vocab, base_vocab + 17)) == list(manifest["tokenizer"]["added_token_ids"].values())
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("</s>", "left")
    assert tokenizer.chat_template == LLAMA2_CHAT_TEMPLATE
    assert build_prompt(tokenizer, "Hi").startswith("<s>[INST] <<SYS>>\nYou are a helpful assistant.")
    assert type(loaded.vision).__name__ == "CLIPVisionModel" and loaded.vision.config.num_hidden_layers == 24

    # The released LLM gets the 17 rows, seeded; its own rows are untouched.
    llm = loaded.llm
    assert llm.config.vocab_size == len(tokenizer) == llm.get_input_embeddings().weight.shape[0]
    assert llm.get_output_embeddings().weight.shape[0] == len(tokenizer)
    old = released.get_input_embeddings().weight
    torch.testing.assert_close(llm.get_input_embeddings().weight[:base_vocab], old, rtol=0, atol=0)
    new_rows = llm.get_input_embeddings().weight[base_vocab:]
    assert 0.01 < float(new_rows.std()) < 0.04  # HF's N(0, 0.02), as Crab's resize_token_embeddings(32017)
    again = load_base_models(out).llm.get_input_embeddings().weight[base_vocab:]
    torch.testing.assert_close(again, new_rows, rtol=0, atol=0)


def test_every_missing_weight_is_named_with_its_params_key(tmp_path: Path) -> None:
    paths = PretrainedPathsConfig(vision=str(tmp_path / "clip"), audio=str(tmp_path / "beats.pt"),
                                  llm=str(tmp_path / "llama"))  # fmt: skip
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text("{}")
    with pytest.raises(PretrainedWeightsError) as error:
        base_models(_paper(tmp_path / "base", paths))
    message = str(error.value)
    assert "nothing is downloaded" in message
    assert f"base_models.pretrained.vision: {tmp_path / 'clip'}/ (folder)" in message
    assert f"base_models.pretrained.audio: {tmp_path / 'beats.pt'}" in message
    assert f"base_models.pretrained.llm: {tmp_path / 'llama' / 'model.safetensors'}" in message
    assert str(tmp_path / "llama" / "tokenizer_config.json") in message
    assert "config.json (" not in message  # the LLM's config.json is there
    assert not (tmp_path / "base").exists()


def test_weights_that_do_not_fit_crab_are_refused(
    standins: tuple[PretrainedPathsConfig, LlamaForCausalLM], tmp_path: Path
) -> None:
    paths, _ = standins
    _clip(tmp_path / "shallow", num_layers=12)  # Crab reads hidden states 14, 22 and 23
    with pytest.raises(PretrainedWeightsError, match=r"CLIP has 12 layers, Crab reads hidden states \[14, 22, 23\]"):
        base_models(_paper(tmp_path / "base", dataclasses.replace(paths, vision=str(tmp_path / "shallow"))))

    (tmp_path / "beats.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"base_models\.pretrained\.audio: .*beats\.pt"):
        base_models(_paper(tmp_path / "base", dataclasses.replace(paths, audio=str(tmp_path / "beats.pt"))))
    assert not (tmp_path / "base").exists()


def test_the_features_stage_reads_clip_layer_23_of_the_released_weights(
    standins: tuple[PretrainedPathsConfig, LlamaForCausalLM], tmp_path: Path
) -> None:
    base_models(_paper(tmp_path / "base", standins[0]))
    encoders = load_encoders(tmp_path / "base")
    assert encoders.feature_layer == 23
    frames = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    tokens = encode_frames(encoders.vision, encoders.processor, frames, encoders.feature_layer, batch_size=2)
    assert tokens.shape == (3, 4, 8)  # (frames, (28 / 14) ** 2 patches, width)
    hidden = encoders.vision(pixel_values=encoders.processor(images=list(frames), return_tensors="pt")["pixel_values"],
                             output_hidden_states=True).hidden_states  # fmt: skip
    torch.testing.assert_close(tokens, hidden[23][:, 1:, :])


def test_pretrain_builds_the_paper_model_on_the_released_weights_widths(
    standins: tuple[PretrainedPathsConfig, LlamaForCausalLM], tmp_path: Path
) -> None:
    """Q-Formers 768 wide with 32 queries (the paper's), fed by the weights' own CLIP / BEATs widths."""
    base_models(_paper(tmp_path / "base", standins[0]))
    model, tokenizer = build_crab_model(tmp_path / "base", "paper", seed=7)  # projector seed != base_models seed 0
    config = model.config
    assert (config.num_visual_queries, config.visual_qformer_config.hidden_size) == (32, 768)
    assert (config.vision_hidden_size, config.audio_hidden_size) == (8, 64)  # the stand-ins' CLIP and BEATs
    assert model.language_model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    # The 17 new rows are seeded by base_models, so the stage builds the LLM that load_base_models gives.
    loaded = load_base_models(tmp_path / "base").llm
    for got, want in ((model.language_model.get_input_embeddings(), loaded.get_input_embeddings()),
                      (model.language_model.get_output_embeddings(), loaded.get_output_embeddings())):  # fmt: skip
        torch.testing.assert_close(got.weight, want.weight, rtol=0, atol=0)
    video, audio = (tokenizer.convert_tokens_to_ids(t) for t in ("<video>", "<audio>"))
    ids = [tokenizer.bos_token_id] + [video] * 2 * 32 + [audio] * 3 * 32 + tokenizer("a dog barks").input_ids[1:]
    input_ids = torch.tensor([ids])  # 2 frames and 3 clips of 32 query tokens each
    out = model(input_ids=input_ids, labels=input_ids, video_features=torch.randn(1, 2, 4, 8),
                audio_features=torch.randn(1, 3, 48, 64))  # fmt: skip
    assert torch.isfinite(out.loss) and out.logits.shape == (1, len(ids), len(tokenizer))
