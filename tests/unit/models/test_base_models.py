"""Tests for ``crab.models.base``: the ``base_models`` stage on a hand-written AV-UIE set, and the loaders.

The stage runs on the real ``params.yaml`` shrunk with ``dataclasses.replace`` (vocabulary 300, small
CLIP and LLM) in a temp working directory. Expected shapes come from crab-reference sections 1.2 (CLIP
hidden states: patch embedding + one per layer, CLS + patches), 1.4 (BEATs: 48 tokens per 1 s clip) and
1.6 / 1.7 (17 added tokens, Llama-2 prompt).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import Params, load_params
from crab.errors import DataError
from crab.features.fbank import beats_fbank
from crab.models.base import (
    BaseModels,
    BaseModelsError,
    BaseModelsResult,
    base_models,
    load_base_models,
    load_vision,
    tiny_clip,
)
from crab.models.tokenizer import build_prompt

PARAMS_FILE = Path(__file__).resolve().parents[3] / "params.yaml"
AV = "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"
EVENTS = ["Dog barking", "Church bell", "Violin, fiddle", "Frying (food)", "Helicopter", "Baby cry, infant cry"]
INSTRUMENTS = ["violin", "piano", "cello", "flute", "guitar", "accordion"]


def _params() -> Params:
    params = load_params(PARAMS_FILE)
    base = params.base_models
    return dataclasses.replace(
        params,
        profile="tiny",
        avuie=dataclasses.replace(params.avuie, tasks=["ave", "avqa", "avcap"]),
        base_models=dataclasses.replace(
            base,
            out_dir="models/base",
            vision=dataclasses.replace(
                base.vision, image_size=32, patch_size=16, hidden_size=32, num_layers=2, num_heads=2,
                intermediate_size=64, feature_layer=1,
            ),
            audio=dataclasses.replace(
                base.audio, embed_dim=48, hidden_size=40, num_layers=1, num_heads=2, intermediate_size=80
            ),
            llm=dataclasses.replace(base.llm, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
            tokenizer=dataclasses.replace(base.tokenizer, vocab_size=300, min_frequency=2),
        ),
    )  # fmt: skip


def _record(task: str, split: str, index: int, instruction: str, target: str) -> AvuieRecord:
    item = f"{task[:2]}{index:03d}"
    return AvuieRecord(
        id=f"{task}/{split}/{item}", task=task, split=split, dataset={"ave": "ave", "avqa": "music_avqa",
        "avcap": "valor"}[task], item_id=item, source=f"ann.txt:{index}", video_id=item,
        media={"video": f"v/{item}.mp4", "audio": f"v/{item}.mp4"}, instruction=instruction, target=target,
        reasoning=task != "avcap", label={},
    )  # fmt: skip


def _write_avuie(root: Path) -> None:
    """A small AV-UIE set in the real schema: 6 train records per task, and a val split."""
    ave, avqa, avcap = [], [], []
    for i, event in enumerate(EVENTS):
        start, end = i % 4, i % 4 + 3
        ave.append(
            _record(
                "ave",
                "train",
                i,
                AV + "Please describe the events and time range that occurred in the video.",
                f"The {event.lower()} is seen on the left from second {start} and heard from second {start}. So the audible "
                f"and visible event in the video is <event> {event} </event>, and the time range is <range> {start},{end} </range>.",
            )
        )
        instrument = INSTRUMENTS[i]
        avqa.append(
            _record(
                "avqa",
                "train",
                i,
                AV + f"Please answer this question: Is the {instrument} on the left louder?",
                f"The {instrument} on the left plays from 0 s; the piano on the right is quieter. So the answer is <answer> yes </answer>.",
            )
        )
        avcap.append(
            _record(
                "avcap",
                "train",
                i,
                AV + "Please describe this video and audio.",
                f"A person plays the {instrument} in a small room while a dog barks outside.",
            )
        )
    for task, records in (("ave", ave), ("avqa", avqa), ("avcap", avcap)):
        write_jsonl(root / "data" / "avuie" / task / "train.jsonl", records)
        write_jsonl(root / "data" / "avuie" / task / "val.jsonl", [_record(task, "val", 0, AV + "Q?", "zebra " * 50)])
    # fmt: skip


def _build(root: Path) -> BaseModelsResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        return base_models(_params())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BaseModelsResult]:
    root = tmp_path_factory.mktemp("base_models")
    _write_avuie(root)
    return root / "models" / "base", _build(root)


@pytest.fixture(scope="module")
def loaded(built: tuple[Path, BaseModelsResult]) -> BaseModels:
    return load_base_models(built[0])


def test_stage_writes_the_layout_and_nothing_else(built: tuple[Path, BaseModelsResult]) -> None:
    out_dir, result = built
    assert result.out_dir == Path("models/base")
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert files == [
        "beats/beats.pt", "clip/config.json", "clip/model.safetensors", "clip/preprocessor_config.json",
        "llm/config.json", "llm/generation_config.json", "llm/model.safetensors", "manifest.json",
        "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
    ]  # fmt: skip
    assert [p.name for p in out_dir.parent.iterdir()] == ["base"]  # no temp sibling left behind
    assert json.loads((out_dir / "manifest.json").read_text()) == result.manifest


def test_clip_gives_every_hidden_state_for_cls_and_patches(loaded: BaseModels) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    pixels = loaded.image_processor(images=[image], return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 32, 32)
    with torch.no_grad():
        hidden = loaded.vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(hidden) == 2 + 1
    assert all(h.shape == (1, (32 // 16) ** 2 + 1, 32) for h in hidden)
    assert loaded.manifest["vision"]["feature_layer"] == 1
    assert loaded.manifest["vision"]["num_hidden_states"] == 3


def test_beats_checkpoint_is_official_format_and_gives_48_tokens_per_second(
    built: tuple[Path, BaseModelsResult], loaded: BaseModels
) -> None:
    checkpoint = torch.load(built[0] / "beats" / "beats.pt", weights_only=True)
    assert set(checkpoint) == {"cfg", "model"}
    cfg = checkpoint["cfg"]  # the sizes of base_models.audio, BEATs' other switches unchanged
    assert (cfg["embed_dim"], cfg["encoder_embed_dim"], cfg["encoder_layers"]) == (48, 40, 1)
    assert (cfg["encoder_attention_heads"], cfg["encoder_ffn_embed_dim"]) == (2, 80)
    assert cfg["input_patch_size"] == 16 and cfg["layer_norm_first"] is False
    wave = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, 16000).astype(np.float32))
    with torch.no_grad():
        tokens = loaded.audio(beats_fbank(wave).unsqueeze(0))  # (1, 98, 128) -> (1, 48, C)
    assert tokens.shape == (1, 48, loaded.audio.cfg.encoder_embed_dim)
    assert loaded.manifest["audio"]["num_tokens_per_second"] == 48


def test_llm_vocabulary_and_special_ids_come_from_the_tokenizer(loaded: BaseModels) -> None:
    llm, tokenizer = loaded.llm, loaded.tokenizer
    assert llm.config.vocab_size == len(tokenizer) == llm.get_input_embeddings().weight.shape[0]
    assert (llm.config.bos_token_id, llm.config.eos_token_id) == (tokenizer.bos_token_id, tokenizer.eos_token_id)
    assert llm.generation_config.pad_token_id == tokenizer.pad_token_id == tokenizer.eos_token_id
    assert llm.generation_config.do_sample is False
    assert llm.lm_head.weight.data_ptr() != llm.get_input_embeddings().weight.data_ptr()  # untied like Llama-2
    assert llm.get_input_embeddings().weight[tokenizer.eos_token_id].abs().sum() > 0  # eos is not a zero pad row
    ids = tokenizer(build_prompt(tokenizer, AV + "Q?"), add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        assert llm(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_added_token_ids_are_contiguous_in_crab_order(loaded: BaseModels) -> None:
    order = [
        "<image>", "<image_start>", "<image_end>", "<video>", "<video_start>", "<video_end>",
        "<audio>", "<audio_start>", "<audio_end>", "<mask_start>", "<mask_end>",
        "<mask_0>", "<mask_1>", "<mask_2>", "<mask_3>", "<mask_4>", "<mask_5>",
    ]  # fmt: skip
    base = loaded.manifest["tokenizer"]["base_vocab_size"]
    assert loaded.tokenizer.convert_tokens_to_ids(order) == list(range(base, base + 17))
    assert loaded.manifest["tokenizer"]["added_token_ids"] == dict(zip(order, range(base, base + 17), strict=True))
    assert loaded.manifest["tokenizer"]["placeholder_token_ids"] == {
        "<image>": base,
        "<video>": base + 3,
        "<audio>": base + 6,
    }
    assert len(loaded.tokenizer) == base + 17 <= 300 + 17


def test_placeholders_and_mask_tokens_are_single_ids_tags_are_text(loaded: BaseModels) -> None:
    tok = loaded.tokenizer
    masks = tok("<mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>", add_special_tokens=False)
    assert len(masks.input_ids) == 8
    assert tok("a <mask_3> b", add_special_tokens=False).input_ids.count(tok.convert_tokens_to_ids("<mask_3>")) == 1
    ids = tok(
        AV + "<event> Dog barking </event> <range> 2,7 </range> <answer> yes </answer>", add_special_tokens=False
    ).input_ids
    for placeholder in ("<video>", "<audio>", "<video_start>", "<audio_end>"):
        assert ids.count(tok.convert_tokens_to_ids(placeholder)) == 1
    assert len(tok("<event>", add_special_tokens=False).input_ids) > 1
    assert len(tok("<answer>", add_special_tokens=False).input_ids) > 1


def test_saved_chat_template_renders_the_llama2_prompt(
    built: tuple[Path, BaseModelsResult], loaded: BaseModels
) -> None:
    prompt = build_prompt(loaded.tokenizer, AV + "Please answer this question: Is the violin louder?")
    assert prompt == (
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n"
        + AV
        + "Please answer this question: Is the violin louder? [/INST]"
    )
    config = json.loads((built[0] / "tokenizer" / "tokenizer_config.json").read_text())
    assert "[INST]" in config["chat_template"]
    assert (config["padding_side"], config["pad_token"], config["eos_token"]) == ("left", "</s>", "</s>")


def test_val_text_does_not_reach_the_tokenizer(loaded: BaseModels) -> None:
    assert loaded.manifest["tokenizer"]["num_train_records"] == {"ave": 6, "avqa": 6, "avcap": 6}
    assert not any("zebra" in token.replace("Ġ", "") for token in loaded.tokenizer.get_vocab())


def test_rebuild_replaces_the_folder_with_identical_bytes(built: tuple[Path, BaseModelsResult], tmp_path: Path) -> None:
    _write_avuie(tmp_path)
    stale = tmp_path / "models" / "base" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an older run")
    _build(tmp_path)
    assert not stale.exists()
    for name in (
        "clip/model.safetensors",
        "llm/model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "beats/beats.pt",
        "manifest.json",
    ):
        assert (tmp_path / "models" / "base" / name).read_bytes() == (built[0] / name).read_bytes(), name


def test_missing_avuie_train_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data/avuie/ave/train\.jsonl: file not found"):
        _build(tmp_path)
    assert not (tmp_path / "models" / "base").exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_folders_are_all_named(built: tuple[Path, BaseModelsResult], tmp_path: Path) -> None:
    copy = tmp_path / "base"
    shutil.copytree(built[0], copy)
    shutil.rmtree(copy / "llm")
    (copy / "clip" / "preprocessor_config.json").unlink()
    with pytest.raises(BaseModelsError) as error:
        load_base_models(copy)
    message = str(error.value)
    assert f"{copy / 'llm'}/ (folder)" in message
    assert str(copy / "clip" / "preprocessor_config.json") in message
    assert "tokenizer" not in message and "crab base_models" in message


def test_weights_that_do_not_fit_the_config_are_an_error(built: tuple[Path, BaseModelsResult], tmp_path: Path) -> None:
    clip = tmp_path / "clip"
    shutil.copytree(built[0] / "clip", clip)
    config = json.loads((clip / "config.json").read_text())
    (clip / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(BaseModelsError, match=r"missing \['encoder\.layers\.2\."):
        load_vision(clip)


def test_a_full_clip_checkpoint_loads_as_the_vision_tower(tmp_path: Path) -> None:
    """The paper profile points ``load_vision`` at openai/clip-vit-large-patch14, a two-tower CLIPModel folder."""
    vision = {
        "image_size": 32,
        "patch_size": 16,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    text = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 99,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)).eval()
    full.save_pretrained(tmp_path)
    tiny_clip(_params().base_models.vision, seed=0)[1].save_pretrained(tmp_path)
    model, _ = load_vision(tmp_path)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=pixels).last_hidden_state
        assert torch.equal(model(pixel_values=pixels).last_hidden_state, expected)
