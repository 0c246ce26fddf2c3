"""Crab's tokenizer: the 17 added tokens, the Llama-2 chat prompt, and the tiny profile's BPE tokenizer.

Crab extends the Llama-2 tokenizer with 17 tokens (crab-reference section 1.6), in this order and with ids
starting at the old vocabulary size: the 11 special tokens ``<image>``, ``<image_start>``, ``<image_end>``,
``<video>``, ``<video_start>``, ``<video_end>``, ``<audio>``, ``<audio_start>``, ``<audio_end>``,
``<mask_start>``, ``<mask_end>``, then ``<mask_0>`` ... ``<mask_5>`` added as *non-special* tokens (they are
part of an AVS answer, so decoding with ``skip_special_tokens=True`` keeps them). Answer tags (``<event>``,
``<range>``, ``<answer>``) are not added: they are plain text. :func:`add_crab_tokens` does this extension for
any ``transformers`` tokenizer, the tiny one here and, in the paper profile, the real Llama-2 one.

Every instruction goes through the Llama-2 chat format with Crab's system prompt (section 1.7)::

    <s>[INST] <<SYS>>\\nYou are a helpful assistant.\\n<</SYS>>\\n\\n{instruction} [/INST]

:data:`LLAMA2_CHAT_TEMPLATE` is Llama-2-chat's own Jinja template (as shipped in ``Llama-2-7b-chat-hf``), so
:func:`build_prompt` gives the same string in both profiles.

The tiny profile's tokenizer (:func:`train_bpe_tokenizer`) is a byte-level BPE (GPT-2 style: no unknown
characters, exact round trip) trained with the ``tokenizers`` library on the AV-UIE *train* split only
(:func:`avuie_training_texts`), so no val/test text leaks into the vocabulary. The corpus is what the LLM
reads: each record's chat prompt and its target, tokenised separately as the training stages do (Crab
tokenises instruction and answer separately, section 1.7). Added and special tokens are cut out of the
corpus, because the tokenizer matches them before BPE runs and BPE must never learn pieces of them. It
mirrors Llama-2's conventions: ``<unk>``, ``<s>``, ``</s>`` are ids 0, 1, 2; a BOS is prepended on
encoding (``add_bos_token``), no EOS; padding is on the left with pad = ``</s>`` as in Crab. Training is
deterministic, so the same text and params give a byte-identical ``tokenizer.json``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from crab.avuie.schema import read_jsonl
from crab.errors import CrabError

__all__ = [
    "BASE_SPECIAL_TOKENS",
    "CRAB_ADDED_TOKENS",
    "CRAB_MASK_TOKENS",
    "CRAB_SPECIAL_TOKENS",
    "LLAMA2_CHAT_TEMPLATE",
    "LLAMA2_PROMPT_FORMAT",
    "MAX_SEQUENCE_LENGTH",
    "PLACEHOLDER_TOKENS",
    "SYSTEM_PROMPT",
    "TokenizerCorpus",
    "TokenizerError",
    "add_crab_tokens",
    "avuie_training_texts",
    "build_prompt",
    "check_tokenizer",
    "train_bpe_tokenizer",
]

log = logging.getLogger(__name__)

#: Crab's system prompt (crab-reference section 1.7).
SYSTEM_PROMPT = "You are a helpful assistant."
#: The prompt :func:`build_prompt` renders, as a format string (``instruction`` is stripped, like Llama-2).
LLAMA2_PROMPT_FORMAT = "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{instruction} [/INST]"
#: Llama-2-chat's Jinja chat template (``Llama-2-7b-chat-hf/tokenizer_config.json``), verbatim.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

#: The BPE tokenizer's own special tokens, in Llama-2's id order (0, 1, 2).
BASE_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
#: Crab's added special tokens, in Crab's order.
CRAB_SPECIAL_TOKENS = (
    "<image>", "<image_start>", "<image_end>",
    "<video>", "<video_start>", "<video_end>",
    "<audio>", "<audio_start>", "<audio_end>",
    "<mask_start>", "<mask_end>",
)  # fmt: skip
#: The segmentation tokens: 2 scales x 3 tokens, added as non-special tokens after the special ones.
CRAB_MASK_TOKENS = tuple(f"<mask_{i}>" for i in range(6))
#: All 17 added tokens in id order.
CRAB_ADDED_TOKENS = CRAB_SPECIAL_TOKENS + CRAB_MASK_TOKENS
#: Tokens replaced by feature sequences in the LLM input (crab-reference section 1.6).
PLACEHOLDER_TOKENS = ("<image>", "<video>", "<audio>")
#: ``model_max_length`` of the tiny tokenizer: Llama-2's context length.
MAX_SEQUENCE_LENGTH = 4096

_BYTE_ALPHABET_SIZE = 256
_SPLIT = re.compile(
    "|".join(re.escape(t) for t in sorted(BASE_SPECIAL_TOKENS + CRAB_ADDED_TOKENS, key=len, reverse=True))
)


class TokenizerError(CrabError):
    """A tokenizer that cannot take Crab's tokens, or that fails a check; the message says why."""


