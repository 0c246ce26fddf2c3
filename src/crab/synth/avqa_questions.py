"""MUSIC-AVQA template questions over AV-Synth scenes, with answers computed exactly from the scene.

Implements the question side of the MUSIC-AVQA layout (dataset-layouts.md section 3): the 33 templates
of the 9 question types in ``crab.datasets.vocab.AVQA_TEMPLATES``, their placeholders filled from a
:class:`~crab.synth.scene.Scene`, and answers from the 42-word vocabulary. Each type's candidate function
documents what its templates *mean* here, because the public templates are vague ("the lowest
instrument", "the last sound"); a template whose answer would be ambiguous for a scene (ties, a name
that refers to two objects, values closer than a margin) is simply not a candidate for that scene.

Which candidates become questions (and so the answer priors) is decided by
``crab.synth.music_avqa.QuestionSampler``.

:func:`fill_question` (Crab's question-text rule, crab-reference section 4.1) is re-exported from the
native reader ``crab.datasets.music_avqa``, so there is one implementation; this module depends only on
that, the scene model and the vocabularies (no renderer).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from crab.datasets.music_avqa import fill_question
from crab.datasets.vocab import AVQA_ANSWERS, AVQA_INSTRUMENTS, AVQA_QUESTION_TYPES, AVQA_TEMPLATES
from crab.synth.scene import Scene, SceneObject

__all__ = [
    "ALLOWED_ANSWERS",
    "LENGTH_MARGIN_S",
    "LOUDNESS_RATIO",
    "RHYTHM_MARGIN",
    "VOICEOVER",
    "AvqaQuestion",
    "answer_for",
    "candidate_questions",
    "fill_question",
    "number_word",
]

QuestionType = tuple[str, str]
#: (template index within its type, templ_values, answer)
Candidate = tuple[int, tuple[str, ...], str]

VOICEOVER = "voiceover"  # name of the narrator object; not a musical instrument
LOUDNESS_RATIO = 1.4  # "louder" needs a gain ratio of at least this (about 3 dB)
RHYTHM_MARGIN = 1.0  # "more rhythmic" needs at least this many more pulses per second
LENGTH_MARGIN_S = 2  # "playing longer" needs at least this many more audible seconds

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_SLOTS = ("left", "middle", "right")
_INSTRUMENT_SET = frozenset(AVQA_INSTRUMENTS)
_COUNTS = frozenset(_NUMBERS) | {"more than ten"}
_YES_NO = frozenset({"yes", "no"})

#: Answers each type may have (dataset-layouts.md section 3.5, "Answers by type").
ALLOWED_ANSWERS: dict[QuestionType, frozenset[str]] = {
    ("Audio", "Counting"): _COUNTS | _YES_NO,
    ("Audio", "Comparative"): _YES_NO,
    ("Visual", "Counting"): _COUNTS | _YES_NO,
    ("Visual", "Location"): _INSTRUMENT_SET | {"indoor", "outdoor"},
    ("Audio-Visual", "Existential"): _YES_NO,
    ("Audio-Visual", "Counting"): _COUNTS,
    ("Audio-Visual", "Location"): _INSTRUMENT_SET | frozenset(_SLOTS) | _YES_NO,
    ("Audio-Visual", "Comparative"): _YES_NO,
    ("Audio-Visual", "Temporal"): _INSTRUMENT_SET | frozenset(_SLOTS) | {"simultaneously"},
}
assert all(a <= set(AVQA_ANSWERS) for a in ALLOWED_ANSWERS.values())


@dataclass(frozen=True)
class AvqaQuestion:
    """One question about one scene, in MUSIC-AVQA terms.

    Attributes:
        question_type: e.g. ``("Audio-Visual", "Temporal")``.
        question_content: the template verbatim (placeholders, quirks and all).
        templ_values: placeholder values in placeholder order.
        answer: a word of ``AVQA_ANSWERS`` allowed for the type.
    """

    question_type: QuestionType
    question_content: str
    templ_values: tuple[str, ...]
    answer: str

    @property
    def question(self) -> str:
        return fill_question(self.question_content, self.templ_values)


def number_word(n: int) -> str:
    """0..10 as words, larger counts as ``"more than ten"`` (the vocabulary's counting answers)."""
    return _NUMBERS[n] if n <= 10 else "more than ten"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _instruments(scene: Scene) -> list[SceneObject]:
    return [o for o in scene.objects if o.name != VOICEOVER]


def _sounding(scene: Scene) -> list[SceneObject]:
    """Instrument sources heard at least one second, on screen or not."""
    return [o for o in _instruments(scene) if o.audible]


def _unique(objects: list[SceneObject], pool: list[SceneObject]) -> list[SceneObject]:
    """The objects whose name no other object of ``pool`` has (so the name refers to one object)."""
    counts = Counter(o.name for o in pool)
    return [o for o in objects if counts[o.name] == 1]


def _overlap(a: SceneObject, b: SceneObject) -> bool:
    return any(min(e1, e2) > max(s1, s2) for s1, e1 in a.audible for s2, e2 in b.audible)


def _neighbour(scene: Scene, obj: SceneObject, side: str) -> SceneObject | None:
    """The nearest on-screen object on the ``left`` / ``right`` of ``obj`` (slot order)."""
    row = list(scene.on_screen)
    i = row.index(obj)
    if side == "left":
        return row[i - 1] if i > 0 else None
    return row[i + 1] if i + 1 < len(row) else None


def _extreme_onset(sources: list[SceneObject], which: str) -> SceneObject | None:
    """The source that comes in first (smallest onset) or last (largest onset); None on a tie."""
    onsets = [o.onset for o in sources]
    best = (min if which == "first" else max)(onsets, default=None)
    return sources[onsets.index(best)] if best is not None and onsets.count(best) == 1 else None


def _compare(a: float, b: float, margin: float, *, ratio: bool) -> str | None:
    """'yes' if a exceeds b by the margin, 'no' if b exceeds a by it, None when too close to call."""
    if ratio:
        return "yes" if a >= margin * b else "no" if b >= margin * a else None
    return "yes" if a - b >= margin else "no" if b - a >= margin else None


def _audio_counting(scene: Scene) -> list[Candidate]:
    """Audio / Counting: what is heard, on screen or off screen (a voiceover is not an instrument).

    0 "How many musical instruments were heard throughout the video?": number of instrument sources
      (objects) heard at least one second anywhere in the clip.
    1 "Is there a <Object> sound?": yes iff some source of that instrument is heard (any of the 22).
    2 "Are there <Object> and <Object> sound? ": yes iff both (different) instruments are heard; asked
      only for pairs with at least one instrument of the scene, so "no" is not trivially an absent pair.
    """
    heard = {o.name for o in _sounding(scene)}
    present = {o.name for o in _instruments(scene)}
    out: list[Candidate] = [(0, (), number_word(len(_sounding(scene))))]
    out += [(1, (n,), _yes_no(n in heard)) for n in AVQA_INSTRUMENTS]
    pairs = itertools.permutations(AVQA_INSTRUMENTS, 2)
    out += [(2, (a, b), _yes_no(a in heard and b in heard)) for a, b in pairs if a in present or b in present]
    return out


def _audio_comparative(scene: Scene) -> list[Candidate]:
    """Audio / Comparative between two heard instruments, each named by exactly one heard source.

    0 "Is the <Object> louder than the <Object>?": gain ratio >= LOUDNESS_RATIO either way.
    1 "Is the <Object> more rhythmic than the <Object>?": pulses per second differ by >= RHYTHM_MARGIN
      (a sustained tone, rhythm 0, is the least rhythmic).
    2 "Is the <Object> playing longer than the <Object>?": audible seconds differ by >= LENGTH_MARGIN_S.
    Pairs closer than the margin are not asked.
    """
    sounding = _sounding(scene)
    out: list[Candidate] = []
    for a, b in itertools.permutations(_unique(sounding, sounding), 2):
        answers = (
            _compare(a.loudness, b.loudness, LOUDNESS_RATIO, ratio=True),
            _compare(a.rhythm, b.rhythm, RHYTHM_MARGIN, ratio=False),
            _compare(a.audible_seconds, b.audible_seconds, LENGTH_MARGIN_S, ratio=False),
        )
        out += [(i, (a.name, b.name), ans) for i, ans in enumerate(answers) if ans is not None]
    return out


def _visual_counting(scene: Scene) -> list[Candidate]:
    """Visual / Counting over the on-screen instruments (sound plays no part).

    0 "Is there a <Object> in the entire video?": yes iff that instrument is on screen (any of the 22).
    1 "Are there <Object> and <Object> instruments in the video?": yes iff both are on screen; pairs with at
      least one instrument of the scene (on or off screen).
    2 "How many <Object> are in the entire video?": number of on-screen objects of that instrument
      (0..3; the same instrument can stand on two slots).
    3 "How many types of musical instruments appeared in the entire video?": distinct on-screen names.
    """
    seen = Counter(o.name for o in scene.on_screen)
    present = {o.name for o in _instruments(scene)}
    out: list[Candidate] = [(0, (n,), _yes_no(n in seen)) for n in AVQA_INSTRUMENTS]
    pairs = itertools.permutations(AVQA_INSTRUMENTS, 2)
    out += [(1, (a, b), _yes_no(a in seen and b in seen)) for a, b in pairs if a in present or b in present]
    out += [(2, (n,), number_word(seen[n])) for n in AVQA_INSTRUMENTS]
    out.append((3, (), number_word(len(seen))))
    return out


def _visual_location(scene: Scene) -> list[Candidate]:
    """Visual / Location.

    0 "What is the instrument on the <LR> of <Object>?": the nearest on-screen instrument on that side
      (left/right) of the named one, which must be the only on-screen object of its name.
    1 "What kind of musical instrument is it?": asked only when exactly one instrument is on screen.
    2 "Where is the performance?": the backdrop, indoor or outdoor.
    3 "What kind of instrument is the <LRer> instrument? ": the leftmost / rightmost of >= 2 on screen.
    """
    row = list(scene.on_screen)
    out: list[Candidate] = []
    for obj in _unique(row, row):
        for side in ("left", "right"):
            other = _neighbour(scene, obj, side)
            if other is not None:
                out.append((0, (side, obj.name), other.name))
    if len(row) == 1:
        out.append((1, (), row[0].name))
    out.append((2, (), scene.background))
    if len(row) >= 2:
        out += [(3, ("leftest",), row[0].name), (3, ("rightest",), row[-1].name)]
    return out


def _av_existential(scene: Scene) -> list[Candidate]:
    """Audio-Visual / Existential.

    0 "Is there a voiceover?": yes iff a voiceover (off-screen narrator) is heard.
    1 "Is the <Object> in the video always playing?": the named on-screen instrument (the only one of its
      name) sounds in every second of the clip.
    2 "Is this sound from the instrument in the video?": asked when some instrument is heard; yes iff
      every heard instrument is on screen (no off-screen instrument sound).
    """
    out: list[Candidate] = [(0, (), _yes_no(any(o.name == VOICEOVER and o.audible for o in scene.objects)))]
    row = list(scene.on_screen)
    out += [(1, (o.name,), _yes_no(o.audible_seconds == scene.duration_s)) for o in _unique(row, row)]
    sounding = _sounding(scene)
    if sounding:
        out.append((2, (), _yes_no(all(o.slot is not None for o in sounding))))
    return out


def _av_counting(scene: Scene) -> list[Candidate]:
    """Audio-Visual / Counting over on-screen instruments and their sound.

    0 "How many sounding <Object> in the video？": on-screen objects of that instrument that sound at all
      (an off-screen source of that name does not count).
    1 "How many instruments are sounding in the video?": on-screen objects that sound at all.
    2 "How many instruments in the video did not sound from beginning to end?": on-screen objects that are
      silent in at least one second (late starters, early stoppers and never-sounding ones).
    3 "How many types of musical instruments sound in the video?": distinct names of sounding on-screen ones.
    """
    row = list(scene.on_screen)
    sounding = [o for o in row if o.audible]
    per_name = Counter(o.name for o in sounding)
    out: list[Candidate] = [(0, (n,), number_word(per_name[n])) for n in AVQA_INSTRUMENTS]
    out.append((1, (), number_word(len(sounding))))
    out.append((2, (), number_word(sum(o.audible_seconds < scene.duration_s for o in row))))
    out.append((3, (), number_word(len(per_name))))
    return out


def _av_location(scene: Scene) -> list[Candidate]:
    """Audio-Visual / Location; "first"/"last" sounding = smallest/largest onset over all heard instruments.

    0 "Which is the musical instrument that sounds at the same time as the <Object>?": the named on-screen
      instrument (the only object of its name) shares >= 1 audible second with sources of exactly one
      other name; that name is the answer.
    1 "Where is the <LL> instrument?": slot of the loudest / "lowest" (= quietest: the scene model has
      loudness, not pitch) heard instrument, which must be on screen and beat the runner-up by
      LOUDNESS_RATIO.
    2 "Is the <FL> sound coming from the <LR> instrument?": the first/last source to come in (no tie)
      sits at the occupied slot <LR>; an off-screen first/last source makes every slot "no".
    3 "What is the <LR> instrument of the <FL> sounding instrument?": the on-screen neighbour on the
      left/right of the first/last source to come in (which must be on screen).
    """
    row, instruments, sounding = list(scene.on_screen), _instruments(scene), _sounding(scene)
    out: list[Candidate] = []
    for obj in _unique([o for o in row if o.audible], instruments):
        names = {o.name for o in sounding if o is not obj and _overlap(o, obj)}
        if len(names) == 1:
            out.append((0, (obj.name,), names.pop()))
    ranked = sorted(sounding, key=lambda o: o.loudness)
    for word, order in (("loudest", ranked[::-1]), ("lowest", ranked)):
        gains = sorted(o.loudness for o in order[:2])  # the extreme one and the runner-up
        if order and order[0].slot is not None and (len(gains) == 1 or gains[1] >= LOUDNESS_RATIO * gains[0]):
            out.append((1, (word,), order[0].slot))
    for which in ("first", "last"):
        src = _extreme_onset(sounding, which)
        if src is None:
            continue
        out += [(2, (which, o.slot), _yes_no(o.slot == src.slot)) for o in row]
        if src.slot is not None:
            for side in ("left", "right"):
                other = _neighbour(scene, src, side)
                if other is not None:
                    out.append((3, (side, which), other.name))
    return out


def _av_comparative(scene: Scene) -> list[Candidate]:
    """Audio-Visual / Comparative between two sounding on-screen instruments at different slots.

    0 / 2 "... more rhythmic than ...": pulses per second differ by >= RHYTHM_MARGIN.
    1 / 3 "... louder than ...": gain ratio >= LOUDNESS_RATIO. Templates 2 and 3 also name the
      instruments (the names are those at the slots). Silent instruments and close pairs are not asked.
    """
    out: list[Candidate] = []
    for a, b in itertools.permutations([o for o in scene.on_screen if o.audible], 2):
        rhythm = _compare(a.rhythm, b.rhythm, RHYTHM_MARGIN, ratio=False)
        louder = _compare(a.loudness, b.loudness, LOUDNESS_RATIO, ratio=True)
        for i, ans in ((0, rhythm), (1, louder)):
            if ans is not None:
                out.append((i, (a.slot, b.slot), ans))
                out.append((i + 2, (a.name, a.slot, b.name, b.slot), ans))
    return out


def _av_temporal(scene: Scene) -> list[Candidate]:
    """Audio-Visual / Temporal over the onsets (first audible second) of all heard instruments.

    0 "What is the <TH> instrument that comes in?": the k-th source in onset order, asked only if its
      onset is shared with no other source (with <= 4 sources, "fifth" never occurs).
    1 "Where is the <FL> sounding instrument?": slot of the first/last source to come in (no tie, on screen).
    2 "Which instrument makes sounds <BA> the <Object>?": the named source (only object of its name) and
      the others: "before" = the source(s) with the latest onset earlier than its onset, "after" = the
      earliest later onset, answered when they share one name; "simultaneously" when every other
      source comes in at the same second as it.
    3 "Which <Object> makes the sound <FL>?": of >= 2 sounding on-screen objects of one instrument, the
      slot of the one that comes in first/last (no tie).
    """
    sounding = sorted(_sounding(scene), key=lambda o: o.onset)
    onsets = Counter(o.onset for o in sounding)
    out: list[Candidate] = []
    for word, obj in zip(("first", "second", "third", "fourth", "fifth"), sounding, strict=False):
        if onsets[obj.onset] == 1:
            out.append((0, (word,), obj.name))
    for which in ("first", "last"):
        src = _extreme_onset(sounding, which)
        if src is not None and src.slot is not None:
            out.append((1, (which,), src.slot))
    for obj in _unique(sounding, _instruments(scene)):
        others = [o for o in sounding if o is not obj]
        if others and all(o.onset == obj.onset for o in others):
            out += [(2, ("before", obj.name), "simultaneously"), (2, ("after", obj.name), "simultaneously")]
            continue
        for word, side in (("before", [o for o in others if o.onset < obj.onset]),
                           ("after", [o for o in others if o.onset > obj.onset])):  # fmt: skip
            if side:
                nearest = max(o.onset for o in side) if word == "before" else min(o.onset for o in side)
                names = {o.name for o in side if o.onset == nearest}
                if len(names) == 1:
                    out.append((2, (word, obj.name), names.pop()))
    groups = Counter(o.name for o in scene.on_screen if o.audible)
    for name in (n for n, c in groups.items() if c >= 2):
        same = [o for o in scene.on_screen if o.name == name and o.audible]
        for which in ("first", "last"):
            src = _extreme_onset(same, which)
            if src is not None:
                out.append((3, (name, which), src.slot))
    return out


_CANDIDATES = {
    ("Audio", "Counting"): _audio_counting,
    ("Audio", "Comparative"): _audio_comparative,
    ("Visual", "Counting"): _visual_counting,
    ("Visual", "Location"): _visual_location,
    ("Audio-Visual", "Existential"): _av_existential,
    ("Audio-Visual", "Counting"): _av_counting,
    ("Audio-Visual", "Location"): _av_location,
    ("Audio-Visual", "Comparative"): _av_comparative,
    ("Audio-Visual", "Temporal"): _av_temporal,
}
assert tuple(_CANDIDATES) == AVQA_QUESTION_TYPES


def candidate_questions(scene: Scene) -> list[AvqaQuestion]:
    """Every question this module can ask about ``scene``, with its exact answer, in a fixed order."""
    return [
        AvqaQuestion(qtype, AVQA_TEMPLATES[qtype][i], values, answer)
        for qtype, make in _CANDIDATES.items()
        for i, values, answer in make(scene)
    ]


def answer_for(scene: Scene, question_content: str, templ_values: list[str] | tuple[str, ...]) -> str | None:
    """The exact answer of one filled template for ``scene``, or None if it is not asked of this scene."""
    for q in candidate_questions(scene):
        if q.question_content == question_content and q.templ_values == tuple(templ_values):
            return q.answer
    return None
