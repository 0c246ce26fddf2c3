"""The public datasets' vocabularies, verbatim (../shared/reference/dataset-layouts.md).

AVE: 28 event categories in the order of first appearance in ``Annotations.txt`` (YapengTian/AVE-ECCV18
``data/Annotations.txt``). MUSIC-AVQA: the 9 stored ``type`` values, the 33 question templates (with
their quirks: two trailing spaces and one full-width question mark), the placeholder value sets, the
22 instruments and the 42-word answer vocabulary in the order of QA-TIGER's ``answer2idx.json``
(GeWu-Lab/MUSIC-AVQA ``data/json_update/*.json``).
"""

from __future__ import annotations

__all__ = [
    "AVE_CATEGORIES",
    "AVE_BACKGROUND",
    "AVQA_ANSWERS",
    "AVQA_INSTRUMENTS",
    "AVQA_PLACEHOLDER_VALUES",
    "AVQA_QUESTION_TYPES",
    "AVQA_TEMPLATES",
]

AVE_CATEGORIES: tuple[str, ...] = (
    "Church bell",
    "Male speech, man speaking",
    "Bark",
    "Fixed-wing aircraft, airplane",
    "Race car, auto racing",
    "Female speech, woman speaking",
    "Helicopter",
    "Violin, fiddle",
    "Flute",
    "Ukulele",
    "Frying (food)",
    "Truck",
    "Shofar",
    "Motorcycle",
    "Acoustic guitar",
    "Train horn",
    "Clock",
    "Banjo",
    "Goat",
    "Baby cry, infant cry",
    "Bus",
    "Chainsaw",
    "Cat",
    "Horse",
    "Toilet flush",
    "Rodents, rats, mice",
    "Accordion",
    "Mandolin",
)

#: Label of a 1 s segment without an audio-visual event (the 29th class of the AVE protocol).
AVE_BACKGROUND = "background"

AVQA_INSTRUMENTS: tuple[str, ...] = (
    "accordion",
    "acoustic_guitar",
    "bagpipe",
    "banjo",
    "bassoon",
    "cello",
    "clarinet",
    "congas",
    "drum",
    "electric_bass",
    "erhu",
    "flute",
    "guzheng",
    "piano",
    "pipa",
    "saxophone",
    "suona",
    "trumpet",
    "tuba",
    "ukulele",
    "violin",
    "xylophone",
)

AVQA_ANSWERS: tuple[str, ...] = (
    "two", "cello", "congas", "zero", "no", "pipa", "six", "yes", "one", "four", "three", "seven", "five",
    "ukulele", "right", "piano", "left", "accordion", "clarinet", "guzheng", "more than ten", "nine",
    "indoor", "saxophone", "drum", "violin", "middle", "outdoor", "bagpipe", "bassoon", "acoustic_guitar",
    "banjo", "electric_bass", "ten", "eight", "flute", "simultaneously", "trumpet", "erhu", "xylophone",
    "tuba", "suona",
)  # fmt: skip

#: The 9 question types as (modality, kind); stored in the JSON as the string ``json.dumps(list(t))``.
AVQA_QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"),
    ("Audio", "Comparative"),
    ("Visual", "Counting"),
    ("Visual", "Location"),
    ("Audio-Visual", "Existential"),
    ("Audio-Visual", "Counting"),
    ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"),
    ("Audio-Visual", "Temporal"),
)

#: The 33 templates by type, verbatim (note the trailing spaces and the full-width question mark).
AVQA_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Audio", "Counting"): (
        "How many musical instruments were heard throughout the video?",
        "Is there a <Object> sound?",
        "Are there <Object> and <Object> sound? ",
    ),
    ("Audio", "Comparative"): (
        "Is the <Object> louder than the <Object>?",
        "Is the <Object> more rhythmic than the <Object>?",
        "Is the <Object> playing longer than the <Object>?",
    ),
    ("Visual", "Counting"): (
        "Is there a <Object> in the entire video?",
        "Are there <Object> and <Object> instruments in the video?",
        "How many <Object> are in the entire video?",
        "How many types of musical instruments appeared in the entire video?",
    ),
    ("Visual", "Location"): (
        "What is the instrument on the <LR> of <Object>?",
        "What kind of musical instrument is it?",
        "Where is the performance?",
        "What kind of instrument is the <LRer> instrument? ",
    ),
    ("Audio-Visual", "Existential"): (
        "Is there a voiceover?",
        "Is the <Object> in the video always playing?",
        "Is this sound from the instrument in the video?",
    ),
    ("Audio-Visual", "Counting"): (
        "How many sounding <Object> in the video\uff1f",
        "How many instruments are sounding in the video?",
        "How many instruments in the video did not sound from beginning to end?",
        "How many types of musical instruments sound in the video?",
    ),
    ("Audio-Visual", "Location"): (
        "Which is the musical instrument that sounds at the same time as the <Object>?",
        "Where is the <LL> instrument?",
        "Is the <FL> sound coming from the <LR> instrument?",
        "What is the <LR> instrument of the <FL> sounding instrument?",
    ),
    ("Audio-Visual", "Comparative"): (
        "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?",
        "Is the instrument on the <LR> louder than the instrument on the <LR>?",
        "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?",
        "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
    ),
    ("Audio-Visual", "Temporal"): (
        "What is the <TH> instrument that comes in?",
        "Where is the <FL> sounding instrument?",
        "Which instrument makes sounds <BA> the <Object>?",
        "Which <Object> makes the sound <FL>?",
    ),
}

#: Values each placeholder takes in ``templ_values``.
AVQA_PLACEHOLDER_VALUES: dict[str, tuple[str, ...]] = {
    "<Object>": AVQA_INSTRUMENTS,
    "<LR>": ("left", "right", "middle"),
    "<FL>": ("first", "last"),
    "<TH>": ("first", "second", "third", "fourth", "fifth"),
    "<LL>": ("loudest", "lowest"),
    "<LRer>": ("leftest", "rightest"),
    "<BA>": ("before", "after"),
}