def add_crab_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Add Crab's 17 tokens (module docstring) with contiguous ids after the current vocabulary.

    Idempotent: a tokenizer that already holds all 17 in Crab's order (e.g. one loaded from a folder this
    function's output was saved to) is returned unchanged.

    Args:
        tokenizer: a ``transformers`` tokenizer (the tiny BPE one, or Llama-2's); modified in place.

    Returns:
        Token -> id for the 17 tokens, in Crab's order (Llama-2: ``<image>`` 32000 ... ``<mask_5>`` 32016).

    Raises:
        TokenizerError: only some of the tokens are present, or the ids do not come out contiguous in order.
    """
    vocab = tokenizer.get_vocab()
    present = [t for t in CRAB_ADDED_TOKENS if t in vocab]
    if present and len(present) < len(CRAB_ADDED_TOKENS):
        raise TokenizerError(f"tokenizer already has some of Crab's tokens ({', '.join(present)}) but not all")
    if not present:
        first = len(tokenizer)
        specials = [AddedToken(t, special=True, normalized=False) for t in CRAB_SPECIAL_TOKENS]
        masks = [AddedToken(t, special=False, normalized=False) for t in CRAB_MASK_TOKENS]
        tokenizer.add_tokens(specials, special_tokens=True)
        tokenizer.add_tokens(masks, special_tokens=False)
    else:
        first = tokenizer.convert_tokens_to_ids(CRAB_ADDED_TOKENS[0])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in CRAB_ADDED_TOKENS}
    if list(ids.values()) != list(range(first, first + len(CRAB_ADDED_TOKENS))):
        raise TokenizerError(f"Crab's tokens must get contiguous ids from {first} in Crab's order, got {ids}")
    return ids


def build_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str, system: str = SYSTEM_PROMPT) -> str:
    """The LLM prompt of one instruction: the tokenizer's chat template with Crab's system message.

    Args:
        tokenizer: a tokenizer with the Llama-2 chat template.
        instruction: the AV-UIE instruction, placeholders included.
        system: the system message (Crab's by default).

    Returns:
        ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{instruction} [/INST]`` (instruction stripped); encode it
        with ``add_special_tokens=False``, since it already starts with ``<s>``.

    Raises:
        TokenizerError: the tokenizer has no chat template.
    """
    if tokenizer.chat_template is None:
        raise TokenizerError(f"{tokenizer.name_or_path or 'tokenizer'}: no chat template")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass(frozen=True)
class TokenizerCorpus:
    """The tokenizer's training text and where it came from."""

    texts: list[str]  # text pieces: prompts split at special/added tokens, and targets
    num_records: dict[str, int]  # task -> train records read


def avuie_training_texts(avuie_dir: Path, tasks: Sequence[str]) -> TokenizerCorpus:
    """The tokenizer corpus: chat prompt and target of every AV-UIE train record, added tokens cut out.

    Args:
        avuie_dir: the AV-UIE folder (``data/avuie``), holding ``<task>/train.jsonl``.
        tasks: the tasks to read (``avuie.tasks``); val and test are never read.

    Returns:
        The text pieces in a deterministic order (tasks as given, records as in the file: per record the
        prompt's pieces between special/added tokens, then the target's), and the record count per task.

    Raises:
        DataError: a ``train.jsonl`` is missing or malformed.
        TokenizerError: no text at all.
    """
    texts: list[str] = []
    num_records: dict[str, int] = {}
    for task in tasks:
        path = avuie_dir / task / "train.jsonl"
        records = read_jsonl(path)
        for record in records:
            prompt = LLAMA2_PROMPT_FORMAT.format(system=SYSTEM_PROMPT, instruction=record.instruction.strip())
            texts.extend(piece for piece in _SPLIT.split(prompt) if piece)
            texts.extend(piece for piece in _SPLIT.split(record.target) if piece)
        num_records[task] = len(records)
        log.info("tokenizer corpus: %d train records from %s", len(records), path)
    if not texts:
        raise TokenizerError(f"{avuie_dir}: no AV-UIE train text for tasks {list(tasks)}")
    return TokenizerCorpus(texts=texts, num_records=num_records)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int) -> PreTrainedTokenizerFast:
    """Train the tiny profile's byte-level BPE and dress it as a Llama-2-style tokenizer with Crab's tokens.

    Args:
        texts: the corpus (``avuie_training_texts(...).texts``).
        vocab_size: size of the BPE vocabulary, its 3 special tokens and 256 bytes included; Crab's 17
            tokens come on top. A small corpus may end with fewer merges.
        min_frequency: a pair must occur this often to be merged.

    Returns:
        A ``PreTrainedTokenizerFast`` with the chat template, ``padding_side="left"``, pad = eos, BOS on
        encoding, and the 17 added tokens at ids ``base_vocab_size ...``.

    Raises:
        TokenizerError: ``vocab_size`` leaves no room for the 3 special tokens and the 256 bytes.
    """
    minimum = len(BASE_SPECIAL_TOKENS) + _BYTE_ALPHABET_SIZE
    if vocab_size <= minimum:
        raise TokenizerError(f"base_models.tokenizer.vocab_size: must exceed {minimum} (3 specials + 256 bytes)")
    backend = Tokenizer(models.BPE(unk_token=BASE_SPECIAL_TOKENS[0]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(BASE_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    unk, bos, eos = BASE_SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,  # Crab pads with eos (crab-reference section 1.6)
        padding_side="left",
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_SEQUENCE_LENGTH,
        chat_template=LLAMA2_CHAT_TEMPLATE,
    )
    add_crab_tokens(tokenizer)
    log.info("BPE tokenizer: %d base tokens + %d added", backend.get_vocab_size(), len(CRAB_ADDED_TOKENS))
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> None:
    """Check what the model relies on: one id per special/added token, and an exact round trip.

    Args:
        tokenizer: the tokenizer to check.
        texts: texts that must decode back to themselves (e.g. prompts and targets).

    Raises:
        TokenizerError: a token is split or maps to the wrong id, or a text does not round-trip (named).
    """
    vocab = tokenizer.get_vocab()
    absent = [t for t in BASE_SPECIAL_TOKENS + CRAB_ADDED_TOKENS if t not in vocab]
    if absent:
        raise TokenizerError(f"tokenizer lacks {', '.join(absent)}")
    for token in BASE_SPECIAL_TOKENS + CRAB_ADDED_TOKENS:
        ids = tokenizer(f"a{token}b", add_special_tokens=False).input_ids
        if ids.count(vocab[token]) != 1:
            raise TokenizerError(f"{token} is not one token in context: {tokenizer.convert_ids_to_tokens(ids)}")
    encoded = tokenizer(list(texts), add_special_tokens=False).input_ids
    for text, ids in zip(texts, encoded, strict=True):
        decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != text:
            raise TokenizerError(f"text does not round-trip through the tokenizer: {text[:80]!r} -> {decoded[:80]!r}")
