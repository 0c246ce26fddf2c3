"""AV-Synth in the MUSIC-AVQA layout: instrument scenes, balanced template questions, native files.

Writes what the MUSIC-AVQA reader expects (dataset-layouts.md sections 3 and 9.3): ``video/{id}.mp4``
(8-digit ids), ``json_update/avqa-{train,val,test}.json`` with the 7 keys in the release's order and its
quirks (``type`` / ``templ_values`` as strings holding JSON lists, the misspelled ``anser``), plus our
``avsynth_scenes.jsonl`` side file (exact ground truth for AV-UIE reasoning) and ``answer_stats.json``.

Scenes: 1..``max_instruments`` instruments on the left / middle / right slots, visible throughout, the
same instrument sometimes on two slots; each plays throughout, comes in late, stops early, plays in the
middle or never sounds; loudness and rhythm are distinct levels (so comparisons are well defined); an
off-screen instrument and a voiceover each appear in about half the clips. Questions come from
``crab.synth.avqa_questions``; :class:`QuestionSampler` keeps every type's answer prior flat, unlike the
real release where a majority-answer baseline is strong on several types.

Every item draws its scene, questions and render seed from its own stream,
``SeedSequence(seed, spawn_key=(1, split, item))`` (``crab.synth.world.item_seeds``; dataset 1 =
music_avqa), so splits are disjoint and an item's scene does not depend on how many others there are.
Clips are rendered on all cores by ``crab.synth.render.render_clips``; the output does not depend on
scheduling.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crab.config import Params, SynthMusicAvqaConfig
from crab.datasets.vocab import AVQA_INSTRUMENTS, AVQA_QUESTION_TYPES, AVQA_TEMPLATES
from crab.errors import CrabError
from crab.synth.avqa_questions import VOICEOVER, AvqaQuestion, candidate_questions
from crab.synth.render import render_clips
from crab.synth.scene import SCENES_FILENAME, Interval, Scene, SceneObject, scene_lines
from crab.synth.world import SPLIT_INDEX, item_seeds

__all__ = [
    "ANSWER_STATS_FILENAME",
    "SPLITS",
    "AnswerStats",
    "QuestionSampler",
    "answer_stats",
    "build_split",
    "make_scene",
    "write_music_avqa",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ANSWER_STATS_FILENAME = "answer_stats.json"
_IDS_PER_SPLIT = 10_000_000  # video id = split digit + 7-digit item; question ids offset the same way

LOUDNESS_LEVELS = (0.3, 0.45, 0.7, 1.0)  # consecutive ratios >= 1.43 > LOUDNESS_RATIO
RHYTHM_LEVELS = (0.0, 1.0, 2.0, 4.0)  # pulses per second; gaps >= RHYTHM_MARGIN
DUPLICATE_PROB = 0.3  # a clip with >= 2 instruments shows one instrument twice
OFFSCREEN_PROB = 0.5  # an instrument heard but never seen
VOICEOVER_PROB = 0.5
VOICEOVER_LOUDNESS, VOICEOVER_RHYTHM = 0.7, 3.0  # a narrator: syllable-like pulses
_PATTERNS = ("throughout", "late", "early", "inner", "silent")
_PATTERN_PROBS = (0.3, 0.3, 0.15, 0.1, 0.15)


@dataclass(frozen=True)
class AnswerStats:
    """Answer prior of one question type: how often its most frequent answer occurs."""

    num_questions: int
    majority_answer: str
    majority_rate: float


def _audible(rng: np.random.Generator, duration: int, *, allow_silent: bool) -> tuple[Interval, ...]:
    """Audible seconds following one of the play patterns (whole seconds, half-open)."""
    min_duration = {"late": 2, "early": 2, "inner": 3}  # a 1-s clip can only be sounded throughout or not
    usable = [p for p in _PATTERNS if duration >= min_duration.get(p, 1) and (allow_silent or p != "silent")]
    weights = np.array([_PATTERN_PROBS[_PATTERNS.index(p)] for p in usable])
    pattern = usable[int(rng.choice(len(usable), p=weights / weights.sum()))]
    if pattern == "throughout":
        return ((0, duration),)
    if pattern == "late":
        return ((int(rng.integers(1, duration)), duration),)
    if pattern == "early":
        return ((0, int(rng.integers(1, duration))),)
    if pattern == "inner":
        start, end = sorted(int(x) for x in rng.choice(np.arange(1, duration), size=2, replace=False))
        return ((start, end),)
    return ()


def make_scene(
    rng: np.random.Generator, *, video_id: str, split: str, cfg: SynthMusicAvqaConfig, render_seed: int
) -> Scene:
    """Draw one MUSIC-AVQA scene (instruments, their play patterns, off-screen sounds, backdrop).

    Args:
        rng: the item's generator; advanced by the draw.
        video_id: the clip's 8-digit id.
        split: ``"train"``, ``"val"`` or ``"test"``.
        cfg: ``synth.music_avqa`` (duration, max instruments).
        render_seed: seed of the clip's rendering noise and jitter.

    Returns:
        The scene: on-screen instruments left to right, then the off-screen instrument and the voiceover
        (each when drawn).
    """
    duration = cfg.duration_s
    num_shown = int(rng.integers(1, cfg.max_instruments + 1))
    slots = [("left", "middle", "right")[i] for i in sorted(rng.choice(3, size=num_shown, replace=False))]
    names = [AVQA_INSTRUMENTS[i] for i in rng.choice(len(AVQA_INSTRUMENTS), size=num_shown, replace=False)]
    if num_shown >= 2 and rng.random() < DUPLICATE_PROB:
        src, dst = rng.choice(num_shown, size=2, replace=False)
        names[dst] = names[src]
    has_offscreen = rng.random() < OFFSCREEN_PROB
    loudness = rng.permutation(LOUDNESS_LEVELS)  # distinct levels for up to 4 instrument sources
    rhythm = rng.permutation(RHYTHM_LEVELS)
    objects = []
    for i, (name, slot) in enumerate(zip(names, slots, strict=True)):
        audible = _audible(rng, duration, allow_silent=True)
        objects.append(SceneObject(name, slot, ((0, duration),), audible, float(loudness[i]), float(rhythm[i])))
    if has_offscreen:
        unseen = [n for n in AVQA_INSTRUMENTS if n not in names]
        name = unseen[int(rng.integers(len(unseen)))]
        audible = _audible(rng, duration, allow_silent=False)
        objects.append(SceneObject(name, None, (), audible, float(loudness[num_shown]), float(rhythm[num_shown])))
    if rng.random() < VOICEOVER_PROB:
        audible = _audible(rng, duration, allow_silent=False)
        objects.append(SceneObject(VOICEOVER, None, (), audible, VOICEOVER_LOUDNESS, VOICEOVER_RHYTHM))
    background = "indoor" if rng.random() < 0.5 else "outdoor"
    return Scene(video_id, "music_avqa", split, duration, background, tuple(objects), render_seed)


class QuestionSampler:
    """Draws questions for the scenes of one split, keeping every type's answer prior flat.

    Per question: the next type in a per-scene random order (types repeat only once every type with
    candidates was used); then, over the (template, answer) pairs the scene offers for that type, the
    pair with the smallest "times this answer was given for the type + times this template was used"
    in the split so far (ties at random); then that pair's placeholder values uniformly. The answer
    term flattens the prior (a template whose answer is fixed by the scene, like "Is there a
    voiceover?", is skipped while its answer is ahead); the template term keeps rare-answer templates
    ("Where is the performance?") from starving. The counts make a scene's questions depend on the
    scenes before it, in item order, so sampling stays deterministic.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Counter[str]] = {t: Counter() for t in AVQA_QUESTION_TYPES}
        self.template_counts: Counter[tuple[tuple[str, str], int]] = Counter()

    def sample(self, scene: Scene, num_questions: int, rng: np.random.Generator) -> list[AvqaQuestion]:
        """Up to ``num_questions`` distinct questions about ``scene`` (fewer only if it has fewer)."""
        pools: dict[tuple[str, str], dict[int, dict[str, list[tuple[str, ...]]]]] = {}
        for q in candidate_questions(scene):
            index = AVQA_TEMPLATES[q.question_type].index(q.question_content)
            by_answer = pools.setdefault(q.question_type, {}).setdefault(index, {})
            by_answer.setdefault(q.answer, []).append(q.templ_values)
        order = [AVQA_QUESTION_TYPES[i] for i in rng.permutation(len(AVQA_QUESTION_TYPES))]
        chosen: list[AvqaQuestion] = []
        while len(chosen) < num_questions and any(pools.values()):
            for qtype in order:
                templates = pools.get(qtype)
                if len(chosen) == num_questions or not templates:
                    continue
                options = sorted((self.counts[qtype][a] + self.template_counts[qtype, i], i, a)
                                 for i, by_answer in templates.items() for a in by_answer)  # fmt: skip
                best = [(i, a) for score, i, a in options if score == options[0][0]]
                index, answer = best[int(rng.integers(len(best)))]
                by_answer = templates[index]
                values = by_answer[answer].pop(int(rng.integers(len(by_answer[answer]))))
                if not by_answer[answer]:
                    del by_answer[answer]
                if not by_answer:
                    del templates[index]
                self.counts[qtype][answer] += 1
                self.template_counts[qtype, index] += 1
                chosen.append(AvqaQuestion(qtype, AVQA_TEMPLATES[qtype][index], values, answer))
        return chosen


