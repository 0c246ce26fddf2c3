"""The ``evaluate`` stage scores AVVP: parsing, the ``avvp_f`` module checked against the pure function, the
per-video ``correct`` column, the three trivial baselines and the headline score.

``avvp_f``'s own rules are tested in ``test_metrics_avvp.py``; here every expected number is worked out by
hand on two test videos (A and C below), so the wiring (which labels, which predictions, which keys) is
what can fail. Segment F of a class row is ``2TP / (2TP + FP + FN)``; an event matches at IoU >= 0.5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import crab.eval.run as run_module
from crab.avuie.avvp import AvvpLabel, format_answer
from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.config import load_params
from crab.eval.baselines_avvp import avvp_baselines, segment_prior_label
from crab.eval.generation import GenerationStats
from crab.eval.run import _RESULT_KEYS, EVALUATED_TASKS, HEADLINE_SCORES, evaluate, score_predictions
from crab.tasks import TASKS, Task

REPO = Path(__file__).resolve().parents[3]

F_KEYS = {f"{level}_{score}" for level in ("segment", "event")
          for score in ("audio", "visual", "audio_visual", "type_av", "event_av")}  # fmt: skip

# Test video A: Speech heard [0,4), a Dog heard and seen [2,10). Test video C: Speech heard all clip, nothing seen.
VIDEO_A = {
    "audio": [{"event": "Speech", "start": 0, "end": 4}, {"event": "Dog", "start": 2, "end": 10}],
    "visual": [{"event": "Dog", "start": 2, "end": 10}],
}
VIDEO_C = {"audio": [{"event": "Speech", "start": 0, "end": 10}], "visual": []}
TEST = [VIDEO_A, VIDEO_C]

# Train: audio classes per video {Speech}, {Speech, Dog}, {Car} -> Speech (2 videos); visual {Dog}, {Dog}, {Car}
# -> Dog. Per-second votes (need >= 2 of 3): audio Speech 2 on [0,6); visual Dog 2 on [0,3); all else 1.
TRAIN = [
    {"audio": [{"event": "Speech", "start": 0, "end": 10}], "visual": [{"event": "Dog", "start": 0, "end": 5}]},
    {
        "audio": [{"event": "Speech", "start": 0, "end": 6}, {"event": "Dog", "start": 4, "end": 10}],
        "visual": [{"event": "Dog", "start": 0, "end": 3}],
    },
    {"audio": [{"event": "Car", "start": 0, "end": 10}], "visual": [{"event": "Car", "start": 0, "end": 10}]},
]


def _f(audio: float, visual: float, audio_visual: float, event_av: float, level: str) -> dict[str, float]:
    return {
        f"{level}_audio": audio,
        f"{level}_visual": visual,
        f"{level}_audio_visual": audio_visual,
        f"{level}_type_av": (audio + visual + audio_visual) / 3,
        f"{level}_event_av": event_av,
    }


# The baselines on [A, C], per level the mean over the two videos of (audio, visual, audio-visual, Event@AV).
BASELINES = {
    # A: every row has truth and no prediction -> 0. C: audio Speech missed -> 0; nothing to see -> visual and
    # AV 1.0; pooled Speech 0. Same at event level.
    "empty": {**_f(0.0, 0.5, 0.5, 0.0, "segment"), **_f(0.0, 0.5, 0.5, 0.0, "event")},
    # Audio Speech (0,10), visual Dog (0,10); predicted AV is empty (no class in both).
    # A segment: audio Speech TP4 FP6 -> 8/14, Dog missed -> 0: 2/7; visual Dog TP8 FP2 -> 8/9; AV Dog missed
    #   -> 0; pooled Speech 4/7, Dog TP8 FP2 FN8 -> 16/26: (4/7 + 8/13) / 2 = 54/91.
    # C segment: audio 1; visual Dog FP10 -> 0; AV both empty -> 1; pooled (1 + 0) / 2.
    # A event: Speech (0,10) vs (0,4) IoU 0.4 -> FP + FN, Dog missed: audio 0; visual IoU 0.8 -> 1; AV 0;
    #   pooled Speech 0, Dog TP1 FN1 -> 2/3: 1/3. C event: audio 1, visual 0, AV 1, pooled 1/2.
    "prior_classes": {
        **_f((2 / 7 + 1) / 2, (8 / 9 + 0) / 2, 0.5, (54 / 91 + 0.5) / 2, "segment"),
        **_f(0.5, 0.5, 0.5, (1 / 3 + 0.5) / 2, "event"),
    },
    # Audio Speech (0,6), visual Dog (0,3).
    # A segment: Speech TP4 FP2 -> 0.8, Dog 0: 0.4; visual Dog TP1 FP2 FN7 -> 2/11; AV 0; pooled Speech 0.8, Dog
    #   TP1 FP2 FN15 -> 2/19: 43/95. C segment: Speech TP6 FN4 -> 0.75; visual FP3 -> 0; AV 1; pooled 0.75/2.
    # A event: Speech IoU 4/6 -> 1, Dog missed: 0.5; visual IoU 1/10 -> 0; AV 0; pooled Speech 1, Dog 0: 1/2.
    # C event: Speech IoU 0.6 -> 1; visual 0; AV 1; pooled 1/2.
    "segment_prior": {
        **_f((0.4 + 0.75) / 2, (2 / 11 + 0) / 2, 0.5, (43 / 95 + 0.375) / 2, "segment"),
        **_f(0.75, 0.0, 0.5, 0.5, "event"),
    },
}

# The model's answer for A: Speech heard (0,2) only, Dog heard (2,10), Dog seen from 4 on.
ANSWER_A = "Therefore, visual and audio events are: <visual_event>Dog,(4 10)</visual_event> and " \
           "<audio_event>Speech,(0 2); Dog,(2 10)</audio_event>"  # fmt: skip
PARSED_A = {
    "audio": [{"event": "Speech", "start": 0, "end": 2}, {"event": "Dog", "start": 2, "end": 10}],
    "visual": [{"event": "Dog", "start": 4, "end": 10}],
}
EMPTY_ANSWER = "Nothing is seen or heard: <visual_event></visual_event> and <audio_event></audio_event>"
# A segment: audio Speech TP2 FN2 -> 4/6, Dog 1: 5/6; visual Dog TP6 FN2 -> 6/7; AV Dog [4,10) vs [2,10) -> 6/7;
#   pooled Speech 2/3, Dog TP14 FN2 -> 28/30: (2/3 + 14/15) / 2 = 4/5.
# A event: Speech IoU 2/4 -> match; Dog exact; visual and AV IoU 6/8: all 1.
# C (a parse failure or an empty answer) scores as the empty baseline: 0, 1, 1, 0 at both levels.
SEGMENT_EVENT_AV_A = 4 / 5
MODEL = {
    **_f((5 / 6 + 0) / 2, (6 / 7 + 1) / 2, (6 / 7 + 1) / 2, (SEGMENT_EVENT_AV_A + 0) / 2, "segment"),
    **_f(0.5, 1.0, 1.0, 0.5, "event"),
}


def _record(split: str, index: int, label: dict) -> AvuieRecord:
    item = f"llp{index:03d}"
    media = f"data/raw/llp/LLP_dataset/video/{item}.mp4"
    return AvuieRecord(
        id=f"avvp/{split}/{item}", task="avvp", split=split, dataset="llp", item_id=item,
        source=f"AVVP_eval_audio.csv:{index}", video_id=item, media={"video": media, "audio": media},
        instruction=TASKS[Task.AVVP].instruction(), target=format_answer(AvvpLabel.from_dict(label), None),
        reasoning=False, label=label,
    )  # fmt: skip


def _approx(expected: dict[str, float]) -> dict:
    return {key: pytest.approx(value) for key, value in expected.items()}


def test_avvp_is_evaluated_with_its_module_and_keeps_the_ten_f_values() -> None:
    assert EVALUATED_TASKS[Task.AVVP] == "avvp_f"
    assert set(_RESULT_KEYS[Task.AVVP]) == F_KEYS
    assert HEADLINE_SCORES[Task.AVVP] == "segment_event_av"


def test_baselines_fitted_on_train_score_the_hand_computed_values() -> None:
    assert segment_prior_label(TRAIN) == {
        "audio": [{"event": "Speech", "start": 0, "end": 6}],
        "visual": [{"event": "Dog", "start": 0, "end": 3}],
    }
    got = avvp_baselines(TRAIN, TEST)
    assert set(got) == set(BASELINES)
    for name, expected in BASELINES.items():
        assert {k: got[name][k] for k in F_KEYS} == _approx(expected), name
        assert (got[name]["num_videos"], got[name]["num_parse_failures"]) == (2, 0), name


def test_segment_prior_needs_more_than_half_of_the_train_videos() -> None:
    # Speech in 1 of 2 videos is exactly half: not a majority, so the vote is empty (and scores as "empty").
    train = [VIDEO_C, {"audio": [], "visual": []}]
    assert segment_prior_label(train) == {"audio": [], "visual": []}
    got = avvp_baselines(train, TEST)
    assert got["segment_prior"] == got["empty"]


def test_baselines_refuse_empty_train_labels() -> None:
    with pytest.raises(ValueError, match="AVVP train labels are empty"):
        avvp_baselines([], TEST)
    with pytest.raises(ValueError, match="AVVP train labels are empty"):
        score_predictions("avvp", [_record("test", 0, VIDEO_A)], [ANSWER_A], [])


def test_score_predictions_scores_the_model_per_video_and_the_baselines() -> None:
    records = [_record("test", 0, VIDEO_A), _record("test", 1, VIDEO_C)]
    rows, scores = score_predictions("avvp", records, [ANSWER_A, "I hear speech."], TRAIN)
    assert set(scores) == F_KEYS | {"parse_failure_rate", "baselines"}
    assert {k: scores[k] for k in F_KEYS} == _approx(MODEL)
    assert scores["parse_failure_rate"] == 0.5
    assert scores["baselines"] == {name: _approx(expected) for name, expected in BASELINES.items()}
    assert [row["parsed"] for row in rows] == [PARSED_A, None]
    assert [row["label"] for row in rows] == TEST
    # Per video: its segment-level Event@AV, whose mean over videos is the reported segment_event_av.
    assert [row["correct"] for row in rows] == [pytest.approx(SEGMENT_EVENT_AV_A), 0.0]
    assert sum(row["correct"] for row in rows) / 2 == pytest.approx(scores["segment_event_av"])
    json.dumps(rows)  # the rows are written as JSON lines


def test_a_parse_failure_scores_as_an_empty_answer_but_is_counted() -> None:
    records = [_record("test", 0, VIDEO_A), _record("test", 1, VIDEO_C)]
    _, failed = score_predictions("avvp", records, [ANSWER_A, "<audio_event>Speech</audio_event>"], TRAIN)
    rows, empty = score_predictions("avvp", records, [ANSWER_A, EMPTY_ANSWER], TRAIN)
    assert rows[1]["parsed"] == {"audio": [], "visual": []}
    assert {k: failed[k] for k in F_KEYS} == {k: empty[k] for k in F_KEYS}
    assert (failed["parse_failure_rate"], empty["parse_failure_rate"]) == (0.5, 0.0)


def test_the_model_is_scored_by_the_evaluate_module(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, real_load = [], run_module.load_metric

    def spy(name: str):
        loaded.append(name)
        return real_load(name)

    monkeypatch.setattr(run_module, "load_metric", spy)
    records = [_record("test", 0, VIDEO_A), _record("test", 1, VIDEO_C)]
    _, scores = score_predictions("avvp", records, [ANSWER_A, "no tags"], TRAIN)
    assert loaded == ["avvp_f"]
    assert scores["segment_event_av"] == pytest.approx(MODEL["segment_event_av"])


def test_a_module_that_disagrees_with_the_pure_function_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Skewed:
        """The right result except one number, as an Arrow round-trip bug might give."""

        def compute(self, *, predictions, references):
            from crab.eval.metrics_avvp import avvp_f

            return {**avvp_f(predictions, references), "event_visual": 0.25}

    monkeypatch.setattr(run_module, "load_metric", lambda name: Skewed())
    records = [_record("test", 0, VIDEO_A)]
    with pytest.raises(RuntimeError, match="avvp_f module disagrees"):
        score_predictions("avvp", records, [ANSWER_A], TRAIN)


def test_a_reference_outside_the_llp_classes_is_refused() -> None:
    records = [_record("test", 0, {"audio": [{"event": "Meow", "start": 0, "end": 2}], "visual": []})]
    with pytest.raises(ValueError, match="not in the class list"):
        score_predictions("avvp", records, [ANSWER_A], TRAIN)


def test_the_stage_reports_segment_event_av_as_its_headline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``evaluate`` end to end with the model, prompts and decoding faked: files, headline and best baseline."""
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml")
    tests = [_record("test", 0, VIDEO_A), _record("test", 1, VIDEO_C)]
    words = sorted(len(t.target.split()) + 1 for t in tests)  # + EOS
    assert words[0] < words[1]
    # A limit between the two answers' lengths: exactly the longer one is reported as cut.
    evaluate_cfg = dataclasses.replace(params.evaluate, split="test", max_new_tokens=words[0])
    params = dataclasses.replace(params, evaluate=evaluate_cfg)
    write_jsonl(Path("data/avuie/avvp/test.jsonl"), tests)
    write_jsonl(Path("data/avuie/avvp/train.jsonl"), [_record("train", i, label) for i, label in enumerate(TRAIN)])
    report = Path("reports/validation/avuie.json")
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"stage": "validate_avuie", "tasks": {}}), encoding="utf-8")

    answers = {0: ANSWER_A, 1: "no tags"}  # answer "ids" are the record indices
    model = SimpleNamespace(
        to=lambda device: model, eval=lambda: model, get_base_model=lambda: SimpleNamespace(config=None)
    )

    class WordTokenizer(SimpleNamespace):  # one token per word
        def __call__(self, texts: list[str], add_special_tokens: bool) -> SimpleNamespace:
            return SimpleNamespace(input_ids=[text.split() for text in texts])

    tokenizer = WordTokenizer(
        eos_token_id=2, pad_token_id=0, batch_decode=lambda ids, skip_special_tokens: [answers[i[0]] for i in ids]
    )
    router = SimpleNamespace(summary=lambda task: {"task": task, "layers": []})
    monkeypatch.setattr(run_module, "load_finetuned", lambda *folders: (model, tokenizer))
    monkeypatch.setattr(run_module, "use_task_adapter", lambda model, task: None)
    monkeypatch.setattr(run_module, "FeatureStore", lambda folder: None)
    monkeypatch.setattr(
        run_module, "AvuieDataset",
        lambda records, *args, **kwargs: SimpleNamespace(items=[SimpleNamespace(prompt_ids=[1]) for _ in records]),
    )  # fmt: skip
    monkeypatch.setattr(run_module, "record_router_stats", lambda *args, **kwargs: contextlib.nullcontext(router))
    monkeypatch.setattr(
        run_module, "generate_greedy",
        lambda model, prompts, **kwargs: ([[0], [1]], GenerationStats(2, 10, 1.0, 2, 8)),
    )  # fmt: skip

    result = evaluate(params, "avvp")
    metrics = json.loads(Path("metrics/avvp.json").read_text(encoding="utf-8"))
    assert set(metrics) == F_KEYS | {"task", "split", "dataset", "num_samples", "parse_failure_rate", "baselines",
                                     "generation"}  # fmt: skip
    assert {k: metrics[k] for k in F_KEYS} == _approx(MODEL)
    assert metrics["generation"]["targets_over_max_new_tokens"] == 1
    assert metrics["baselines"] == {name: _approx(expected) for name, expected in BASELINES.items()}
    assert (result.task, result.num_samples, result.parse_failure_rate) == ("avvp", 2, 0.5)
    assert (result.score_name, result.score) == ("segment_event_av", pytest.approx(0.4))
    # segment_event_av: empty 0, prior_classes (54/91 + 1/2) / 2 ~ 0.547, segment_prior (43/95 + 3/8) / 2 ~ 0.414.
    assert (result.best_baseline, result.best_baseline_score) == (
        "prior_classes", pytest.approx((54 / 91 + 0.5) / 2)
    )  # fmt: skip
    rows = [json.loads(line) for line in Path("predictions/avvp.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["parsed"] for row in rows] == [PARSED_A, None]
    assert json.loads(Path("metrics/router_avvp.json").read_text(encoding="utf-8"))["task"] == "avvp"
