"""AVQA targets for AV-UIE: label, answer format, parser and builder with explicit reasoning.

AVQA (audio-visual question answering on MUSIC-AVQA) needs spatio-temporal reasoning: which instrument is
where, which sounds first, which is louder. Crab's AV-UIE answers (README; poster "AVQA" example) describe
the performers and the order of entry, then end ``So the answer is <answer> {answer} </answer>.`` with the
answer word verbatim from the 42-word vocabulary (underscores kept: ``acoustic_guitar``).

Our reasoning is written from the AV-Synth scene: it always names the on-screen instruments and their
positions, then states the facts the question's type relies on (what is heard and when, order of entry,
loudness ranking, rhythm, durations, off-screen sounds, indoor / outdoor). It states facts, never the
conclusion, which is the annotation's answer; so the reasoning cannot contradict the label unless the
annotation contradicts its own scene. Each step has at least four sentence patterns picked with a seeded
rng; prose uses readable names ("acoustic guitar"), the tag the vocabulary word.

Without a scene (real data) and without Crab's released ``converted_label/{question_id}.txt``, and in the
"w/o ERP" ablation, the target is the bare tag ``<answer> {answer} </answer>``: MUSIC-AVQA's annotation has
no facts to reason from beyond the answer itself.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crab.avuie.schema import AvuieRecord, read_released_target
from crab.tasks import TASKS, Task

if TYPE_CHECKING:  # annotations only: keeps this module (and so crab.tasks' parsers) free of media imports
    from crab.datasets.records import AvqaRecord
    from crab.synth.scene import Interval, Scene, SceneObject

__all__ = ["AvqaLabel", "answers_match", "build_avqa", "format_answer", "parse_answer", "reasoning_from_scene"]

log = logging.getLogger(__name__)

_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class AvqaLabel:
    """The answer word of one question (the question itself lives in the record's ``label`` object)."""

    answer: str


def format_answer(label: AvqaLabel, reasoning_text: str | None) -> str:
    """The target: reasoning then ``So the answer is <answer> x </answer>.``, or ``<answer> x </answer>`` if ``None``.

    Raises:
        ValueError: an answer that cannot round-trip (empty, a tag character, a newline, extra spaces).
    """
    if not label.answer or "<" in label.answer or " ".join(label.answer.split()) != label.answer:
        raise ValueError(f"AVQA answer cannot be tagged: {label.answer!r}")
    tag = f"<answer> {label.answer} </answer>"
    if reasoning_text is None:
        return tag
    return f"{reasoning_text} So the answer is {tag}." if reasoning_text else f"So the answer is {tag}."


def parse_answer(text: str) -> AvqaLabel | None:
    """The answer in a generated text: the LAST ``<answer>...</answer>``, trimmed, inner whitespace collapsed.

    Tolerant of any surrounding text; None when the tag is missing or empty.
    """
    found = _ANSWER.findall(text)
    if not found or not found[-1].strip():
        return None
    return AvqaLabel(answer=" ".join(found[-1].split()))


def answers_match(predicted: AvqaLabel | None, reference: str) -> bool:
    """Whether a parsed answer equals the reference word, case-insensitively and whitespace-trimmed."""
    if predicted is None:
        return False
    return predicted.answer.casefold() == " ".join(reference.split()).casefold()


# --------------------------------------------------------------------------------------------------
# Reasoning
# --------------------------------------------------------------------------------------------------

_WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}


def _name(obj: SceneObject) -> str:
    return "voice-over" if obj.name == "voiceover" else obj.name.replace("_", " ")


def _the(obj: SceneObject) -> str:
    """``the violin on the left`` (position included: a scene may hold two violins)."""
    if obj.name == "voiceover":
        return "the voice-over"
    return f"the {_name(obj)} {_WHERE[obj.slot]}" if obj.slot else f"the off-screen {_name(obj)}"


def _a(obj: SceneObject) -> str:
    name = _name(obj)
    return f"{'an' if name[:1] in 'aeio' else 'a'} {name}"


def _count(n: int, noun: str) -> str:
    word = _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)
    return f"{word} {noun}{'' if n == 1 else 's'}"


