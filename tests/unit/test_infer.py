"""Tests for ``crab infer`` (the ``crab.infer`` package and its CLI command) on a tiny pipeline in a temp dir.

A module fixture builds, in a temp working directory, what ``crab infer`` reads from a trained pipeline,
with the stages' own code and a shrunk ``params.yaml``: one AV-Synth AVE clip (3 s, 32 px, 4 fps, rendered
by ``crab.synth.render``), a hand-written AV-UIE set pointing at it (the tokenizer corpus and the
``features`` stage's input), ``models/base`` written by the ``base_models`` stage (random init, BPE of
300), the feature store written by the ``features`` stage, a Crab model from ``build_crab_model`` saved
like ``pretrain`` saves it, and an IA-LoRA adapter from ``attach_adapter`` saved like ``finetune`` saves
it. The CLI is driven through ``crab.cli.main`` with that params file.
"""

from __future__ import annotations

import dataclasses
import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import AutoTokenizer

from crab.avuie.ave import AveLabel
from crab.avuie.ave import format_answer as ave_answer
from crab.avuie.avqa import AvqaLabel
from crab.avuie.avqa import format_answer as avqa_answer
from crab.avuie.avvp import AvvpLabel
from crab.avuie.avvp import format_answer as avvp_answer
from crab.avuie.avs import AvsLabel
from crab.avuie.avs import format_answer as format_avs_answer
from crab.avuie.ref_avs import RefAvsLabel
from crab.avuie.ref_avs import format_answer as format_ref_avs_answer
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.cli import main
from crab.config import Params, SynthAudioConfig, SynthVideoConfig, load_params
from crab.datasets.media import read_binary_mask, read_class_mask
from crab.datasets.vocab_seg import AVSS_CLASSES
from crab.errors import CrabError
from crab.eval.generation import GenerationStats
from crab.eval.metrics_avs import resize_logits
from crab.eval.run_avs import predict_frame_logits, predict_frame_mask
from crab.features.extract import features
from crab.features.store import FeatureStore, audio_key, video_key
from crab.infer import (
    InferRequest,
    check_trained_model,
    infer,
    load_infer_model,
    media_features,
    read_batch,
    result_record,
)
from crab.infer import run as infer_run
from crab.models.base import base_models
from crab.models.collator import build_example
from crab.models.mask_decoder import class_map
from crab.synth.ave import ave_scene
from crab.synth.render import render_clip
from crab.tasks import TASKS, Task
from crab.train.data import encode_prompt, encode_target
from crab.train.finetune import attach_adapter
from crab.train.finetune_avs import added_token_rows, load_finetuned_avs, save_avs_weights, with_mask_decoder
from crab.train.pretrain import build_crab_model

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "samples" / "crab-examples"
SAMPLE_MP4 = SAMPLES / "ave" / "-67UNKFmRLk.mp4"
CLIP = "data/raw/ave/AVE/synthclip01.mp4"  # relative to the workspace, as AV-UIE records name media
QUESTION = "How many instruments are sounding in the video?"
NUM_FRAMES, NUM_SEGMENTS, NUM_WINDOWS, MAX_NEW_TOKENS = 3, 2, 2, 5


@dataclass(frozen=True)
class Workspace:
    root: Path
    params: Params
    params_file: Path


