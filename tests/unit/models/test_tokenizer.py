"""Tests for ``crab.models.tokenizer``: Crab's 17 tokens, the Llama-2 chat prompt, the BPE corpus and training.

Expected values are written out from crab-reference sections 1.6 (token order, special vs non-special) and
1.7 (the Llama-2 prompt with "You are a helpful assistant."), not taken from the module's constants.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from crab.avuie.schema import AvuieRecord, write_jsonl
from crab.errors import DataError
from crab.models.tokenizer import (
    TokenizerError,
    add_crab_tokens,
    avuie_training_texts,
    build_prompt,
    check_tokenizer,
    train_bpe_tokenizer,
)

CRAB_ORDER = [
    "<image>", "<image_start>", "<image_end>", "<video>", "<video_start>", "<video_end>",
    "<audio>", "<audio_start>", "<audio_end>", "<mask_start>", "<mask_end>",
    "<mask_0>", "<mask_1>", "<mask_2>", "<mask_3>", "<mask_4>", "<mask_5>",
]  # fmt: skip
INSTRUCTION = (
    "This is a video:\n<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"
    "Please describe the events and time range that occurred in the video."
)
TARGET = (
    "A dog is seen on the left from 2 s and barks from 3 s. So the audible and visible event in the video is "
    "<event> Dog barking </event>, and the time range is <range> 3,7 </range>."
)
CORPUS = [
    "This is a video:\n", "\nThis is an audio:\n", "Please answer this question: Where is the violin?",
    TARGET, "The violin on the left plays first. So the answer is <answer> left </answer>.",
    "[INST] ", "<<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n", " [/INST]",
] * 20  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer(CORPUS, vocab_size=300, min_frequency=2)


def _plain_tokenizer(alphabet: str = "hello world") -> PreTrainedTokenizerFast:
    """An untrained byte-level tokenizer of a different base size, standing in for another LLM's tokenizer."""
    vocab = {"<unk>": 0, **{ch: i + 1 for i, ch in enumerate(sorted(set(alphabet)))}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_base_specials_have_llama2_ids(tokenizer: PreTrainedTokenizerFast) -> None:
    assert tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 2)
    assert tokenizer.padding_side == "left"


def test_added_tokens_follow_base_vocab_in_crab_order(tokenizer: PreTrainedTokenizerFast) -> None:
    base = len(tokenizer) - 17
    assert base <= 300
    assert tokenizer.convert_tokens_to_ids(CRAB_ORDER) == list(range(base, base + 17))


def test_masks_are_non_special_and_placeholders_special(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer("x<video>y<mask_start><mask_3><mask_end>", add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "xy<mask_3>"
    assert tokenizer.decode(ids) == "x<video>y<mask_start><mask_3><mask_end>"


def test_tags_are_plain_text_and_round_trip(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer(TARGET, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == TARGET
    assert len(tokenizer("<event>", add_special_tokens=False).input_ids) > 1
    assert "<event>" not in tokenizer.get_vocab()


def test_bos_is_added_once_like_llama(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer("hello").input_ids
    assert ids[0] == 1 and ids.count(1) == 1
    prompt = build_prompt(tokenizer, "hi")
    assert tokenizer(prompt, add_special_tokens=False).input_ids.count(1) == 1


def test_build_prompt_is_llama2_format(tokenizer: PreTrainedTokenizerFast) -> None:
    expected = (
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nThis is a video:\n"
        "<video_start><video><video_end>\nThis is an audio:\n<audio_start><audio><audio_end>\n"
        "Please describe the events and time range that occurred in the video. [/INST]"
    )
    assert build_prompt(tokenizer, INSTRUCTION + "\n") == expected


def test_build_prompt_needs_a_template() -> None:
    with pytest.raises(TokenizerError, match="no chat template"):
        build_prompt(_plain_tokenizer(), "hi")


def test_add_crab_tokens_starts_at_len_and_is_idempotent() -> None:
    plain = _plain_tokenizer()
    first = len(plain)
    ids = add_crab_tokens(plain)
    assert list(ids) == CRAB_ORDER
    assert list(ids.values()) == list(range(first, first + 17))
    assert add_crab_tokens(plain) == ids
    assert len(plain) == first + 17


def test_add_crab_tokens_rejects_a_partial_extension() -> None:
    plain = _plain_tokenizer()
    plain.add_tokens(["<video>"], special_tokens=True)
    with pytest.raises(TokenizerError, match="some of Crab's tokens"):
        add_crab_tokens(plain)


def test_training_is_deterministic() -> None:
    first = train_bpe_tokenizer(CORPUS, vocab_size=300, min_frequency=2)
    second = train_bpe_tokenizer(list(CORPUS), vocab_size=300, min_frequency=2)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()


def test_vocab_size_must_leave_room_for_merges() -> None:
    with pytest.raises(TokenizerError, match="vocab_size"):
        train_bpe_tokenizer(CORPUS, vocab_size=259, min_frequency=2)


def test_check_tokenizer_flags_a_tokenizer_without_crab_tokens() -> None:
    with pytest.raises(TokenizerError, match="lacks <s>, </s>, <image>"):
        check_tokenizer(_plain_tokenizer(), ["hello"])


def test_check_tokenizer_flags_a_token_that_bpe_splits() -> None:
    names = ["<unk>", "<s>", "</s>", *CRAB_ORDER]
    chars = sorted(set("".join(names) + "ab") - set(names))
    vocab = {name: i for i, name in enumerate(names + chars)}  # in the vocabulary, but not as added tokens
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    with pytest.raises(TokenizerError, match="is not one token in context"):
        check_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend), ["ab"])


def test_check_tokenizer_flags_a_text_that_does_not_round_trip(tokenizer: PreTrainedTokenizerFast) -> None:
    check_tokenizer(tokenizer, [TARGET, INSTRUCTION, "é 中文\t\r\n  two spaces"])
    lossy = copy.deepcopy(tokenizer)
    lossy.backend_tokenizer.normalizer = normalizers.Lowercase()
    with pytest.raises(TokenizerError, match="round-trip"):
        check_tokenizer(lossy, [TARGET])


def _record(task: str, split: str, item: str, instruction: str, target: str) -> AvuieRecord:
    return AvuieRecord(
        id=f"{task}/{split}/{item}", task=task, split=split, dataset="ave", item_id=item, source=f"f:{item}",
        video_id=item, media={"video": "v.mp4", "audio": "v.mp4"}, instruction=instruction, target=target,
        reasoning=True, label={},
    )  # fmt: skip


def test_corpus_reads_train_only_and_cuts_out_added_tokens(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "ave" / "train.jsonl", [_record("ave", "train", "a", INSTRUCTION, TARGET)])
    write_jsonl(tmp_path / "ave" / "val.jsonl", [_record("ave", "val", "b", INSTRUCTION, "zebrafish val only")])
    corpus = avuie_training_texts(tmp_path, ["ave"])
    assert corpus.num_records == {"ave": 1}
    assert corpus.texts == [
        "[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nThis is a video:\n",
        "\nThis is an audio:\n",
        "\nPlease describe the events and time range that occurred in the video. [/INST]",
        TARGET,
    ]


def test_corpus_names_a_missing_train_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"avqa/train\.jsonl: file not found"):
        avuie_training_texts(tmp_path, ["avqa"])
