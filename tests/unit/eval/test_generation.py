"""Batched greedy generation: equal to one-by-one decoding, in the caller's order, deaf to sampling configs."""

from __future__ import annotations

import pytest
import torch

from crab.eval.generation import GenerationStats, generate_greedy, greedy_settings, trim_at_eos
from crab.models.collator import CrabExample, build_example, collate
from crab.models.configuration_crab import CrabConfig, crab_tiny_config
from crab.models.modeling_crab import CrabForConditionalGeneration

VIDEO, AUDIO, IMAGE = 5, 6, 7
BOS, EOS, PAD = 1, 2, 0
VOCAB = 96
WIDTH = 64
MAX_NEW = 8


@pytest.fixture(scope="module")
def config() -> CrabConfig:
    return crab_tiny_config(
        VOCAB, video_token_id=VIDEO, audio_token_id=AUDIO, image_token_id=IMAGE, bos_token_id=BOS, eos_token_id=EOS
    )


@pytest.fixture(scope="module")
def model(config: CrabConfig) -> CrabForConditionalGeneration:
    torch.manual_seed(0)
    return CrabForConditionalGeneration(config).eval()


def _prompts() -> list[list[int]]:
    """Five prompts of 6, 9, 5, 8 and 7 text tokens (not sorted by length)."""
    return [[BOS, *range(20 + i, 20 + i + n), VIDEO, 40 + i, AUDIO, 50] for i, n in enumerate((2, 5, 1, 4, 3))]


def _examples(config: CrabConfig, dtype: torch.dtype = torch.float32) -> list[CrabExample]:
    """The prompts with 2 frames and 3 audio clips of random features each."""
    gen = torch.Generator().manual_seed(0)
    examples = []
    for prompt in _prompts():
        video = torch.randn(2, 4, WIDTH, generator=gen).to(dtype)  # (T, P, D)
        audio = torch.randn(3, 5, WIDTH, generator=gen).to(dtype)  # (C, N, D)
        examples.append(build_example(prompt, [], config, video_features=video, audio_features=audio))
    return examples