def answer_stats(questions: list[AvqaQuestion]) -> dict[tuple[str, str], AnswerStats]:
    """Per type (vocabulary order; types without questions left out): count and majority-answer rate."""
    stats: dict[tuple[str, str], AnswerStats] = {}
    for qtype in AVQA_QUESTION_TYPES:
        answers = Counter(q.answer for q in questions if q.question_type == qtype)
        if answers:
            top, count = max(sorted(answers.items()), key=lambda kv: kv[1])  # ties -> alphabetically first
            total = sum(answers.values())
            stats[qtype] = AnswerStats(num_questions=total, majority_answer=top, majority_rate=count / total)
    return stats


def _num_videos(cfg: SynthMusicAvqaConfig, split: str) -> int:
    return {"train": cfg.num_train_videos, "val": cfg.num_val_videos, "test": cfg.num_test_videos}[split]


def build_split(seed: int, cfg: SynthMusicAvqaConfig, split: str) -> list[tuple[Scene, list[AvqaQuestion]]]:
    """The scenes of one split and their questions, in item order (no media is written).

    Args:
        seed: ``synth.seed``.
        cfg: ``synth.music_avqa``.
        split: one of :data:`SPLITS`.

    Raises:
        CrabError: the split has more videos than its 7-digit id range holds.
    """
    split_index = SPLIT_INDEX[split]
    num_videos = _num_videos(cfg, split)
    if num_videos >= _IDS_PER_SPLIT:
        raise CrabError(f"synth.music_avqa: {num_videos} {split} videos exceed the id range ({_IDS_PER_SPLIT - 1})")
    sampler = QuestionSampler()
    items = []
    for item in range(num_videos):
        rng, render_seed = item_seeds(seed, "music_avqa", split, item)
        video_id = f"{split_index * _IDS_PER_SPLIT + item + 1:08d}"
        scene = make_scene(rng, video_id=video_id, split=split, cfg=cfg, render_seed=render_seed)
        items.append((scene, sampler.sample(scene, cfg.questions_per_video, rng)))
    return items