def _join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def _span(intervals: Sequence[Interval]) -> str:
    return _join([f"from second {a} to second {b}" for a, b in intervals])


def _seconds(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value >= 0.1 else f"{value:.2f}"


def _sounding(scene: Scene, instruments_only: bool = False) -> list[SceneObject]:
    """Audible sources ordered by onset, then left to right; ``instruments_only`` drops the voice-over
    (MUSIC-AVQA's order, loudness, rhythm and duration questions compare instruments)."""
    order = {"left": 0, "middle": 1, "right": 2, None: 3}
    heard = (o for o in scene.objects if o.audible and not (instruments_only and o.name == "voiceover"))
    return sorted(heard, key=lambda o: (o.onset, order[o.slot], o.name))


def _positions(scene: Scene, rng: random.Random) -> str:
    seen = scene.on_screen
    if not seen:
        return rng.choice(
            ("No instrument is visible on screen.", "The frames show no instrument.",
             "There is no instrument in view.", "Nothing is being played on screen.")
        )  # fmt: skip
    items = []
    for obj in seen:
        partly = "" if obj.visible in ((), ((0, scene.duration_s),)) else f" (visible {_span(obj.visible)})"
        items.append(f"{_a(obj)} {_WHERE[obj.slot]}{partly}")
    listed, count = _join(items), _count(len(seen), "instrument")
    is_are = "is" if len(seen) == 1 else "are"
    return rng.choice(
        (f"The video shows {count}: {listed}.", f"There {is_are} {count} on screen: {listed}.",
         f"On stage, I can see {listed}.", f"In the frames, {listed} can be seen.",
         f"Looking at the video, {listed} {is_are} visible.")
    )  # fmt: skip


def _background(scene: Scene, rng: random.Random) -> str:
    where = "indoors" if scene.background == "indoor" else "outdoors"
    return rng.choice(
        (f"The performance takes place {where}.", f"The setting is {scene.background}.",
         f"The musicians play {where}.", f"The background shows an {scene.background} scene.")
    )  # fmt: skip


def _hearing(scene: Scene, rng: random.Random) -> str:
    verb = rng.choice(("plays", "sounds", "is heard", "can be heard"))
    clauses = []
    for obj in _sounding(scene):
        if obj.slot is None:
            what = "a voice-over" if obj.name == "voiceover" else f"{_a(obj)} that is not on screen"
            clauses.append(f"{what} is heard {_span(obj.audible)}")
        else:
            clauses.append(f"{_the(obj)} {verb} {_span(obj.audible)}")
    clauses += [f"{_the(o)} never makes a sound" for o in scene.on_screen if not o.audible]
    if not clauses:
        return rng.choice(
            ("No sound can be heard.", "The audio is silent.", "Nothing can be heard.", "No instrument sounds.")
        )
    return rng.choice(
        (f"In the audio, {_join(clauses)}.", f"Listening to the soundtrack, {_join(clauses)}.",
         f"As for the sound, {_join(clauses)}.", f"The audio reveals that {_join(clauses)}.")
    )  # fmt: skip


def _length(scene: Scene, rng: random.Random) -> str:
    d = scene.duration_s
    return rng.choice(
        (f"The clip lasts {d} seconds.", f"The video is {d} seconds long.",
         f"The whole clip runs from second 0 to second {d}.", f"The recording is {d} seconds long.")
    )  # fmt: skip


def _order(scene: Scene, rng: random.Random) -> str | None:
    groups: dict[int, list[str]] = {}
    for obj in _sounding(scene, instruments_only=True):
        groups.setdefault(obj.onset, []).append(_the(obj))
    if not groups:
        return None
    entries = [
        f"{names[0]} at second {t}" if len(names) == 1 else f"{_join(names)} together at second {t}"
        for t, names in sorted(groups.items())
    ]
    if len(entries) == 1:
        return rng.choice(
            (f"Everything starts at once: {entries[0]}.", f"The only entry is {entries[0]}.",
             f"All sound begins with {entries[0]}.", f"In order of entry, there is just {entries[0]}.")
        )  # fmt: skip
    return rng.choice(
        (f"The instruments come in one after another: {', then '.join(entries)}.",
         f"In order of entry: {', then '.join(entries)}.",
         f"The first to sound is {entries[0]}, followed by {_join(entries[1:])}.",
         f"Chronologically, the entries are {_join(entries, 'and finally')}.")
    )  # fmt: skip


def _ranking(objs: Sequence[SceneObject], key: Callable[[SceneObject], float]) -> list[str]:
    """Groups of equal loudness, loudest first: ``"the drum on the right"``, ``"the a and the b (equally loud)"``."""
    groups: dict[float, list[str]] = {}
    for obj in sorted(objs, key=lambda o: -key(o)):
        groups.setdefault(round(key(obj), 6), []).append(_the(obj))
    return [names[0] if len(names) == 1 else f"{_join(names)} (equally loud)" for names in groups.values()]


def _loudness(scene: Scene, rng: random.Random) -> str | None:
    ranked = _ranking(_sounding(scene, instruments_only=True), lambda o: o.loudness)
    if not ranked:
        return None
    if len(ranked) == 1:
        return rng.choice(
            (f"Only {ranked[0]} is heard, with nothing to compare its loudness to.",
             f"The single loudness level belongs to {ranked[0]}.",
             f"All of the sound comes from {ranked[0]}.", f"No other instrument competes with {ranked[0]}.")
        )  # fmt: skip
    return rng.choice(
        (f"By loudness, the loudest is {ranked[0]}, then {_join(ranked[1:], 'then')}, the quietest.",
         f"The loudest sound comes from {ranked[0]}, and the softest from {ranked[-1]}; the full order is "
         f"{_join(ranked, 'then')}.",
         f"Ranked from loud to soft: {_join(ranked, 'then')}.",
         f"Comparing volumes, {ranked[0]} is louder than {', which is louder than '.join(ranked[1:])}.")
    )  # fmt: skip


def _rhythm(scene: Scene, rng: random.Random) -> str | None:
    objs = sorted(_sounding(scene, instruments_only=True), key=lambda o: -o.rhythm)
    if not objs:
        return None
    clauses = [
        f"{_the(o)} pulses {_seconds(o.rhythm)} times per second" if o.rhythm > 0 else f"{_the(o)} holds a steady tone"
        for o in objs
    ]
    return rng.choice(
        (f"In terms of rhythm, {_join(clauses)}.", f"Rhythmically, {_join(clauses)}.",
         f"As for the beat, {_join(clauses)}.", f"Listening to the rhythm, {_join(clauses)}.")
    )  # fmt: skip


def _durations(scene: Scene, rng: random.Random) -> str | None:
    objs = sorted(_sounding(scene, instruments_only=True), key=lambda o: -o.audible_seconds)
    if not objs:
        return None
    clauses = [f"{_the(o)} plays for {_count(o.audible_seconds, 'second')}" for o in objs]
    return rng.choice(
        (f"Measured in time, {_join(clauses)}.", f"As for duration, {_join(clauses)}.",
         f"Counting the seconds, {_join(clauses)}.", f"In total, {_join(clauses)}.")
    )  # fmt: skip


def _voiceover(scene: Scene, rng: random.Random) -> str:
    voices = [o for o in scene.objects if o.name == "voiceover" and o.audible]
    if voices:
        span = _span(voices[0].audible)
        return rng.choice(
            (f"A narrator's voice is heard off screen {span}.", f"Someone speaks over the music {span}.",
             f"A voice-over can be heard {span}.", f"Besides the music, a speaking voice is audible {span}.")
        )  # fmt: skip
    return rng.choice(
        ("No narrator's voice is heard.", "Nobody speaks over the music.",
         "There is no voice-over in the audio.", "Only music can be heard, no speech.")
    )  # fmt: skip


def _sources(scene: Scene, rng: random.Random) -> str:
    offscreen = [o for o in _sounding(scene, instruments_only=True) if o.slot is None]
    if offscreen:
        listed = _join([_a(o) for o in offscreen])
        return rng.choice(
            (f"Part of the music, {listed}, comes from off screen.",
             f"The audio includes {listed} that cannot be seen.",
             f"Not every instrument heard is visible: {listed} is off screen.",
             f"Some of the music ({listed}) is not shown in the video.")
        )  # fmt: skip
    return rng.choice(
        ("Every instrument heard is on screen.", "All of the music has a visible source.",
         "No instrument is heard from off screen.", "Each instrument sound matches an instrument in the frames.")
    )  # fmt: skip


_Step = Callable[["Scene", random.Random], "str | None"]


def _steps(question_type: tuple[str, str], question: str) -> list[_Step]:
    """The facts a question relies on, from its type and wording (template placeholders included)."""
    q = question.lower()
    modality, kind = question_type
    wanted: dict[_Step, bool] = {
        _background: "performance" in q,
        _hearing: modality != "Visual",
        _voiceover: "voiceover" in q,
        _sources: "this sound" in q,
        _length: any(w in q for w in ("always", "beginning to end", "throughout")),
        _order: kind == "Temporal" or any(w in q for w in ("first", "last", "same time", "before", "after")),
        _loudness: any(w in q for w in ("loud", "lowest", "<ll>")),
        _rhythm: "rhythmic" in q,
        _durations: "longer" in q,
    }
    return [_positions] + [step for step, needed in wanted.items() if needed]


def reasoning_from_scene(scene: Scene, question_type: tuple[str, str], question: str, rng: random.Random) -> str:
    """Reasoning for one question: positions, then the facts its type relies on (module docstring)."""
    sentences = (step(scene, rng) for step in _steps(question_type, question))
    return " ".join(s for s in sentences if s)


# --------------------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------------------


def build_avqa(
    records: Sequence[AvqaRecord],
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str] | None = None,
) -> list[AvuieRecord]:
    """AV-UIE records for MUSIC-AVQA questions, in input order.

    Target per question: with ``use_reasoning``, Crab's released ``released_dir/{question_id}.txt`` when
    its tagged answer matches, else reasoning from the video's scene, else the bare tag; without
    ``use_reasoning``, the bare tag ``<answer> x </answer>``.

    Args:
        records: MUSIC-AVQA questions (any splits).
        scenes: AV-Synth scenes by video id (empty for real data).
        released_dir: Crab's ``converted_label`` folder, or None.
        use_reasoning: False for the paper's "w/o ERP" ablation.
        rng: picks the phrasings; consumed in record order.
        tally: if given, counts ``released``, ``released_mismatched``, ``scene``, ``answer_only`` and
            ``skipped`` (answers that cannot be tagged, logged as warnings).

    Returns:
        One record per question, except skipped ones.
    """
    tally = Counter() if tally is None else tally
    spec = TASKS[Task.AVQA]
    out = []
    for rec in records:
        try:
            format_answer(AvqaLabel(answer=rec.answer), None)  # raises for an untaggable answer (a gate miss)
        except ValueError as err:
            tally["skipped"] += 1
            log.warning("%s: %s; skipped", rec.source, err)
            continue
        target, reasoning = _target(rec, scenes, released_dir, use_reasoning, rng, tally)
        out.append(
            AvuieRecord.from_raw(
                Task.AVQA,
                spec.dataset,
                rec,
                instruction=spec.instruction(question=rec.question),
                target=target,
                reasoning=reasoning,
                label={
                    "answer": rec.answer,
                    "question": rec.question,
                    "question_type": list(rec.question_type),
                    "question_id": rec.question_id,
                },
            )
        )
    return out


def _target(
    rec: AvqaRecord,
    scenes: Mapping[str, Scene],
    released_dir: Path | None,
    use_reasoning: bool,
    rng: random.Random,
    tally: Counter[str],
) -> tuple[str, bool]:
    label = AvqaLabel(answer=rec.answer)
    if not use_reasoning:
        return format_answer(label, None), False
    released = read_released_target(released_dir, str(rec.question_id))
    if released is not None:
        if answers_match(parse_answer(released), rec.answer):
            tally["released"] += 1
            return released, True
        tally["released_mismatched"] += 1
        log.warning("%s: released target does not answer %r; generating one", rec.source, rec.answer)
    scene = scenes.get(rec.video_id)
    if scene is None:
        tally["answer_only"] += 1
        return format_answer(label, None), False
    tally["scene"] += 1
    question = f"{rec.question_content} {rec.question}"
    return format_answer(label, reasoning_from_scene(scene, rec.question_type, question, rng)), True