def _params(root: Path) -> Params:
    params = load_params(REPO / "params.yaml")
    base = params.base_models
    return dataclasses.replace(
        params,
        media=dataclasses.replace(params.media, num_frames=NUM_FRAMES, num_audio_segments=NUM_SEGMENTS,
                                  avqa_num_windows=NUM_WINDOWS, avqa_window_s=1.0),
        avuie=dataclasses.replace(params.avuie, tasks=["ave", "avqa"]),
        base_models=dataclasses.replace(
            base, out_dir=str(root / "models/base"),
            vision=dataclasses.replace(base.vision, image_size=32, patch_size=16, hidden_size=32, num_layers=2,
                                       num_heads=2, intermediate_size=64, feature_layer=1),
            audio=dataclasses.replace(base.audio, embed_dim=32, hidden_size=48, num_layers=1, num_heads=2,
                                      intermediate_size=96),
            llm=dataclasses.replace(base.llm, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
            tokenizer=dataclasses.replace(base.tokenizer, vocab_size=300, min_frequency=2),
        ),
        features=dataclasses.replace(params.features, out_dir=str(root / "data/features"), batch_size=4),
        pretrain=dataclasses.replace(params.pretrain, out_dir=str(root / "models/pretrain")),
        finetune=dataclasses.replace(
            params.finetune, out_dir=str(root / "models/finetune"), tasks=["ave", "avqa", "s4", "ms3", "avss"],
            lora=dataclasses.replace(params.finetune.lora, r=4, alpha=8),
        ),
        finetune_avs=dataclasses.replace(params.finetune_avs, out_dir=str(root / "models/finetune_avs"),
                                         tasks=["s4", "ms3"]),
        # Crab's softmax head: untrained, its argmax map shows classes (an untrained factorized head sounds nowhere)
        finetune_avss=dataclasses.replace(params.finetune_avss, out_dir=str(root / "models/finetune_avss"),
                                          tasks=["avss"], class_head="softmax"),
        evaluate=dataclasses.replace(params.evaluate, tasks=["ave", "avqa"], batch_size=2,
                                     max_new_tokens=MAX_NEW_TOKENS),
    )  # fmt: skip


def _record(task: str, index: int, instruction: str, target: str) -> AvuieRecord:
    item = f"{task}{index}"
    return AvuieRecord(
        id=f"{task}/train/{item}", task=task, split="train", dataset={"ave": "ave", "avqa": "music_avqa"}[task],
        item_id=item, source=f"ann.txt:{index}", video_id="synthclip01", media={"video": CLIP, "audio": CLIP},
        instruction=instruction, target=target, reasoning=True, label={},
    )  # fmt: skip


def _write_avuie(root: Path) -> None:
    events = ["Church bell", "Dog barking", "Helicopter", "Violin, fiddle"]
    ave = [
        _record("ave", i, TASKS[Task.AVE].instruction(),
                ave_answer(AveLabel(event, i, i + 2), f"The {event.lower()} is seen and heard in the middle."))
        for i, event in enumerate(events)
    ]  # fmt: skip
    avqa = [
        _record("avqa", i, TASKS[Task.AVQA].instruction(question=f"Is the {word} on the left louder?"),
                avqa_answer(AvqaLabel("yes"), f"The {word} on the left plays loudly."))
        for i, word in enumerate(["violin", "piano", "cello", "flute"])
    ]  # fmt: skip
    write_jsonl(root / "data/avuie/ave/train.jsonl", ave)
    write_jsonl(root / "data/avuie/avqa/train.jsonl", avqa)
    report = {"stage": "validate_avuie", "max_failure_rate": 0.25,
              "tasks": {"ave": {"quarantined": []}, "avqa": {"quarantined": []}}}  # fmt: skip
    (root / "reports/validation").mkdir(parents=True)
    (root / "reports/validation/avuie.json").write_text(json.dumps(report), encoding="utf-8")


def _render_clip(root: Path, params: Params) -> None:
    config = dataclasses.replace(params.synth.ave, duration_s=3, min_event_s=1)
    scene = ave_scene(
        np.random.default_rng(0), video_id="synthclip01", split="test", category="Church bell", config=config,
        difficulty=params.synth.difficulty, render_seed=1,
    )  # fmt: skip
    (root / CLIP).parent.mkdir(parents=True)
    render_clip(scene, SynthVideoConfig(size=32, fps=4, crf=23), SynthAudioConfig(16000), params.synth.difficulty,
                root / CLIP)  # fmt: skip


def _write_mp4(path: Path, *, with_audio: bool) -> None:
    """A 1 s 32x32 4 fps H.264 clip, with or without a 16 kHz AAC track."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=4, options={"threads": "1"})
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=16000, layout="mono") if with_audio else None
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            wave = np.sin(np.arange(16000, dtype=np.float32) / 8)[None]
            for start in range(0, 16000, 1024):
                chunk = av.AudioFrame.from_ndarray(wave[:, start : start + 1024].copy(), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(audio.encode(chunk))
            out.mux(audio.encode(None))


def _write_frame_folder(folder: Path, wav: Path) -> None:
    """An AVSBench-style folder of 4 frames (40x48, ``frames_1.png`` ...) and a 3 s 16 kHz wav beside it."""
    folder.mkdir()
    for index in range(1, 5):
        Image.fromarray(np.full((40, 48, 3), 50 * index, np.uint8)).save(folder / f"frames_{index}.png")
    samples = (np.sin(np.arange(3 * 16000) / 5) * 12000).astype("<i2")
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("infer")
    params = _params(root)
    _render_clip(root, params)
    _write_avuie(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        base_models(params)
        features(params)
        model, tokenizer = build_crab_model(params.base_models.out_dir, params.profile, seed=0)
        model.save_pretrained(params.pretrain.out_dir)  # as the pretrain stage writes its folder
        tokenizer.save_pretrained(params.pretrain.out_dir)
        save_avs_weights(with_mask_decoder(params, model, tokenizer), params.finetune_avs.out_dir,
                         added_token_rows(tokenizer))  # as finetune_avs  # fmt: skip
        save_avs_weights(with_mask_decoder(params, model, tokenizer, "finetune_avss"), params.finetune_avss.out_dir,
                         added_token_rows(tokenizer))  # as finetune_avss: the 71-class head  # fmt: skip
        attach_adapter(model, params.finetune).save_pretrained(params.finetune.out_dir)  # as finetune does
    _write_mp4(root / "silent.mp4", with_audio=False)
    _write_mp4(root / "short.mp4", with_audio=True)
    _write_frame_folder(root / "frames", root / "frames.wav")
    (root / "notes.mp4").write_text("this is not a video\n", encoding="utf-8")
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(dataclasses.asdict(params), sort_keys=False), encoding="utf-8")
    return Workspace(root, params, params_file)


@pytest.fixture
def in_workspace(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.chdir(workspace.root)
    return workspace


def _cli(workspace: Workspace, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, list[str]]:
    """Run ``crab --params <workspace params> infer ...``; returns the exit code, stdout and stderr's error lines."""
    code = main(["--params", str(workspace.params_file), "infer", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("crab: error:")]


# --------------------------------------------------------------------------------------------------
# Features: the infer path gives the features stage's tensors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["ave", "avqa"])
def test_infer_features_equal_the_features_stage_store(in_workspace: Workspace, task: str) -> None:
    params = in_workspace.params
    question = QUESTION if task == "avqa" else None
    request = InferRequest.create(task, CLIP, question=question)
    encoders = load_infer_model(params).encoders
    video, image, audio, levels = media_features(request, encoders, params)
    assert levels is None and image is None  # a video task: no image, no mask decoder levels
    store = FeatureStore(params.features.out_dir)
    record = {"task": task, "media": {"video": CLIP, "audio": CLIP}}
    stored_video, stored_audio = store.video(video_key(record)), store.audio(audio_key(record, params))
    assert video.shape == (NUM_FRAMES, (32 // 16) ** 2, 32)
    assert audio.shape[0] == (NUM_SEGMENTS if task == "ave" else NUM_WINDOWS)
    assert video.dtype == stored_video.dtype and audio.dtype == stored_audio.dtype
    assert torch.equal(video, stored_video)
    assert torch.equal(audio, stored_audio)
    if task == "avqa":  # AVQA cuts 1 s windows, AVE 1.5 s segments: different BEATs token counts
        assert audio.shape[1] != store.audio(audio_key({**record, "task": "ave"}, params)).shape[1]


# --------------------------------------------------------------------------------------------------
# Single inputs through the CLI
# --------------------------------------------------------------------------------------------------


def test_single_ave_prints_the_json_record(in_workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    code, out, errors = _cli(in_workspace, capsys, "--task", "ave", "--video", CLIP)
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert list(record) == ["task", "inputs", "prompt", "generated", "answer", "parse_ok"]
    assert record["task"] == "ave"
    assert record["inputs"] == {"video": CLIP, "audio": CLIP, "question": None}
    assert record["prompt"] == TASKS[Task.AVE].instruction()
    assert isinstance(record["generated"], str)
    # A random-init model writes no answer tags: the parser (evaluation's) finds none.
    assert record["parse_ok"] is (record["answer"] is not None)
    assert record == result_record(InferRequest.create("ave", CLIP), record["generated"])


def test_single_avqa_with_question_and_separate_audio(in_workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    code, out, errors = _cli(
        in_workspace, capsys, "--task", "avqa", "--video", "silent.mp4", "--audio", CLIP, "--question", QUESTION
    )
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert record["inputs"] == {"video": "silent.mp4", "audio": CLIP, "question": QUESTION}
    assert record["prompt"].endswith(f"Please answer this question: {QUESTION}")
    assert "<video>" in record["prompt"] and "<audio>" in record["prompt"]


@pytest.mark.parametrize(
    ("video", "reason"),
    [
        ("missing.mp4", "missing.mp4: file not found"),
        ("silent.mp4", "silent.mp4: no audio stream"),
        ("notes.mp4", "notes.mp4: not a media file / cannot open"),
    ],
)
def test_bad_input_gives_one_error_line(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, video: str, reason: str
) -> None:
    code, out, errors = _cli(in_workspace, capsys, "--task", "ave", "--video", video)
    assert code == 1 and out == ""
    assert len(errors) == 1 and errors[0].startswith(f"crab: error: {reason}")


def test_too_short_audio_is_a_clear_error(in_workspace: Workspace) -> None:
    params = dataclasses.replace(in_workspace.params, media=dataclasses.replace(in_workspace.params.media,
                                                                                num_audio_segments=100))  # fmt: skip
    (outcome,) = infer(params, [InferRequest.create("ave", "short.mp4")])
    assert isinstance(outcome, CrabError) and str(outcome).startswith("short.mp4: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "avqa", "--video", CLIP], 'task avqa needs a question (--question / "question")'),
        (["--task", "ave", "--video", CLIP, "--question", "Why?"], "task ave takes no question"),
        (
            ["--task", "avcap", "--video", CLIP],
            "task 'avcap' is not supported by crab infer (supported: ave, avvp, avqa, arig, s4, ms3, avss, ref_avs)",
        ),
        (["--video", CLIP], "--task is required with --video"),
        (["--task", "s4", "--video", CLIP, "--second", "6"], "task s4: the second must be an integer in 1..5, got 6"),
        (
            ["--task", "ave", "--video", CLIP, "--second", "2"],
            "task ave takes no second (only the mask tasks: s4, ms3, avss, ref_avs)",
        ),
        (
            ["--task", "ref_avs", "--video", CLIP],
            'task ref_avs needs a referring expression (--expression / "expression")',
        ),
        (
            ["--task", "ref_avs", "--video", CLIP, "--expression", " . "],
            'task ref_avs needs a referring expression (--expression / "expression")',
        ),
        (["--task", "s4", "--video", CLIP, "--expression", "The dog."], "task s4 takes no expression (only ref_avs)"),
        (
            ["--task", "avss", "--video", CLIP, "--second", "11"],
            "task avss: the second must be an integer in 1..10, got 11",
        ),
        (
            ["--task", "ref_avs", "--video", CLIP, "--expression", "The dog.", "--second", "11"],
            "task ref_avs: the second must be an integer in 1..10, got 11",
        ),
        (
            ["--task", "ms3", "--video", "frames"],
            'task ms3: frames is a frame folder; give its audio file (--audio / "audio")',
        ),
        ([], "give either --video (with --task) or --batch"),
    ],
)
def test_bad_requests_are_rejected(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    code, _, errors = _cli(in_workspace, capsys, *args)
    assert code == 1 and errors == [f"crab: error: {message}"]


def test_missing_trained_model_names_the_folder(workspace: Workspace, tmp_path: Path) -> None:
    params = dataclasses.replace(
        workspace.params, finetune=dataclasses.replace(workspace.params.finetune, out_dir=str(tmp_path / "ft"))
    )
    with pytest.raises(CrabError) as err:
        check_trained_model(params)
    message = str(err.value)
    assert f"{tmp_path / 'ft'} (adapter_config.json, adapter_model.safetensors)" in message
    assert "run `dvc repro` (or `make run`) first" in message and workspace.params.pretrain.out_dir not in message
    with pytest.raises(CrabError, match="no trained model"):  # checked before any input
        infer(params, [InferRequest.create("ave", "missing.mp4")])


# --------------------------------------------------------------------------------------------------
# Mask tasks: the finetune_avs model, five frames, the asked second's mask as PNG
# --------------------------------------------------------------------------------------------------


def _answer_every_prompt_with(answer: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list]:
    """Make ``crab infer``'s decoder answer every prompt with ``answer`` (the rest runs for real); returns the
    tokenizer and the answer's ids."""
    tokenizer = AutoTokenizer.from_pretrained(workspace.params.pretrain.out_dir, local_files_only=True)
    ids = encode_target(tokenizer, answer)

    def generate(model: Any, prompts: Any, **kwargs: Any) -> tuple[list[list[int]], GenerationStats]:
        return [list(ids) for _ in prompts], GenerationStats(len(prompts), len(ids) * len(prompts), 1.0, 2, len(ids))

    monkeypatch.setattr(infer_run, "generate_greedy", generate)
    return tokenizer, ids


def test_mask_task_features_are_five_frames_five_segments_and_the_levels(in_workspace: Workspace) -> None:
    params = in_workspace.params
    encoders = load_infer_model(params).encoders
    video, _, audio, levels = media_features(InferRequest.create("s4", CLIP), encoders, params)
    assert video.shape == (5, (32 // 16) ** 2, 32) and audio.shape[0] == 5  # AVSBench: 1 frame, 1 s per second
    assert levels is not None and levels.shape[0] == 5 and levels.shape[2:] == video.shape[1:]
    video, _, audio, levels = media_features(InferRequest.create("ms3", "frames", "frames.wav"), encoders, params)
    assert video.shape[0] == 4 and levels.shape[0] == 4 and audio.shape[0] == 5  # a frame folder: as it is


def test_s4_answer_with_mask_tokens_writes_the_asked_seconds_mask(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = format_avs_answer(AvsLabel(frame=1, mask="unused.png", objects=("dog",)), "A dog barks on the left.")
    tokenizer, ids = _answer_every_prompt_with(answer, in_workspace, monkeypatch)
    code, out, errors = _cli(in_workspace, capsys, "--task", "s4", "--video", CLIP, "--second", "2", "--masks", "out")
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert record["inputs"] == {"video": CLIP, "audio": CLIP, "question": None, "second": 2}
    assert record["prompt"] == TASKS[Task.S4].instruction(nth="second")
    assert record["answer"] == {"objects": ["dog"]} and record["parse_ok"] is True
    assert record["mask"] == "out/s4_synthclip01_s2.png"
    written = read_binary_mask(record["mask"])
    assert written.shape == (32, 32)  # the clip's frame size
    # the mask is the decoder's on the asked second's levels (frame 1), through the evaluation's decoding path
    model = load_infer_model(in_workspace.params, ["finetune_avs"])
    mask_model = model.mask_models["finetune_avs"]
    video, _, audio, levels = media_features(InferRequest.create("s4", CLIP), model.encoders, in_workspace.params)
    example = build_example(encode_prompt(tokenizer, record["prompt"]), [], mask_model.get_base_model().config,
                            video_features=video, audio_features=audio)  # fmt: skip
    logits = {f: predict_frame_mask(mask_model, example, list(ids), levels[f]) for f in (0, 1)}
    assert np.array_equal(written, (torch.sigmoid(resize_logits(logits[1][None], (32, 32))[0]) > 0.5).numpy())
    assert not torch.equal(logits[0], logits[1])  # the frames' levels differ, so the asked second matters


def test_ref_avs_reads_ten_frames_and_writes_the_asked_seconds_mask(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    label = RefAvsLabel(6, "unused.png", ("dog",), "The object making a sound.", "seen")
    tokenizer, ids = _answer_every_prompt_with(format_ref_avs_answer(label, "A dog barks."), in_workspace, monkeypatch)
    code, out, errors = _cli(in_workspace, capsys, "--task", "ref_avs", "--video", CLIP, "--second", "7",
                             "--expression", "The object making a sound.", "--masks", "out")  # fmt: skip
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert record["prompt"] == TASKS[Task.REF_AVS].instruction(expression="the object making a sound", nth="seventh")
    assert record["answer"] == {"objects": ["dog"]} and record["mask"] == "out/ref_avs_synthclip01_s7.png"
    model = load_infer_model(in_workspace.params, ["finetune_avs"])
    request = InferRequest.create("ref_avs", CLIP, expression="The dog.", second=7)
    video, _, audio, levels = media_features(request, model.encoders, in_workspace.params)
    assert video.shape[0] == levels.shape[0] == 10  # a Ref-AVS clip: one frame per second of ten
    mask_model = model.mask_models["finetune_avs"]
    example = build_example(encode_prompt(tokenizer, record["prompt"]), [], mask_model.get_base_model().config,
                            video_features=video, audio_features=audio)  # fmt: skip
    logits = predict_frame_mask(mask_model, example, list(ids), levels[6])
    written = read_binary_mask(record["mask"])
    assert np.array_equal(written, (torch.sigmoid(resize_logits(logits[None], written.shape)[0]) > 0.5).numpy())


def test_mask_task_without_mask_block_has_no_mask(in_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    _answer_every_prompt_with("The dog barks. <object> dog_barking </object>", in_workspace, monkeypatch)
    request = InferRequest.create("ms3", "frames", "frames.wav", second=3)
    (record,) = infer(in_workspace.params, [request], masks_dir="no_block_masks")
    assert record["inputs"]["second"] == 3 and record["prompt"] == TASKS[Task.MS3].instruction(nth="third")
    assert record["mask"] is None and record["parse_ok"] is False and record["answer"] is None
    assert not Path("no_block_masks").exists()  # nothing written without mask tokens
    plain = result_record(InferRequest.create("s4", CLIP), "The dog barks. <object> dog </object>")
    assert plain["mask"] is None and plain["parse_ok"] is False and plain["answer"] is None


def test_mask_task_needs_the_finetune_avs_model(workspace: Workspace, tmp_path: Path) -> None:
    params = dataclasses.replace(
        workspace.params, finetune_avs=dataclasses.replace(workspace.params.finetune_avs, out_dir=str(tmp_path / "f2"))
    )
    check_trained_model(params)  # the text tasks do not need it
    with pytest.raises(CrabError, match=r"f2 \(config.json, avs_weights.safetensors\); run `dvc repro`"):
        infer(params, [InferRequest.create("s4", "missing.mp4")])


# --------------------------------------------------------------------------------------------------
# AVSS: the finetune_avss model (71-class head), ten frames, the asked second's class map as PNG
# --------------------------------------------------------------------------------------------------

AVSS_ANSWER = format_avs_answer(AvsLabel(frame=6, mask="unused.png", objects=("piano",)), "A piano plays.")


def test_avss_writes_the_asked_seconds_class_map(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokenizer, ids = _answer_every_prompt_with(AVSS_ANSWER, in_workspace, monkeypatch)
    code, out, errors = _cli(in_workspace, capsys, "--task", "avss", "--video", CLIP, "--second", "7", "--masks", "out")
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert list(record) == ["task", "inputs", "prompt", "generated", "answer", "parse_ok", "mask", "classes"]
    assert record["prompt"] == TASKS[Task.AVSS].instruction(nth="seventh")
    assert record["answer"] == {"objects": ["piano"]} and record["parse_ok"] is True
    assert record["mask"] == "out/avss_synthclip01_s7.png"
    written = read_class_mask(record["mask"])
    assert written.shape == (32, 32) and 0 <= written.min() and written.max() < len(AVSS_CLASSES)
    assert record["classes"] == [AVSS_CLASSES[k] for k in np.unique(written) if k != 0]
    assert record["classes"]  # the random decoder's map is not all background: the check above means something
    # the map is the head's class map (softmax: the argmax) of its logits on the seventh second, resized to the frame
    model = load_infer_model(in_workspace.params, ["finetune_avss"])
    mask_model = model.mask_models["finetune_avss"]
    video, _, audio, levels = media_features(InferRequest.create("avss", CLIP), model.encoders, in_workspace.params)
    assert video.shape[0] == levels.shape[0] == 10  # an AVSS clip: one frame per second of ten
    example = build_example(encode_prompt(tokenizer, record["prompt"]), [], mask_model.get_base_model().config,
                            video_features=video, audio_features=audio)  # fmt: skip
    logits = predict_frame_logits(mask_model, example, list(ids), levels[6])  # (71, S, S)
    assert logits.shape[0] == len(AVSS_CLASSES)
    head = mask_model.get_base_model().config.mask_decoder_config.class_head
    assert head == "softmax"
    assert np.array_equal(written, class_map(resize_logits(logits, (32, 32))[None], head)[0].numpy())


def test_avss_needs_the_finetune_avss_model(workspace: Workspace, tmp_path: Path) -> None:
    params = dataclasses.replace(
        workspace.params,
        finetune_avss=dataclasses.replace(workspace.params.finetune_avss, out_dir=str(tmp_path / "f3")),
    )
    check_trained_model(params, ["finetune_avs"])  # the binary mask tasks do not need it
    (outcome,) = infer(params, [InferRequest.create("s4", "missing.mp4")])  # nor is it looked for: the input fails
    assert isinstance(outcome, CrabError) and str(outcome).startswith("missing.mp4: file not found")
    with pytest.raises(CrabError, match=r"f3 \(config.json, avs_weights.safetensors\); run `dvc repro`"):
        infer(params, [InferRequest.create("avss", "missing.mp4")])
    with pytest.raises(CrabError, match="the loaded model has no finetune_avss part"):  # a model loaded without it
        infer(workspace.params, [InferRequest.create("avss", str(workspace.root / CLIP))],
              load_infer_model(workspace.params, ["finetune_avs"]))  # fmt: skip


def test_mixed_batch_answers_s4_avss_and_ave(
    in_workspace: Workspace, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer_every_prompt_with(AVSS_ANSWER, in_workspace, monkeypatch)
    loaded: list[str] = []

    def load(pretrain: str, finetune: str, avs_dir: str) -> Any:
        loaded.append(avs_dir)
        return load_finetuned_avs(pretrain, finetune, avs_dir)

    monkeypatch.setattr(infer_run, "load_finetuned_avs", load)
    entries = [{"task": "s4", "video": CLIP, "second": 2}, {"task": "avss", "video": CLIP, "second": 9},
               {"task": "ave", "video": CLIP}]  # fmt: skip
    Path("mixed.json").write_text(json.dumps(entries), encoding="utf-8")
    code, out, errors = _cli(in_workspace, capsys, "--batch", "mixed.json", "--masks", "mixed")
    assert (code, errors) == (0, [])
    s4, avss, ave = (json.loads(line) for line in out.splitlines())
    assert loaded == [in_workspace.params.finetune_avs.out_dir, in_workspace.params.finetune_avss.out_dir]
    assert (s4["task"], avss["task"], ave["task"]) == ("s4", "avss", "ave")
    assert s4["mask"] == "mixed/s4_synthclip01_s2.png" and "classes" not in s4
    assert set(np.unique(read_class_mask(s4["mask"]))) <= {0, 255}  # binary: 0 / 255 grey
    assert avss["mask"] == "mixed/avss_synthclip01_s9.png" and avss["answer"] == {"objects": ["piano"]}
    assert read_class_mask(avss["mask"]).max() < len(AVSS_CLASSES) and isinstance(avss["classes"], list)
    assert "mask" not in ave and "classes" not in ave


# --------------------------------------------------------------------------------------------------
# Batch mode
# --------------------------------------------------------------------------------------------------


def test_batch_skips_the_bad_entry_and_runs_the_others(in_workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    entries = [
        {"task": "ave", "video": CLIP},
        {"task": "avqa", "video_path": CLIP, "audio_path": CLIP, "question": QUESTION},  # Crab's example.json keys
        {"task": "ave", "video": "silent.mp4"},
        {"task": "avqa", "video": CLIP},
    ]
    Path("batch.json").write_text(json.dumps(entries), encoding="utf-8")
    code, out, errors = _cli(in_workspace, capsys, "--batch", "batch.json", "--out", "results/out.jsonl")
    assert code == 1 and out == ""
    assert errors == [
        "crab: error: silent.mp4: no audio stream",
        'crab: error: batch.json[3]: task avqa needs a question (--question / "question")',
    ]
    lines = Path("results/out.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["task"], r["inputs"]["question"]) for r in records] == [("ave", None), ("avqa", QUESTION)]
    # Batched decoding gives each answer as alone (greedy, masked, left-padded).
    code, out, _ = _cli(in_workspace, capsys, "--task", "ave", "--video", CLIP)
    assert code == 0 and json.loads(out)["generated"] == records[0]["generated"]


def test_batch_without_errors_prints_json_lines(in_workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    Path("ok.json").write_text(json.dumps([{"task": "ave", "video": CLIP}] * 2), encoding="utf-8")
    code, out, errors = _cli(in_workspace, capsys, "--batch", "ok.json")
    assert (code, errors) == (0, [])
    assert len(out.splitlines()) == 2 and all(json.loads(line)["task"] == "ave" for line in out.splitlines())


def test_read_batch_reports_bad_entries_and_rejects_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    entries = [{"task": "ave", "video": "a.mp4", "audo": "x"}, 7, {"task": "ave"},
               {"task": "ave", "video": "a.mp4", "video_path": "b.mp4"}, {"task": "s4", "video": "a.mp4", "second": 0},
               {"task": "s4", "video_path": "a.mp4", "second": 4}]  # fmt: skip
    path.write_text(json.dumps(entries))
    outcomes = read_batch(path)
    assert outcomes[-1] == InferRequest.create("s4", "a.mp4", second=4)
    assert [str(o) for o in outcomes[:-1]] == [
        f"{path}[0]: unknown keys ['audo'] (allowed: audio, audio_path, exp, expression, question, second, task, video, video_path)",
        f"{path}[1]: expected an object, got int",
        f'{path}[2]: no "video" (or "video_path")',
        f'{path}[3]: both "video" and "video_path"; give one',
        f"{path}[4]: task s4: the second must be an integer in 1..5, got 0",
    ]
    path.write_text("{}")
    with pytest.raises(CrabError, match="expected a non-empty JSON list"):
        read_batch(path)
    with pytest.raises(CrabError, match="file not found"):
        read_batch(tmp_path / "absent.json")


# --------------------------------------------------------------------------------------------------
# Parsing: evaluation's parsers
# --------------------------------------------------------------------------------------------------


def test_result_record_parses_like_evaluation() -> None:
    ave = InferRequest.create("ave", "v.mp4")
    text = ave_answer(AveLabel("Church bell", 2, 7), "A church bell is seen and heard.")
    assert result_record(ave, text)["answer"] == {"event": "Church bell", "start": 2, "end": 7}
    assert result_record(ave, text)["parse_ok"] is True
    avqa = InferRequest.create("avqa", "v.mp4", "a.wav", "  Is the  piano louder? ")
    record = result_record(avqa, avqa_answer(AvqaLabel("yes"), "The piano plays loudly."))
    assert record["answer"] == {"answer": "yes"} and record["parse_ok"] is True
    assert record["inputs"] == {"video": "v.mp4", "audio": "a.wav", "question": "Is the piano louder?"}
    avvp = InferRequest.create("avvp", "v.mp4")
    label = AvvpLabel.from_spans([("Dog", 0, 4), ("Dog", 6, 10)], [("Cat", 2, 10)])
    record = result_record(avvp, avvp_answer(label, "A dog barks and a cat is seen."))
    assert record["answer"] == {
        "audio": [{"event": "Dog", "start": 0, "end": 4}, {"event": "Dog", "start": 6, "end": 10}],
        "visual": [{"event": "Cat", "start": 2, "end": 10}],
    }
    assert result_record(ave, "a bell rings")["answer"] is None
    assert result_record(ave, "a bell rings")["parse_ok"] is False


# --------------------------------------------------------------------------------------------------
# The authors' example clip (real media)
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLE_MP4.is_file(), reason="Crab example media not present")
def test_runs_on_the_authors_ave_example(in_workspace: Workspace) -> None:
    params = in_workspace.params
    model = load_infer_model(params)
    requests = [
        InferRequest.create("ave", str(SAMPLE_MP4)),  # 450x360, 25 fps, 44.1 kHz stereo AAC
        InferRequest.create("ave", str(SAMPLE_MP4), str(SAMPLE_MP4.with_suffix(".mp3"))),  # its 16 kHz mp3
    ]
    video, _, audio, _ = media_features(requests[0], model.encoders, params)
    # Two 5 s segments: 498 fbank frames -> 31 patches of 16 x 8 BEATs tokens each.
    assert video.shape == (NUM_FRAMES, 4, 32) and audio.shape == (NUM_SEGMENTS, 248, 48)  # base_models widths
    outcomes = infer(params, requests, model)
    assert all(isinstance(o, dict) and o["inputs"]["video"] == str(SAMPLE_MP4) for o in outcomes)


AVVP_SAMPLE = SAMPLES / "avvp" / "6aV6c8mY0lg.mp4"


@pytest.mark.skipif(not AVVP_SAMPLE.is_file(), reason="Crab example media not present")
def test_runs_on_the_authors_avvp_example(in_workspace: Workspace) -> None:
    params = in_workspace.params
    model = load_infer_model(params)
    request = InferRequest.create("avvp", str(AVVP_SAMPLE), str(AVVP_SAMPLE.with_suffix(".mp3")))
    video, _, audio, _ = media_features(request, model.encoders, params)
    assert video.shape[0] == NUM_FRAMES and audio.shape[0] == NUM_SEGMENTS  # AVVP cuts audio like AVE
    (outcome,) = infer(params, [request], model)
    assert isinstance(outcome, dict) and outcome["task"] == "avvp"
    assert outcome["prompt"] == TASKS[Task.AVVP].instruction()
    assert outcome["parse_ok"] == (outcome["answer"] is not None)


S4_SAMPLE = SAMPLES / "s4"


@pytest.mark.skipif(not (S4_SAMPLE / "0.jpg").is_file(), reason="Crab example media not present")
def test_runs_on_the_authors_s4_example(in_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # Crab's S4 quick start: one frame (720x540 JPEG) and its 5 s stereo wav; the mask comes out at the frame's size.
    answer = format_avs_answer(AvsLabel(frame=0, mask="unused.png", objects=("guitar",)), "A guitar plays.")
    _answer_every_prompt_with(answer, in_workspace, monkeypatch)
    request = InferRequest.create("s4", str(S4_SAMPLE / "0.jpg"), str(S4_SAMPLE / "audio.wav"))
    (record,) = infer(in_workspace.params, [request], masks_dir="sample_masks")
    assert record["answer"] == {"objects": ["guitar"]} and record["mask"] == "sample_masks/s4_0_s1.png"
    assert read_binary_mask(record["mask"]).shape == read_binary_mask(S4_SAMPLE / "0.png").shape == (540, 720)


ARIG_SAMPLE = SAMPLES / "arig"


def test_arig_reads_one_frame_as_the_image(in_workspace: Workspace, capsys: pytest.CaptureFixture) -> None:
    params = in_workspace.params
    features = media_features(InferRequest.create("arig", CLIP), load_infer_model(params).encoders, params)
    assert features.video is None and features.levels is None
    assert features.image.shape == ((32 // 16) ** 2, 32) and features.audio.shape[0] == 5  # S4's five segments
    code, out, errors = _cli(in_workspace, capsys, "--task", "arig", "--video", "frames/frames_2.png", "--audio",
                             "frames.wav")  # fmt: skip
    assert (code, errors) == (0, [])
    record = json.loads(out)
    assert record["prompt"] == TASKS[Task.ARIG].instruction() and "mask" not in record
    assert record == result_record(
        InferRequest.create("arig", "frames/frames_2.png", "frames.wav"), record["generated"]
    )
    parsed = result_record(InferRequest.create("arig", CLIP), "So the corners are <obj>(10,20)(30,40)</obj>.")
    assert parsed["answer"] == {"x0": 10, "y0": 20, "x1": 30, "y1": 40} and parsed["parse_ok"]


@pytest.mark.skipif(not (ARIG_SAMPLE / "1.jpg").is_file(), reason="Crab example media not present")
def test_runs_on_the_authors_arig_example(in_workspace: Workspace) -> None:
    (record,) = infer(in_workspace.params, [InferRequest.create("arig", str(ARIG_SAMPLE / "1.jpg"),
                                                                str(ARIG_SAMPLE / "audio.wav"))])  # fmt: skip
    assert isinstance(record, dict) and record["task"] == "arig"


def test_ref_avs_request_fills_the_expression_and_second_into_the_prompt(tmp_path: Path) -> None:
    request = InferRequest.create("ref_avs", CLIP, expression="  The object  making the loudest sound. ", second=10)
    assert request.expression == "The object making the loudest sound."
    assert request.instruction() == TASKS[Task.REF_AVS].instruction(
        expression="the object making the loudest sound", nth="tenth"
    )
    assert request.inputs() == {"video": CLIP, "audio": CLIP, "question": None, "second": 10,
                                "expression": "The object making the loudest sound."}  # fmt: skip
    batch = tmp_path / "example.json"
    batch.write_text(json.dumps([{"task": "ref_avs", "video_path": CLIP, "exp": "The dog."},
                                 {"task": "ref_avs", "video": CLIP, "exp": "a", "expression": "b"}]))  # fmt: skip
    first, second = read_batch(batch)
    assert isinstance(first, InferRequest) and first.expression == "The dog." and first.second == 1
    assert isinstance(second, CrabError) and 'both "expression" and "exp"' in str(second)


def test_mask_files_are_named_after_the_clip_not_its_frames_folder(tmp_path: Path) -> None:
    for uid in ("clipA", "clipB"):  # AVSBench-semantic's v2/{uid}/frames: every folder is called "frames"
        (tmp_path / uid / "frames").mkdir(parents=True)
    names = {
        infer_run.mask_path("out", InferRequest.create("avss", str(tmp_path / uid / "frames"), "a.wav", second=3))
        for uid in ("clipA", "clipB")
    }
    assert names == {Path("out/avss_clipA_s3.png"), Path("out/avss_clipB_s3.png")}
    assert infer_run.mask_path("m", InferRequest.create("s4", "x/clip9.mp4", second=2)) == Path("m/s4_clip9_s2.png")