def _rows(items: list[tuple[Scene, list[AvqaQuestion]]], split: str) -> list[dict[str, object]]:
    """The ``avqa-{split}.json`` rows: the release's 7 keys, in its order, with its string-typed lists."""
    first_id = SPLIT_INDEX[split] * _IDS_PER_SPLIT + 1
    questions = [(scene.video_id, q) for scene, qs in items for q in qs]
    return [
        {
            "video_id": video_id,
            "question_id": first_id + k,
            "type": json.dumps(list(q.question_type)),
            "question_content": q.question_content,
            "templ_values": json.dumps(list(q.templ_values)),
            "question_deleted": 0,
            "anser": q.answer,
        }
        for k, (video_id, q) in enumerate(questions)
    ]


def _write_text(path: Path, text: str) -> None:
    """UTF-8 with LF line ends (``crab.synth.run.synthesize`` swaps the whole folder in atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _stats_entry(split: str, questions: list[AvqaQuestion]) -> dict[str, dict[str, object]]:
    """One split's ``answer_stats.json`` entry, logged type by type."""
    entry = {}
    for qtype, st in answer_stats(questions).items():
        name = "/".join(qtype)
        logger.info("music_avqa %s %s: %d questions, majority %r at %.2f", split, name, st.num_questions,
                    st.majority_answer, st.majority_rate)  # fmt: skip
        entry[name] = {**asdict(st), "majority_rate": round(st.majority_rate, 4)}
    return entry


def write_music_avqa(params: Params, root: Path) -> int:
    """Write AV-Synth's MUSIC-AVQA release under ``root`` (created if missing).

    Writes ``video/{video_id}.mp4``, ``json_update/avqa-{train,val,test}.json``, ``avsynth_scenes.jsonl``
    and ``answer_stats.json`` (per split and type: number of questions, majority answer and its rate).

    Args:
        params: the whole params; reads ``synth`` (seed, video, audio, difficulty, music_avqa).
        root: the dataset root, e.g. ``data/raw/music_avqa``.

    Returns:
        The number of clips written (over all splits).
    """
    root = Path(root)
    synth = params.synth
    splits = {split: build_split(synth.seed, synth.music_avqa, split) for split in SPLITS}
    scenes = [scene for items in splits.values() for scene, _ in items]
    (root / "video").mkdir(parents=True, exist_ok=True)
    render_clips([(s, root / "video" / f"{s.video_id}.mp4") for s in scenes], synth, "synth music_avqa")
    stats = {}
    for split, items in splits.items():
        text = json.dumps(_rows(items, split), indent=2, ensure_ascii=False) + "\n"
        _write_text(root / "json_update" / f"avqa-{split}.json", text)
        stats[split] = _stats_entry(split, [q for _, qs in items for q in qs])
    _write_text(root / SCENES_FILENAME, scene_lines(scenes))
    _write_text(root / ANSWER_STATS_FILENAME, json.dumps(stats, indent=2) + "\n")
    num_questions = sum(len(qs) for items in splits.values() for _, qs in items)
    logger.info("music_avqa: wrote %d clips and %d questions under %s", len(scenes), num_questions, root)
    return len(scenes)
