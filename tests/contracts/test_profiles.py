"""The profile switch: the paper profile holds crab-reference section 8's values, and switching is lossless.

The paper values are checked here against the reference's constant table (not against the profile file), the
model-side constants against the builders the paper profile uses (``crab_llama2_7b_config``, the mask
decoder's config, the CLIP layer ``base_models`` records).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from crab.config import ConfigError, load_params
from crab.errors import CrabError
from crab.models.configuration_crab import crab_llama2_7b_config
from crab.models.mask_decoder import mask_decoder_paper_config
from crab.models.pretrained import PAPER_FEATURE_LAYER
from crab.profiles import apply_profile, exp_args, load_profile, profile_names

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "configs" / "profiles"
NUM_GPUS = 8  # the paper profile's global batches assume `accelerate launch --num_processes 8`


def _value(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_both_profiles_set_the_same_keys_and_tiny_is_what_params_yaml_ships() -> None:
    assert profile_names(PROFILES) == ["paper", "tiny"]
    tiny, paper = load_profile("tiny", PROFILES), load_profile("paper", PROFILES)
    assert list(tiny) == list(paper)
    committed = YAML(typ="safe", pure=True).load((REPO / "params.yaml").read_text())
    assert {key: _value(committed, key) for key in tiny} == {key: value for key, value in tiny.items()}


def test_the_paper_profile_has_the_reference_values(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    changed = apply_profile("paper", params_file, PROFILES)
    assert "profile" in changed and "finetune.optim.lr" in changed
    params = load_params(params_file)
    assert params.profile == "paper"
    finetune, pretrain = params.finetune, params.pretrain
    # F1 training: global batch 256, 5 epochs, lr 1e-4, warmup 3 %; I-LoRA r 8, alpha 16, dropout 0.05, 3 heads.
    assert finetune.optim.batch_size * finetune.optim.grad_accum * NUM_GPUS == 256
    assert (finetune.optim.epochs, finetune.optim.lr, finetune.optim.warmup_ratio) == (5, 1e-4, 0.03)
    assert finetune.adapter == "ia_lora"
    lora = finetune.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.num_heads) == (8, 16, 0.05, 3)
    # Pre-training: projectors only on captions, batch 64, 1 epoch, lr 1e-4; Llama-2-chat needs no language phase.
    assert pretrain.optim.batch_size * pretrain.optim.grad_accum * NUM_GPUS == 64
    assert (pretrain.optim.epochs, pretrain.optim.lr) == (1, 1e-4)
    assert pretrain.language is None and not pretrain.train_llm and not pretrain.direct_answers
    assert pretrain.tasks == ["avcap"]
    # Segmentation pre-training (P3): the decoder alone on LVIS, batch 64, 5 epochs, lr 1e-4.
    seg = pretrain.segmentation
    assert seg is not None and seg.tasks == ["seg"] and seg.optim.mixed_precision == "bf16"
    assert seg.optim.batch_size * seg.optim.grad_accum * NUM_GPUS == 64
    assert (seg.optim.epochs, seg.optim.lr, seg.loss.bce) == (5, 1e-4, 1.0)
    # AVS fine-tuning (F2), binary and AVSS heads: global batch 256, 30 epochs, lr 1e-4.
    for avs in (params.finetune_avs, params.finetune_avss):
        assert avs.optim.batch_size * avs.optim.grad_accum * NUM_GPUS == 256
        assert (avs.optim.epochs, avs.optim.lr, avs.optim.mixed_precision) == (30, 1e-4, "bf16")
    # Media: 10 frames, ten 1-s clips at 16 kHz (2-s windows for AVQA); decoding budget 500 tokens.
    media = params.media
    assert (media.num_frames, media.num_audio_segments, media.audio_sample_rate) == (10, 10, 16000)
    assert (media.avqa_num_windows, media.avqa_window_s) == (10, 2.0)
    assert params.evaluate.max_new_tokens == 500
    assert {finetune.optim.mixed_precision, pretrain.optim.mixed_precision} == {"bf16"}
    # The model side of the profile: layer 23 for the LLM, 14 / 22 for the decoder, 32 queries, Q-Former 768 x 2.
    config = crab_llama2_7b_config()
    assert config.vision_feature_layer == PAPER_FEATURE_LAYER == 23
    assert mask_decoder_paper_config().vision_feature_layers == [14, 22]
    assert (config.num_visual_queries, config.num_audio_queries) == (32, 32)
    qformer = config.visual_qformer_config
    assert (qformer.hidden_size, qformer.num_hidden_layers) == (768, 2)
    assert (config.text_config.hidden_size, config.text_config.vocab_size) == (4096, 32017)


def test_switching_to_paper_and_back_restores_params_yaml_byte_for_byte(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_profile("paper", params_file, PROFILES)
    assert apply_profile("paper", params_file, PROFILES) == []  # idempotent
    apply_profile("tiny", params_file, PROFILES)
    assert params_file.read_text() == (REPO / "params.yaml").read_text()


def test_a_bad_profile_changes_nothing(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "typo.yaml").write_text("finetune.optim.learning_rate: 1.0e-4\n")
    (profiles / "broken.yaml").write_text("finetune.optim.epochs: -1\n")
    with pytest.raises(CrabError, match=r"typo\.yaml: finetune\.optim\.learning_rate: no such key"):
        apply_profile("typo", params_file, profiles)
    with pytest.raises(ConfigError, match=r"profile 'broken': finetune\.optim\.epochs: must be > 0"):
        apply_profile("broken", params_file, profiles)
    with pytest.raises(CrabError, match=r"no profile 'gpu'; known: broken, typo"):
        apply_profile("gpu", params_file, profiles)
    assert params_file.read_text() == (REPO / "params.yaml").read_text()


def test_exp_args_use_the_override_grammar_dvc_parses() -> None:
    args = exp_args("tiny", PROFILES)
    assert args[:2] == ["-S", 'profile="tiny"']
    assert 'pretrain.tasks=["avcap","ave"]' in args
    language = next(a for a in args if a.startswith("pretrain.language="))
    assert language.startswith("pretrain.language={epochs:1.5,batch_size:16,") and 'mixed_precision:"no"' in language
    assert "pretrain.language=null" in exp_args("paper", PROFILES)
