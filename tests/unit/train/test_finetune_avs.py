"""The ``finetune_avs`` stage on the tiny workspace: pretrain -> finetune -> finetune_avs on S4 records.

The workspace (conftest.py) gets S4 records here: AV-UIE lines in the real format, their 5 frames' video,
audio and levels features in a copy of the feature store, and mask PNGs. Checked: exactly the decoder, the
embeddings and the LM head train (adapter, projectors and LLM layers stay bit-identical), the mask loss falls,
the saved weights reload into the model that evaluation uses with identical mask logits, and missing inputs
are named.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import NUM_PATCHES
from PIL import Image
from safetensors.torch import load_file

import crab.eval.run_avs as run_avs
import crab.train.finetune_avs as avs_module
from crab.avuie.avs import AvsLabel, format_answer
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import Params
from crab.datasets.media import read_binary_mask, read_class_mask
from crab.errors import CrabError
from crab.eval.generation import GenerationStats
from crab.eval.metrics_avss import avss_scores
from crab.eval.run_avs import evaluate_masks
from crab.features.store import FeatureStore, StoreWriter, audio_key, levels_key, video_key
from crab.tasks import TASKS, Task
from crab.train.data import encode_target
from crab.train.finetune import finetune
from crab.train.finetune_avs import (
    AVS_WEIGHTS_NAME,
    added_token_rows,
    finetune_avs,
    finetune_avss,
    load_finetuned_avs,
)
from crab.train.pretrain import pretrain


def _s4_records(root: Path) -> list[AvuieRecord]:
    records = []
    for video in range(3):
        for frame in range(2):
            mask = root / f"masks/v{video}_{frame + 1}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.zeros((32, 32), dtype=np.uint8)
            pixels[4 + 8 * video : 14 + 8 * video, 6 + 10 * frame : 20 + 10 * frame] = 255
            Image.fromarray(pixels).save(mask)
            label = AvsLabel(frame=frame, mask=mask.as_posix(), objects=("dog_barking",))
            records.append(AvuieRecord(
                id=f"s4/train/v{video}_{frame + 1}", task="s4", split="train", dataset="avsbench",
                item_id=f"v{video}_{frame + 1}", source=f"meta.csv:{video}", video_id=f"v{video}",
                media={"video": f"raw/frames/v{video}", "audio": f"raw/v{video}.wav"},
                instruction=TASKS[Task.S4].instruction(nth=["first", "second"][frame]),
                target=format_answer(label, "A dog barks."), reasoning=True, label=label.to_dict(),
            ))  # fmt: skip
    return records


@pytest.fixture
def avs_params(workspace: Any, stage_dir: Path) -> Params:
    """Pretrain and finetune run in ``stage_dir``; S4 data and a store holding it are added there."""
    params = workspace.params
    pretrain(
        dataclasses.replace(
            params,
            pretrain=dataclasses.replace(params.pretrain, optim=dataclasses.replace(params.pretrain.optim, epochs=1.0)),
        )
    )
    finetune(params)
    avuie = stage_dir / "data" / "avuie"
    avuie.unlink()  # the shared symlink: this test adds a task
    shutil.copytree(workspace.root / "data" / "avuie", avuie)
    records = _s4_records(stage_dir)
    write_jsonl(avuie / "s4" / "train.jsonl", records)
    shared = FeatureStore(params.features.out_dir)
    tensors = {key: shared.get(key) for key in shared.keys()}
    manifest = json.loads((workspace.root / "models/base/manifest.json").read_text())
    width, audio_width = manifest["vision"]["hidden_size"], manifest["audio"]["hidden_size"]
    generator = torch.Generator().manual_seed(7)
    for record in records:
        tensors.setdefault(video_key(record), torch.randn(5, NUM_PATCHES, width, generator=generator))
        tensors.setdefault(audio_key(record, params), torch.randn(5, 6, audio_width, generator=generator))
        tensors.setdefault(levels_key(record), torch.randn(5, 2, NUM_PATCHES, width, generator=generator))
    store = stage_dir / "data" / "features"
    writer = StoreWriter(store, {"fixture": "finetune_avs tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])
    optim = dataclasses.replace(params.finetune_avs.optim, epochs=6.0, batch_size=3, lr=3e-3, log_every_steps=1,
                                save_every_steps=4)  # fmt: skip
    return dataclasses.replace(
        params,
        features=dataclasses.replace(params.features, out_dir=str(store)),
        finetune_avs=dataclasses.replace(params.finetune_avs, tasks=["s4"], optim=optim),
    )


def test_finetune_avs_trains_decoder_and_added_token_rows_only_and_reloads(
    avs_params: Params, stage_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: dict = {}
    original = avs_module.setup_finetune_avs
    monkeypatch.setattr(
        avs_module, "setup_finetune_avs", lambda p, stage="finetune_avs": kept.setdefault("setup", original(p, stage))
    )
    result = finetune_avs(avs_params)
    assert result.num_examples == {"s4": 6}
    assert set(result.trainable) == {"mask_decoder", "embed_tokens", "lm_head"}
    rows = added_token_rows(kept["setup"].tokenizer)
    width = kept["setup"].model.model.get_base_model().config.text_config.hidden_size
    assert result.trainable["embed_tokens"] == result.trainable["lm_head"] == len(rows) * width == 17 * width

    peft = kept["setup"].model.model.eval()
    pretrained = load_file(str(stage_dir / "models/pretrain/model.safetensors"))
    adapter = load_file(str(stage_dir / "models/finetune/adapter_model.safetensors"))
    compared = {"adapter": 0, "llm": 0}
    for name, param in peft.named_parameters():
        if "lora_" in name:
            compared["adapter"] += 1
            key = name.replace(".default", "")
            assert torch.equal(param, adapter[key]), name  # the finetune adapter stayed frozen
        elif "language_model" in name and "embed_tokens" not in name and "lm_head" not in name:
            compared["llm"] += 1
            assert torch.equal(param, pretrained[name.removeprefix("base_model.model.").replace(".base_layer", "")]), (
                name
            )
        elif "embed_tokens" in name or "lm_head" in name:  # only the added tokens' rows moved
            compared["rows"] = compared.get("rows", 0) + 1
            before = pretrained[name.removeprefix("base_model.model.")]
            other = torch.ones(param.shape[0], dtype=torch.bool)
            other[rows] = False
            assert torch.equal(param[other], before[other]), name
            if "lm_head" in name:  # the LM loss reaches every row of the head: the mask rows must have moved
                assert not torch.equal(param[rows], before[rows]), name

    assert compared["adapter"] > 0 and compared["llm"] > 0 and compared["rows"] == 2, compared
    summary = json.loads((stage_dir / "models/finetune_avs/train_summary.json").read_text())
    assert summary["stage"] == "finetune_avs" and summary["tasks"] == ["s4"]
    saved = load_file(str(stage_dir / "models/finetune_avs" / AVS_WEIGHTS_NAME))
    assert saved and all(k.startswith("mask_decoder.") or k.startswith("token_rows.") for k in saved)
    assert saved["token_rows.ids"].tolist() == rows and saved["token_rows.lm_head"].shape == (17, width)

    batch = kept["setup"].collate_fn([kept["setup"].dataset[i] for i in range(3)])
    reloaded, _ = load_finetuned_avs(
        avs_params.pretrain.out_dir, avs_params.finetune.out_dir, avs_params.finetune_avs.out_dir
    )
    inputs = {k: v for k, v in batch.items() if k != "mask_targets"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).mask_logits, peft(**inputs).mask_logits, rtol=0, atol=0)
    steps = [row["loss"] for row in summary["history"]]
    assert steps[-1] < steps[0], steps


def test_missing_inputs_are_named(avs_params: Params, stage_dir: Path) -> None:
    with pytest.raises(CrabError, match="run `crab finetune_avs`"):
        load_finetuned_avs(avs_params.pretrain.out_dir, avs_params.finetune.out_dir, stage_dir / "models/nothing")
    manifest = stage_dir / "base_manifest_without_levels"
    base = Path(avs_params.base_models.out_dir)
    shutil.copytree(base, manifest)
    entries = json.loads((manifest / "manifest.json").read_text())
    del entries["vision"]["mask_feature_layers"]
    (manifest / "manifest.json").write_text(json.dumps(entries))
    params = dataclasses.replace(
        avs_params, base_models=dataclasses.replace(avs_params.base_models, out_dir=str(manifest))
    )
    with pytest.raises(CrabError, match="no vision.mask_feature_layers"):
        finetune_avs(params)
    # the single-task baseline's per-task adapters: no shared adapter for F2 to start from
    single = stage_dir / "models/single_task"
    shutil.copytree(Path(avs_params.finetune.out_dir), single / "s4")
    (single / "train_summary.json").write_text(json.dumps({"adapter": "single_task", "tasks": ["s4"]}))
    params = dataclasses.replace(avs_params, finetune=dataclasses.replace(avs_params.finetune, out_dir=str(single)))
    with pytest.raises(CrabError, match=r"needs the shared adapter, not per-task ones \(\['s4'\]\).*evaluate`\)"):
        finetune_avs(params)


def _with_test_split(params: Params, stage_dir: Path, max_new_tokens: int) -> Params:
    records = [dataclasses.replace(r, id=r.id.replace("/train/", "/test/"), split="test")
               for r in _s4_records(stage_dir)]  # fmt: skip
    write_jsonl(stage_dir / "data/avuie/s4/test.jsonl", records)
    return dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, max_new_tokens=max_new_tokens))


def test_mask_evaluation_scores_decoded_masks_and_counts_missing_mask_tokens_as_empty(
    avs_params: Params, stage_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finetune_avs(avs_params)
    # 1. Answers cut after 4 tokens hold no mask tokens: every frame predicts an empty mask.
    params = _with_test_split(avs_params, stage_dir, max_new_tokens=4)
    result = evaluate_masks(params, "s4")
    metrics = json.loads((stage_dir / "metrics/s4.json").read_text())
    assert (result.score_name, metrics["parse_failure_rate"], metrics["num_videos"]) == ("miou", 1.0, 3)
    masks = stage_dir / "predictions/s4_masks"
    assert sorted(p.name for p in masks.iterdir()) == [f"v{v}_{f}.png" for v in range(3) for f in (1, 2)]
    assert not any(read_binary_mask(path).any() for path in masks.iterdir())  # the empty masks, written as scored
    # (the official F includes threshold 0, where every pixel counts as foreground, so even the empty mask has F > 0)
    assert {k: metrics[k] for k in ("miou", "f_score")} == metrics["baselines"]["empty_mask"]
    assert set(metrics["baselines"]) == {"empty_mask", "full_frame_mask"}
    # 2. Answers that are the reference texts: the decoder's masks are scored, objects read from the tag.
    records = sorted(_s4_records(stage_dir), key=lambda r: r.id)
    _, tokenizer = load_finetuned_avs(params.pretrain.out_dir, params.finetune.out_dir, params.finetune_avs.out_dir)
    references = [encode_target(tokenizer, r.target) for r in records]

    def teacher(model, prompts, **kwargs):
        return references, GenerationStats(len(references), sum(map(len, references)), 1.0, 16, 400)

    monkeypatch.setattr(run_avs, "generate_greedy", teacher)
    result = evaluate_masks(params, "s4")
    metrics = json.loads((stage_dir / "metrics/s4.json").read_text())
    rows = [json.loads(line) for line in (stage_dir / "predictions/s4.jsonl").read_text().splitlines()]
    assert metrics["parse_failure_rate"] == 0.0 and metrics["object_accuracy"] == 1.0
    assert all(row["parsed"] == {"objects": ["dog_barking"]} for row in rows)
    for row in rows:  # each frame's written mask is the one its IoU was computed from (binarised at 0.5)
        predicted, truth = (
            read_binary_mask(stage_dir / "predictions" / row["mask"]),
            read_binary_mask(row["label"]["mask"]),
        )
        union = (predicted | truth).sum()
        assert row["correct"] == pytest.approx((predicted & truth).sum() / union if union else 1.0, abs=1e-6)
        assert row["media"] == {"video": f"raw/frames/{row['video_id']}", "audio": f"raw/{row['video_id']}.wav"}
    # every video has 2 frames, so the per-video mean of the rows' frame IoUs is the metric's mIoU
    assert metrics["miou"] == pytest.approx(sum(row["correct"] for row in rows) / len(rows), abs=1e-12)
    # the decoder's graded logits were scored, not the constant empty mask
    assert metrics["f_score"] != metrics["baselines"]["empty_mask"]["f_score"]
    assert result.best_baseline in metrics["baselines"] and (stage_dir / "metrics/router_s4.json").is_file()


def _avss_records(root: Path, split: str) -> list[AvuieRecord]:
    """Two clips of two frames; each label map marks a guitar (28) block and, in frame 2, a man (41) block."""
    records = []
    for video in range(2):
        for frame in range(2):
            mask = root / f"avss_masks/c{video}_{frame + 1}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            classes = np.zeros((32, 32), dtype=np.uint8)
            classes[2 + 10 * video : 12 + 10 * video, 2:14] = 28
            if frame:
                classes[20:30, 18:30] = 41
            Image.fromarray(classes).save(mask)
            label = AvsLabel(frame=frame, mask=mask.as_posix(), objects=("guitar", "man")[: frame + 1])
            records.append(AvuieRecord(
                id=f"avss/{split}/c{video}_{frame + 1}", task="avss", split=split, dataset="avss",
                item_id=f"c{video}_{frame + 1}", source=f"metadata.csv:{video}", video_id=f"c{video}",
                media={"video": f"raw/avss/c{video}/frames", "audio": f"raw/avss/c{video}.wav"},
                instruction=TASKS[Task.AVSS].instruction(nth=["first", "second"][frame]),
                target=format_answer(label, "A guitar plays."), reasoning=True, label=label.to_dict(),
            ))  # fmt: skip
    return records


def test_finetune_avss_trains_the_71_class_head_and_evaluate_scores_class_maps(
    avs_params: Params, stage_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    avuie = stage_dir / "data" / "avuie"
    write_jsonl(avuie / "avss" / "train.jsonl", _avss_records(stage_dir, "train"))
    write_jsonl(avuie / "avss" / "test.jsonl", _avss_records(stage_dir, "test"))
    store = FeatureStore(avs_params.features.out_dir)
    tensors = {key: store.get(key) for key in store.keys()}
    generator = torch.Generator().manual_seed(11)
    width = tensors[next(k for k in tensors if k.startswith("levels/"))].shape[-1]
    audio = tensors[next(k for k in tensors if k.startswith("audio/"))]
    for record in _avss_records(stage_dir, "train"):
        tensors.setdefault(video_key(record), torch.randn(2, NUM_PATCHES, width, generator=generator))
        tensors.setdefault(audio_key(record, avs_params), torch.randn(*audio.shape, generator=generator))
        tensors.setdefault(levels_key(record), torch.randn(2, 2, NUM_PATCHES, width, generator=generator))
    shutil.rmtree(avs_params.features.out_dir)
    writer = StoreWriter(Path(avs_params.features.out_dir), {"fixture": "finetune_avss tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])
    params = dataclasses.replace(
        avs_params, finetune_avss=dataclasses.replace(
            avs_params.finetune_avss, out_dir=str(stage_dir / "models/finetune_avss"), tasks=["avss"],
            optim=avs_params.finetune_avs.optim, class_head="factorized"),
        evaluate=dataclasses.replace(avs_params.evaluate, max_new_tokens=48),
    )  # fmt: skip
    result = finetune_avss(params)
    assert result.num_examples == {"avss": 4}
    summary = json.loads((stage_dir / "models/finetune_avss/train_summary.json").read_text())
    assert summary["stage"] == "finetune_avss" and summary["tasks"] == ["avss"]
    steps = [row["loss"] for row in summary["history"]]
    assert steps[-1] < steps[0], steps
    model, tokenizer = load_finetuned_avs(
        params.pretrain.out_dir, params.finetune.out_dir, params.finetune_avss.out_dir
    )
    decoder = model.get_base_model().config.mask_decoder_config
    assert decoder.num_classes == 71 and decoder.class_head == "factorized"  # finetune_avss.class_head, saved

    records = sorted(_avss_records(stage_dir, "test"), key=lambda r: r.id)
    references = [encode_target(tokenizer, r.target) for r in records]
    monkeypatch.setattr(run_avs, "generate_greedy", lambda model, prompts, **kwargs: (
        references, GenerationStats(len(references), sum(map(len, references)), 1.0, 16, 400)))  # fmt: skip
    evaluation = evaluate_masks(params, "avss")
    metrics = json.loads((stage_dir / "metrics/avss.json").read_text())
    assert evaluation.score_name == "miou" and metrics["num_videos"] == 2 and metrics["parse_failure_rate"] == 0.0
    assert set(metrics["baselines"]) == {"all_background", "frequent_class_full_frame"}
    rows = [json.loads(line) for line in (stage_dir / "predictions/avss.jsonl").read_text().splitlines()]
    predicted = [read_class_mask(stage_dir / "predictions" / row["mask"]) for row in rows]
    truths = [read_class_mask(row["label"]["mask"]) for row in rows]
    assert all(p.shape == (32, 32) and p.max() < 71 for p in predicted)  # class maps at the label map's size
    by_clip = {v: [i for i, r in enumerate(rows) if r["video_id"] == v] for v in ("c0", "c1")}
    expected = avss_scores([np.stack([predicted[i] for i in idx]) for idx in by_clip.values()],
                           [np.stack([truths[i] for i in idx]) for idx in by_clip.values()])  # fmt: skip
    assert metrics["miou"] == pytest.approx(expected["miou"])  # the written maps are the scored ones