def _generate(model, examples, batch_size: int) -> tuple[list[list[int]], GenerationStats]:
    return generate_greedy(
        model, examples, batch_size=batch_size, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
        show_progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def one_by_one(model, config) -> list[list[int]]:
    return [_generate(model, [example], batch_size=1)[0][0] for example in _examples(config)]


def test_batched_generation_equals_one_by_one_in_the_callers_order(model, config, one_by_one) -> None:
    batched, stats = _generate(model, _examples(config), batch_size=2)
    assert batched == one_by_one
    assert len({tuple(a) for a in one_by_one}) > 1  # the prompts really get different answers: order matters
    assert all(0 < len(a) <= MAX_NEW for a in batched)
    assert all(EOS not in a[:-1] for a in batched)  # cut after the first EOS
    assert stats.num_sequences == 5
    assert stats.num_new_tokens == sum(len(a) for a in batched)
    assert stats.tokens_per_s == pytest.approx(stats.num_new_tokens / stats.seconds)


def test_one_big_batch_also_equals_one_by_one(model, config, one_by_one) -> None:
    assert _generate(model, _examples(config), batch_size=16)[0] == one_by_one


def test_answers_are_the_greedy_argmax_continuation(model, config, one_by_one) -> None:
    """Independent check: step the model by hand (no cache, argmax of the last logits) for one prompt."""
    example = _examples(config)[1]
    batch = collate([example], pad_token_id=PAD)
    ids = batch["input_ids"]
    expected = []
    with torch.no_grad():
        for _ in range(MAX_NEW):
            logits = model(
                input_ids=ids, video_features=batch["video_features"], audio_features=batch["audio_features"]
            ).logits  # (1, L, V)
            token = int(logits[0, -1].argmax())
            expected.append(token)
            if token == EOS:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    assert one_by_one[1] == expected


def test_generation_ignores_a_generation_config_that_asks_for_sampling(model, config, one_by_one) -> None:
    model.generation_config.update(do_sample=True, temperature=50.0, top_k=0, top_p=1.0, num_beams=3)
    model.language_model.generation_config.update(do_sample=True, temperature=50.0, top_k=0, top_p=1.0)
    try:
        examples = _examples(config)
        # The control: left to the checkpoint's config, generate samples and gives other answers.
        batch = collate(examples, pad_token_id=PAD)
        torch.manual_seed(0)
        sampled = model.generate(
            batch["input_ids"], batch["attention_mask"], video_features=batch["video_features"],
            audio_features=batch["audio_features"], max_new_tokens=MAX_NEW, num_beams=1,
        )[:, batch["input_ids"].shape[1] :].tolist()  # fmt: skip
        assert [trim_at_eos(s, EOS) for s in sampled] != one_by_one
        torch.manual_seed(0)
        assert _generate(model, examples, batch_size=2)[0] == one_by_one
    finally:
        model.generation_config.update(do_sample=False, temperature=None, top_k=None, top_p=None, num_beams=None)
        model.language_model.generation_config.update(do_sample=False, temperature=None, top_k=None, top_p=None)


def test_half_precision_features_are_cast_to_the_model_dtype(model, config) -> None:
    half = _generate(model, _examples(config, torch.float16), batch_size=2)[0]
    rounded = [
        build_example(p, [], config, video_features=e.video_features.float(), audio_features=e.audio_features.float())
        for p, e in zip(_prompts(), _examples(config, torch.float16), strict=True)
    ]
    assert half == _generate(model, rounded, batch_size=2)[0]


class _Lazy:
    """A dataset-like sequence that records which examples were fetched, in order."""

    def __init__(self, examples: list[CrabExample]) -> None:
        self.examples = examples
        self.fetched: list[int] = []

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> CrabExample:
        self.fetched.append(index)
        return self.examples[index]


def test_lazy_examples_are_fetched_once_batch_by_batch_in_the_given_length_order(model, config, one_by_one) -> None:
    lazy = _Lazy(_examples(config))
    text_lengths = [len(p) for p in _prompts()]  # 6, 9, 5, 8, 7
    answers, _ = generate_greedy(
        model, lazy, batch_size=2, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD, lengths=text_lengths,
        show_progress=False,
    )  # fmt: skip
    assert lazy.fetched == [1, 3, 4, 0, 2]  # longest first, each once
    assert answers == one_by_one
    with pytest.raises(ValueError, match="lengths"):
        _generate_with_lengths(model, config, [1, 2])


def _generate_with_lengths(model, config, lengths):
    return generate_greedy(
        model, _examples(config), batch_size=2, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
        lengths=lengths, show_progress=False,
    )  # fmt: skip


def test_settings_force_greedy_and_take_the_tokenizer_ids() -> None:
    settings = greedy_settings(12, eos_token_id=2, pad_token_id=0)
    assert settings["do_sample"] is False
    assert settings["num_beams"] == 1
    assert settings["use_cache"] is True
    assert (settings["max_new_tokens"], settings["eos_token_id"], settings["pad_token_id"]) == (12, 2, 0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_settings(0, eos_token_id=2, pad_token_id=0)


def test_trim_at_eos_keeps_the_first_eos_and_drops_the_padding() -> None:
    assert trim_at_eos([7, 8, EOS, EOS, EOS], EOS) == [7, 8, EOS]
    assert trim_at_eos([7, 8, 9], EOS) == [7, 8, 9]
    assert trim_at_eos([EOS, 7], EOS) == [EOS]


def test_generate_rejects_a_bad_batch_size(model, config) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _generate(model, _examples(config), batch_size=0)


def test_a_static_cache_gives_the_same_answers(model, config, one_by_one) -> None:
    """The preallocated cache (compiled on a GPU) changes the speed, not the greedy answers, left padding included."""
    answers, _ = generate_greedy(
        model, _examples(config), batch_size=2, max_new_tokens=MAX_NEW, eos_token_id=EOS, pad_token_id=PAD,
        show_progress=False, cache="static",
    )  # fmt: skip
    assert answers == one_by_one
    assert greedy_settings(4, eos_token_id=EOS, pad_token_id=PAD, cache="static")["cache_implementation"] == "static"
    with pytest.raises(ValueError, match="cache must be"):
        greedy_settings(4, eos_token_id=EOS, pad_token_id=PAD, cache="paged")
