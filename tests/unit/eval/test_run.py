"""The ``evaluate`` stage end to end on a tiny workspace: contract files, baselines, parsing and metric wiring.

The workspace is built once: a hand-made AV-UIE set in the real schema (train and test splits of AVE and
AVQA, with quarantined records in both splits chosen so that leaving them in would change the baselines),
a BPE tokenizer trained on it, a seeded random tiny Crab saved as the ``pretrain`` folder with a fresh
IA-LoRA adapter saved as the ``finetune`` folder (so the real ``load_finetuned`` and the PEFT-wrapped
``generate`` run), and a feature store of seeded random features written with the store's own writer.
The AVE dataset root holds ``avsynth_scenes.jsonl`` (AV-Synth); the MUSIC-AVQA root does not (real).

Baselines are checked against values computed by hand in the comments below.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import crab.eval.run as run_module
from crab.avuie.arig import ArigLabel
from crab.avuie.arig import format_answer as arig_answer
from crab.avuie.ave import AveLabel
from crab.avuie.ave import format_answer as ave_answer
from crab.avuie.avqa import AvqaLabel
from crab.avuie.avqa import format_answer as avqa_answer
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import Params, load_params
from crab.errors import CrabError
from crab.eval.generation import GenerationStats
from crab.eval.metrics_avqa import AVQA_TYPE_KEYS
from crab.eval.run import evaluate, score_predictions
from crab.features.store import StoreWriter, audio_key, video_key
from crab.models.configuration_crab import crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration
from crab.models.base import load_tokenizer
from crab.models.tokenizer import avuie_training_texts, train_bpe_tokenizer
from crab.synth.scene import SCENES_FILENAME
from crab.tasks import TASKS, Task
from crab.train.data import encode_target
from crab.train.finetune import attach_adapter

REPO = Path(__file__).resolve().parents[3]
WIDTH = 32  # feature width of the fake encoders
NUM_FRAMES, NUM_PATCHES, NUM_CLIPS, NUM_AUDIO_TOKENS = 2, 4, 2, 6
MAX_NEW = 12

# AVE. Kept train: Bark [2,4) x2, Bark [5,7), Cat [7,9), Cat [0,1) -> majority: Bark on [2,4); per-second
# majority: background everywhere. The 4 quarantined Horse [0,10) would make both "Horse everywhere".
AVE_TRAIN = [("Bark", 2, 4), ("Bark", 2, 4), ("Bark", 5, 7), ("Cat", 7, 9), ("Cat", 0, 1)]
AVE_TRAIN_QUARANTINED = [("Horse", 0, 10)] * 4
# Kept test: Bark [3,7), Cat [0,4), Horse [5,10); the quarantined Bark [0,10) would add a video.
AVE_TEST = [("Bark", 3, 7), ("Cat", 0, 4), ("Horse", 5, 10)]
AVE_TEST_QUARANTINED = [("Bark", 0, 10)]
AVE_BASELINES = {
    "all_background": 17 / 30,  # background seconds: 6 + 6 + 5
    "majority": 15 / 30,  # Bark on [2,4): 6 + 6 + 3 seconds right
    "segment_majority": 17 / 30,  # all background
    "chance": 1 / 29,
}

AC, VL, AVX = ("Audio", "Counting"), ("Visual", "Location"), ("Audio-Visual", "Existential")
# AVQA. Kept train: Audio/Counting two, two, three; Visual/Location left x3, right; AV/Existential yes, no,
# yes -> overall majority "left" (3); per type: two, left, yes. The 4 quarantined "one" (Audio/Counting)
# would make "one" the overall and the Audio/Counting majority.
AVQA_TRAIN = [(AC, "two"), (AC, "two"), (AC, "three"), (VL, "left"), (VL, "left"), (VL, "left"), (VL, "right"),
              (AVX, "yes"), (AVX, "no"), (AVX, "yes")]  # fmt: skip
AVQA_TRAIN_QUARANTINED = [(AC, "one")] * 4
AVQA_TEST = [(AC, "two"), (AC, "three"), (VL, "left"), (AVX, "yes"), (AVX, "no")]
AVQA_TEST_QUARANTINED = [(VL, "right")]
_NONE_TYPES = dict.fromkeys(
    ["Audio/Comparative", "Visual/Counting", "Audio-Visual/Counting", "Audio-Visual/Location",
     "Audio-Visual/Comparative", "Audio-Visual/Temporal"]
)  # fmt: skip
AVQA_BASELINES = {
    # two ok, two for three wrong, left ok, yes ok, yes for no wrong
    "type_majority": {
        "accuracy": 3 / 5,
        "accuracy_per_group": {"Audio": 0.5, "Visual": 1.0, "Audio-Visual": 0.5},
        "accuracy_per_type": {"Audio/Counting": 0.5, "Visual/Location": 1.0, "Audio-Visual/Existential": 0.5},
    },
    # "left" everywhere: only the Visual/Location question
    "majority": {
        "accuracy": 1 / 5,
        "accuracy_per_group": {"Audio": 0.0, "Visual": 1.0, "Audio-Visual": 0.0},
        "accuracy_per_type": {"Audio/Counting": 0.0, "Visual/Location": 1.0, "Audio-Visual/Existential": 0.0},
    },
    # two train answers per type, every test answer among them: 1/2 everywhere
    "chance": {
        "accuracy": 0.5,
        "accuracy_per_group": {"Audio": 0.5, "Visual": 0.5, "Audio-Visual": 0.5},
        "accuracy_per_type": {"Audio/Counting": 0.5, "Visual/Location": 0.5, "Audio-Visual/Existential": 0.5},
    },
}

PREDICTION_KEYS = {"id", "task", "video_id", "instruction", "target", "prediction", "parsed", "label", "media", "correct"}
GENERATION_KEYS = {"max_new_tokens", "targets_over_max_new_tokens", "seconds", "tokens_per_s"}


@dataclass(frozen=True)
class Workspace:
    root: Path
    params: Params
    records: list[AvuieRecord]
    quarantined: set[str]


def _ave_record(split: str, index: int, label: tuple[str, int, int]) -> AvuieRecord:
    item = f"ave{index:03d}"
    media = f"data/raw/ave/AVE/{item}.mp4"
    event, start, end = label
    return AvuieRecord(
        id=f"ave/{split}/{item}", task="ave", split=split, dataset="ave", item_id=item,
        source=f"{split}Set.txt:{index}", video_id=item, media={"video": media, "audio": media},
        instruction=TASKS[Task.AVE].instruction(),
        target=ave_answer(AveLabel(event, start, end), "The clip shows something that is also heard."),
        reasoning=True, label={"event": event, "start": start, "end": end},
    )  # fmt: skip


def _avqa_record(split: str, index: int, label: tuple[tuple[str, str], str]) -> AvuieRecord:
    question_type, answer = label
    item = f"{30000 + index}"
    video = f"music{index // 2:03d}"  # two questions per video, as in MUSIC-AVQA
    media = f"data/raw/music_avqa/video/{video}.mp4"
    question = f"Question {index}: which {question_type[1].lower()} fits the {question_type[0].lower()}?"
    return AvuieRecord(
        id=f"avqa/{split}/{item}", task="avqa", split=split, dataset="music_avqa", item_id=item,
        source=f"avqa-{split}.json[{index}]", video_id=video, media={"video": media, "audio": media},
        instruction=TASKS[Task.AVQA].instruction(question=question),
        target=avqa_answer(AvqaLabel(answer), "The instruments are heard and seen."), reasoning=True,
        label={"answer": answer, "question": question, "question_type": list(question_type), "question_id": index},
    )  # fmt: skip


def _records() -> tuple[list[AvuieRecord], set[str]]:
    records, quarantined = [], set()
    for task, make, splits in (
        ("ave", _ave_record, {"train": (AVE_TRAIN, AVE_TRAIN_QUARANTINED), "test": (AVE_TEST, AVE_TEST_QUARANTINED)}),
        ("avqa", _avqa_record, {"train": (AVQA_TRAIN, AVQA_TRAIN_QUARANTINED),
                                "test": (AVQA_TEST, AVQA_TEST_QUARANTINED)}),
    ):  # fmt: skip
        for split, (kept, dropped) in splits.items():
            offset = 100 if split == "test" else 0
            for index, label in enumerate(kept + dropped):
                record = make(split, offset + index, label)
                records.append(record)
                if index >= len(kept):
                    quarantined.add(record.id)
    return records, quarantined


def _write_quarantine_report(root: Path, quarantined: set[str]) -> None:
    groups = {
        task: {
            "quarantined": [{"id": i, "reasons": ["fixture"]} for i in sorted(quarantined) if i.startswith(f"{task}/")]
        }
        for task in ("ave", "avqa")
    }
    path = root / "reports" / "validation" / "avuie.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"stage": "validate_avuie", "tasks": groups}), encoding="utf-8")


def _write_features(params: Params, records: list[AvuieRecord]) -> None:
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for record in records:
        tensors.setdefault(video_key(record), torch.randn(NUM_FRAMES, NUM_PATCHES, WIDTH, generator=generator))
        tensors.setdefault(
            audio_key(record, params), torch.randn(NUM_CLIPS, NUM_AUDIO_TOKENS, WIDTH, generator=generator)
        )
    writer = StoreWriter(params.features.out_dir, {"fixture": "evaluate tests"})
    writer.begin()
    writer.write(0, tensors)
    writer.finish([sorted(tensors)])


def _params() -> Params:
    params = load_params(REPO / "params.yaml")
    finetune = dataclasses.replace(
        params.finetune, tasks=["ave", "avqa"], adapter="ia_lora",
        lora=dataclasses.replace(params.finetune.lora, r=4, alpha=8, num_heads=3),
    )  # fmt: skip
    evaluate_cfg = dataclasses.replace(params.evaluate, split="test", batch_size=3, max_new_tokens=MAX_NEW)
    return dataclasses.replace(params, finetune=finetune, evaluate=evaluate_cfg)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("evaluate_workspace")
    params = _params()
    records, quarantined = _records()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the stage works relative to the repository root, like every stage
        for task in ("ave", "avqa"):
            for split in ("train", "test"):
                write_jsonl(
                    Path("data/avuie") / task / f"{split}.jsonl",
                    [r for r in records if r.task == task and r.split == split],
                )
        _write_quarantine_report(root, quarantined)
        _write_features(params, records)
        Path(params.datasets.ave).mkdir(parents=True)
        (Path(params.datasets.ave) / SCENES_FILENAME).write_text("", encoding="utf-8")  # AV-Synth marker
        tokenizer = train_bpe_tokenizer(
            avuie_training_texts(Path("data/avuie"), ["ave", "avqa"]).texts, vocab_size=400, min_frequency=2
        )
        ids = {m: tokenizer.convert_tokens_to_ids(f"<{m}>") for m in ("video", "audio", "image")}
        config = crab_tiny_config(
            len(tokenizer), video_token_id=ids["video"], audio_token_id=ids["audio"], image_token_id=ids["image"],
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, vision_hidden_size=WIDTH,
            audio_hidden_size=WIDTH,
        )  # fmt: skip
        torch.manual_seed(0)
        model = CrabForConditionalGeneration(config)
        model.save_pretrained(params.pretrain.out_dir)
        tokenizer.save_pretrained(params.pretrain.out_dir)
        attach_adapter(model, params.finetune).save_pretrained(params.finetune.out_dir)
    return Workspace(root, params, records, quarantined)


@pytest.fixture
def in_workspace(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """Run inside the workspace; each test starts without stage outputs."""
    monkeypatch.chdir(workspace.root)
    for folder in (run_module.PREDICTIONS_DIR, run_module.METRICS_DIR):
        for path in (workspace.root / folder).glob("*"):
            path.unlink()
    return workspace


def _kept(workspace: Workspace, task: str, split: str) -> list[AvuieRecord]:
    rows = [r for r in workspace.records if r.task == task and r.split == split and r.id not in workspace.quarantined]
    return sorted(rows, key=lambda r: r.id)


def _read_outputs(task: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in Path(f"predictions/{task}.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows, json.loads(Path(f"metrics/{task}.json").read_text(encoding="utf-8"))


def _check_common(workspace: Workspace, task: str, rows: list[dict], metrics: dict) -> None:
    kept = _kept(workspace, task, "test")
    assert [row["id"] for row in rows] == [r.id for r in kept]  # every kept record, sorted by id, no quarantined one
    assert all(set(row) == PREDICTION_KEYS for row in rows)
    assert [row["label"] for row in rows] == [r.label for r in kept]
    assert metrics["task"] == task
    assert metrics["split"] == "test"
    assert metrics["num_samples"] == len(kept)
    failures = sum(row["parsed"] is None for row in rows) / len(rows)
    assert metrics["parse_failure_rate"] == pytest.approx(failures)
    assert metrics["accuracy"] == pytest.approx(sum(float(row["correct"]) for row in rows) / len(rows))
    assert set(metrics["generation"]) == GENERATION_KEYS
    assert metrics["generation"]["max_new_tokens"] == MAX_NEW
    assert metrics["generation"]["seconds"] > 0
    tokenizer = load_tokenizer(workspace.params.pretrain.out_dir)
    longer = [len(tokenizer(r.target, add_special_tokens=False).input_ids) + 1 > MAX_NEW for r in kept]
    assert metrics["generation"]["targets_over_max_new_tokens"] == sum(longer) > 0  # 12 tokens cut every answer


def test_random_model_ave_writes_the_contract_files_with_hand_computed_baselines(in_workspace: Workspace) -> None:
    result = evaluate(in_workspace.params, "ave")
    rows, metrics = _read_outputs("ave")
    assert set(metrics) == {"task", "split", "dataset", "num_samples", "accuracy", "parse_failure_rate",
                            "baselines", "generation"}  # fmt: skip
    assert metrics["dataset"] == "AV-Synth"
    _check_common(in_workspace, "ave", rows, metrics)
    assert metrics["baselines"] == {name: {"accuracy": pytest.approx(v)} for name, v in AVE_BASELINES.items()}
    for row in rows:
        assert isinstance(row["correct"], float) and 0.0 <= row["correct"] <= 1.0
        assert row["parsed"] is None or set(row["parsed"]) == {"event", "start", "end"}
        if row["parsed"] is None:  # a parse failure is all background
            event, start, end = row["label"]["event"], row["label"]["start"], row["label"]["end"]
            assert row["correct"] == pytest.approx(1 - (end - start) / 10), event
    assert (result.num_samples, result.num_excluded, result.dataset) == (3, 1, "AV-Synth")
    assert (result.score_name, result.score) == ("accuracy", metrics["accuracy"])
    assert (result.best_baseline, result.best_baseline_score) == ("all_background", pytest.approx(17 / 30))
    assert result.generation.num_sequences == 3
    assert result.predictions_path == Path("predictions/ave.jsonl")
    router = json.loads(Path("metrics/router_ave.json").read_text(encoding="utf-8"))
    assert (router["adapter"], router["num_heads"], len(router["layers"])) == ("ia_lora", 3, 28)
    assert result.router_path == Path("metrics/router_ave.json")
    assert not list(Path("metrics").glob(".*"))  # no temp file left behind


def test_random_model_avqa_writes_the_contract_files_with_hand_computed_baselines(in_workspace: Workspace) -> None:
    result = evaluate(in_workspace.params, "avqa")
    rows, metrics = _read_outputs("avqa")
    assert set(metrics) == {"task", "split", "dataset", "num_samples", "accuracy", "accuracy_per_group",
                            "accuracy_per_type", "parse_failure_rate", "baselines", "generation"}  # fmt: skip
    assert metrics["dataset"] == "real"
    _check_common(in_workspace, "avqa", rows, metrics)
    assert set(metrics["baselines"]) == set(AVQA_BASELINES)
    for name, expected in AVQA_BASELINES.items():
        got = metrics["baselines"][name]
        assert got["accuracy"] == pytest.approx(expected["accuracy"]), name
        assert got["accuracy_per_group"] == pytest.approx(expected["accuracy_per_group"]), name
        assert got["accuracy_per_type"] == {**_NONE_TYPES, **expected["accuracy_per_type"]}, name
    assert set(metrics["accuracy_per_type"]) == set(AVQA_TYPE_KEYS)
    assert set(metrics["accuracy_per_group"]) == {"Audio", "Visual", "Audio-Visual"}
    assert all(isinstance(row["correct"], bool) for row in rows)
    assert (result.num_samples, result.num_excluded) == (5, 1)
    assert (result.score_name, result.score) == ("accuracy", metrics["accuracy"])
    assert (result.best_baseline, result.best_baseline_score) == ("type_majority", pytest.approx(0.6))


@pytest.mark.parametrize("task", ["ave", "avqa"])
def test_perfect_model_scores_one_with_no_parse_failures(
    in_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    """Generation returns each record's target ids: proves decoding, parsing and metric wiring."""
    kept = _kept(in_workspace, task, "test")
    real_generate = run_module.generate_greedy

    def perfect(model, examples, *, batch_size, max_new_tokens, eos_token_id, pad_token_id, **_):
        assert len(examples) == len(kept)
        tokenizer = perfect.tokenizer
        for example, record in zip(examples, kept, strict=True):  # the prompts come in record order
            if task == "avqa":
                assert record.label["question"] in tokenizer.decode(example.input_ids, skip_special_tokens=True)
        _, stats = real_generate(model, [examples[0]], batch_size=1, max_new_tokens=1, eos_token_id=eos_token_id,
                                 pad_token_id=pad_token_id, show_progress=False)  # fmt: skip
        answers = [encode_target(tokenizer, record.target) for record in kept]  # target + EOS
        return answers, GenerationStats(len(kept), sum(map(len, answers)), stats.seconds, batch_size, max_new_tokens)

    real_load = run_module.load_finetuned

    def load(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        perfect.tokenizer = tokenizer
        return model, tokenizer

    monkeypatch.setattr(run_module, "generate_greedy", perfect)
    monkeypatch.setattr(run_module, "load_finetuned", load)
    result = evaluate(in_workspace.params, task)
    rows, metrics = _read_outputs(task)
    assert metrics["accuracy"] == 1.0
    assert metrics["parse_failure_rate"] == 0.0
    assert (result.score, result.parse_failure_rate) == (1.0, 0.0)
    assert [row["prediction"] for row in rows] == [r.target for r in kept]
    assert all(row["correct"] in (True, 1.0) for row in rows)
    if task == "avqa":
        assert set(metrics["accuracy_per_group"].values()) == {1.0}
        assert {k for k, v in metrics["accuracy_per_type"].items() if v is not None} == {
            "Audio/Counting", "Visual/Location", "Audio-Visual/Existential"
        }  # fmt: skip
        assert [row["parsed"] for row in rows] == [{"answer": r.label["answer"]} for r in kept]
    else:
        assert [row["parsed"] for row in rows] == [r.label for r in kept]


def test_score_predictions_counts_parse_failures_as_wrong() -> None:
    records = [_ave_record("test", 0, ("Bark", 3, 7)), _ave_record("test", 1, ("Cat", 0, 4))]
    texts = ["no tags at all", "So the event is <event> Cat </event>, and the time range is <range> 0,2 </range>."]
    rows, scores = score_predictions("ave", records, texts, [r.label for r in records])
    assert [row["parsed"] for row in rows] == [None, {"event": "Cat", "start": 0, "end": 2}]
    assert [row["correct"] for row in rows] == [pytest.approx(0.6), pytest.approx(0.8)]  # all background; 2 s missed
    assert scores["accuracy"] == pytest.approx(14 / 20)
    assert scores["parse_failure_rate"] == 0.5


def test_score_predictions_rejects_a_metric_module_that_disagrees_with_the_pure_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Skewed:
        def compute(self, **kwargs):
            return {"accuracy": 1.0}

    monkeypatch.setattr(run_module, "load_metric", lambda name: Skewed())
    records = [_avqa_record("test", 0, (AC, "two"))]
    with pytest.raises(RuntimeError, match="disagrees"):
        score_predictions("avqa", records, ["<answer> three </answer>"], [records[0].label])


def test_a_task_without_a_metric_is_refused(workspace: Workspace) -> None:
    with pytest.raises(CrabError, match="no metric"):
        evaluate(workspace.params, "avcap")
    with pytest.raises(CrabError, match="unknown task"):
        evaluate(workspace.params, "nope")


def _arig_record(index: int, box: tuple[int, int, int, int]) -> AvuieRecord:
    item = f"v{index}_1"
    label = {**ArigLabel(*box).to_dict(), "object": "dog_barking", "frame": 0, "mask": f"gt/{item}.png"}
    return AvuieRecord(
        id=f"arig/test/{item}", task="arig", split="test", dataset="avsbench", item_id=item, source=f"meta.csv:{index}",
        video_id=f"v{index}", media={"image": f"frames/{item}.png", "audio": f"v{index}.wav"},
        instruction=TASKS[Task.ARIG].instruction(), target=arig_answer(ArigLabel(*box), "A dog barks."),
        reasoning=True, label=label,
    )  # fmt: skip


def test_score_predictions_arig_ciou_auc_per_frame_ciou_and_baselines() -> None:
    records = [
        _arig_record(0, (0, 0, 100, 100)),
        _arig_record(1, (100, 100, 200, 200)),
        _arig_record(2, (0, 0, 10, 10)),
    ]
    texts = [
        records[0].target,  # exact: cIoU 1
        "So the corners are <obj>(100,100)(200,150)</obj>.",  # half the box, nothing outside: cIoU 0.5
        "no box",  # a parse failure: an empty map, cIoU 0
    ]
    train = [{"x0": 0, "y0": 0, "x1": 224, "y1": 224}]
    rows, scores = score_predictions("arig", records, texts, train)
    assert [row["correct"] for row in rows] == [1.0, 0.5, 0.0]
    assert [row["parsed"] for row in rows] == [{"x0": 0, "y0": 0, "x1": 100, "y1": 100},
                                               {"x0": 100, "y0": 100, "x1": 200, "y1": 150}, None]  # fmt: skip
    assert scores["ciou"] == pytest.approx(2 / 3) and scores["mean_ciou"] == pytest.approx(0.5)
    assert scores["parse_failure_rate"] == pytest.approx(1 / 3)
    # success rate over t = 0, 0.05, ..., 1: 1 at t = 0, 2/3 up to 0.5, 1/3 above; trapezoids:
    # (1 + 2/3) / 2 * 0.05 + 9 * 0.05 * 2/3 + (2/3 + 1/3) / 2 * 0.05 + 9 * 0.05 / 3
    assert scores["auc"] == pytest.approx(0.05 * 5 / 6 + 0.3 + 0.025 + 0.15)
    assert set(scores["baselines"]) == {"centre_box", "full_frame", "prior_box"}
    assert set(scores["baselines"]["full_frame"]) == {"ciou", "auc", "mean_ciou"}
