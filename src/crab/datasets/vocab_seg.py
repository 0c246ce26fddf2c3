"""Vocabularies of LLP (AVVP), AVSBench (S4, MS3, AVSS) and Ref-AVS, verbatim, and the AVSS palette.

Copied from ../shared/reference/dataset-layouts.md: LLP's 25 classes in the official index order of
YapengTian/AVVP-ECCV20 ``dataloader.py`` (section 2.4; underscore spellings as the CSVs store them);
S4's 23 category folder names (4.2, OpenNLPLab/AVSBench ``preprocess_s4.py``); AVSBench-semantic's 71
classes, background first and the other 70 in alphabetical order, so that a class's position is the
pixel value of ``labels_semantic`` masks and the palette index of ``labels_rgb`` masks (5.3, verified
by decoding Crab's samples); Ref-AVS's 51 object categories plus ``null`` (6.4, from ``metadata.csv``).

The AVSS palette is computed, not tabulated: :func:`voc_color` is the VOC bit-interleaved colour map
(AVSBench ``get_v2_pallete``, 5.4), and the tests pin entries of the published table against it.
Kept apart from ``vocab`` (AVE, MUSIC-AVQA) so each module stays readable; both are constants only.
"""

from __future__ import annotations

__all__ = [
    "AVSS_CLASSES",
    "AVSS_PALETTE",
    "LLP_CLASSES",
    "LLP_NUM_SEGMENTS",
    "REF_AVS_NULL_OBJECT",
    "REF_AVS_OBJECTS",
    "S4_CATEGORIES",
    "voc_color",
]

#: LLP's 25 event classes; the position is the class index of the official 25 x 10 label matrices.
LLP_CLASSES: tuple[str, ...] = (
    "Speech",
    "Car",
    "Cheering",
    "Dog",
    "Cat",
    "Frying_(food)",
    "Basketball_bounce",
    "Fire_alarm",
    "Chainsaw",
    "Cello",
    "Banjo",
    "Singing",
    "Chicken_rooster",
    "Violin_fiddle",
    "Vacuum_cleaner",
    "Baby_laughter",
    "Accordion",
    "Lawn_mower",
    "Motorcycle",
    "Helicopter",
    "Acoustic_guitar",
    "Telephone_bell_ringing",
    "Baby_cry_infant_cry",
    "Blender",
    "Clapping",
)

#: LLP clips are 10 s, annotated on a grid of 10 one-second segments (dense events are ``[onset, offset)``).
LLP_NUM_SEGMENTS = 10

#: S4's 23 categories: the ``category`` column of ``s4_meta_data.csv`` and a folder level of every S4 path.
S4_CATEGORIES: tuple[str, ...] = (
    "baby_laughter",
    "female_singing",
    "male_speech",
    "dog_barking",
    "cat_meowing",
    "lions_roaring",
    "horse_clip-clop",
    "coyote_howling",
    "mynah_bird_singing",
    "playing_acoustic_guitar",
    "playing_tabla",
    "playing_violin",
    "playing_piano",
    "playing_ukulele",
    "playing_glockenspiel",
    "helicopter",
    "race_car",
    "driving_buses",
    "ambulance_siren",
    "typing_on_computer_keyboard",
    "chainsawing_trees",
    "cap_gun_shooting",
    "lawn_mowing",
)

#: AVSBench-semantic's 71 classes; position k = mask pixel value = palette index (Crab's label2idx.json is k + 1).
AVSS_CLASSES: tuple[str, ...] = (
    "background",
    "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy", "bus",
    "car", "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck",
    "elephant", "emergency-car", "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun", "guzheng",
    "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "hen", "horse", "keyboard", "leopard", "lion",
    "man", "marimba", "missile-rocket", "motorcycle", "mower", "parrot", "piano", "pig", "pipa", "saw",
    "saxophone", "sheep", "sitar", "sorna", "squirrel", "tabla", "tank", "tiger", "tractor", "train",
    "trombone", "truck", "trumpet", "tuba", "ukulele", "utv", "vacuum-cleaner", "violin", "wolf", "woman",
)  # fmt: skip

#: The object of a Ref-AVS null row (no object matches the expression; its mask is empty).
REF_AVS_NULL_OBJECT = "null"

#: Ref-AVS object categories as they appear in ``uid`` (``{media}_{object}_{k}``): 51 objects and ``null``.
REF_AVS_OBJECTS: tuple[str, ...] = (
    "accordion", "airplane", "baby", "bass", "boat", "boy", "car", "cat", "cello", "chair",
    "clarinet", "clock", "couch", "dog", "drum", "emergency-car", "flute", "girl", "guitar", "gun",
    "guzheng", "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "keyboard", "leopard", "lion", "man",
    "marimba", "motorcycle", "mower", "null", "piano", "pig", "pipa", "razor", "saw", "saxophone",
    "sheep", "sitar", "tabla", "table", "tiger", "truck", "tuba", "ukulele", "vacuum-cleaner", "violin",
    "wolf", "woman",
)  # fmt: skip


def voc_color(index: int) -> tuple[int, int, int]:
    """The VOC bit-interleaved colour of a class index (AVSBench ``get_v2_pallete``).

    Bits of ``index`` are dealt round-robin to R, G, B (bit 0 -> R, bit 1 -> G, bit 2 -> B, bit 3 -> R, ...);
    the first triple lands on bit 7 of each channel, the next on bit 6, and so on. Index 1 is
    (128, 0, 0), 8 is (64, 0, 0), 64 is (32, 0, 0).

    Raises:
        ValueError: ``index`` is negative or above 255 (the map has 256 colours).
    """
    if not 0 <= index <= 255:
        raise ValueError(f"palette index {index} is outside 0..255")
    rgb = [0, 0, 0]
    for shift in range(7, -1, -1):  # shift 7 = most significant bit of each channel
        for channel in range(3):
            rgb[channel] |= (index & 1) << shift
            index >>= 1
    return rgb[0], rgb[1], rgb[2]


#: ``labels_rgb`` colour of each AVSS class, by class index (71 entries).
AVSS_PALETTE: tuple[tuple[int, int, int], ...] = tuple(voc_color(k) for k in range(len(AVSS_CLASSES)))
