"""Configuration of the Crab model (projectors + LLM) and its named builders.

Implements the sizes of crab-reference sections 1.3, 1.5, 1.6 and 8: two BLIP-2 style Q-Former projectors
(visual: CLIP ViT-L/14 layer-23 patch tokens, width 1024; audio: BEATs tokens, width 768), each with 32
learned queries, 2 Q-Former layers of width 768 with cross-attention in every layer, and a 2-layer GELU MLP
to the LLM width; the LLM is Llama-2-7B-chat with 17 added tokens.

How it differs from the authors' code: there every size is a constructor default or a hard-coded path
(``d_model = 3584``, a bert-base config read from ``/group/...``). Here one :class:`CrabConfig` holds the
three sub-configs (``text_config``: ``LlamaConfig``; ``visual_qformer_config`` / ``audio_qformer_config``:
``Blip2QFormerConfig``), every module reads its sizes from them (house-style 4.2), and the literals live only
in the named builders :func:`crab_tiny_config` and :func:`crab_llama2_7b_config` (house-style 4.3).
The LLM config never sets ``pad_token_id``: ``LlamaModel`` turns it into ``nn.Embedding(padding_idx=...)``,
which would zero and freeze the embedding of ``</s>``, the token Crab pads with. Padding positions are
masked anyway; generation pads finished rows with EOS. The frozen encoders are *not* part of the model: training reads pre-computed features (the ``features``
stage), so ``vision_feature_layer`` is recorded for that stage and for documentation only.

The segmentation branch (crab-ref 1.8) is optional: ``mask_decoder_config`` is ``None`` unless a builder is asked
for it (``use_mask_decoder=True``), so every config and checkpoint without it is unchanged. When it is set,
``mask_token_ids`` names the six ``<mask_i>`` tokens whose hidden states prompt the decoder, and the decoder's
widths are checked against the LLM's and CLIP's here, at construction, rather than at the first forward.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import AutoConfig, Blip2QFormerConfig, LlamaConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from crab.models.mask_decoder import CrabMaskDecoderConfig, mask_decoder_paper_config, mask_decoder_tiny_config

__all__ = ["CrabConfig", "crab_llama2_7b_config", "crab_tiny_config"]


class CrabConfig(PreTrainedConfig):
    """Configuration of :class:`~crab.models.modeling_crab.CrabForConditionalGeneration`.

    The class defaults describe the paper model (so that ``CrabConfig()`` is valid, as transformers requires),
    but code should build configs with :func:`crab_llama2_7b_config` or :func:`crab_tiny_config`.

    Args:
        text_config: ``LlamaConfig`` (or its dict) of the language model.
        visual_qformer_config: ``Blip2QFormerConfig`` of the visual projector; its ``encoder_hidden_size``
            must equal ``vision_hidden_size``.
        audio_qformer_config: ``Blip2QFormerConfig`` of the audio projector; its ``encoder_hidden_size``
            must equal ``audio_hidden_size``.
        num_visual_queries: learned queries per video frame / image (LLM tokens per frame).
        num_audio_queries: learned queries per audio clip (LLM tokens per clip).
        video_token_id: id of the ``<video>`` placeholder token.
        audio_token_id: id of the ``<audio>`` placeholder token.
        image_token_id: id of the ``<image>`` placeholder token.
        vision_feature_layer: index into CLIP's ``hidden_states`` (0 = patch embedding, negative counts from
            the end) whose patch tokens feed the visual projector; read by the ``features`` stage.
        vision_hidden_size: width of the visual features (CLIP hidden size).
        audio_hidden_size: width of the audio features (BEATs encoder width).
        initializer_range: std of the normal init of the projector linears and of the learned queries.
        standardize_features: the projectors standardise each feature dimension with statistics of the
            training features (buffers ``feature_mean`` / ``feature_std``, set by ``pretrain``) before Crab's
            LayerNorm. Off for the paper model (Crab has no such step); on in the tiny profile, whose
            random-init encoders give ill-conditioned features (:func:`crab_tiny_config`).
        visual_feature_positions: learned position embeddings added to the visual projector's normalised input
            tokens, one per token of a frame; 0 (the default, Crab) adds none. ``pretrain.visual_feature_positions``
            sets one per CLIP patch (the tiny profile: the random-init CLIP's own position embedding hardly
            survives into its features). The audio projector has none (its probe needed none).
        mask_decoder_config: ``CrabMaskDecoderConfig`` (or its dict) of the optional segmentation decoder;
            ``None`` (the default) builds no decoder.
        mask_token_ids: ids of ``<mask_0>`` ... ``<mask_{K-1}>`` in order (Llama-2: 32011-32016); required with a
            decoder, ``K = mask_decoder_config.num_mask_tokens``.

    Raises:
        ValueError: if a Q-Former's ``encoder_hidden_size`` disagrees with its feature width, a query count is
            not positive, a feature-position count is negative, or two placeholder ids coincide; with a decoder,
            if its ``llm_hidden_size`` or ``vision_hidden_size`` disagrees with the LLM or CLIP width, or
            ``mask_token_ids`` is missing, has the wrong length, repeats an id, reuses a placeholder id or lies
            outside the vocabulary.
    """

    model_type = "crab"
    sub_configs_defaults = {
        "text_config": LlamaConfig,
        "visual_qformer_config": SubConfigSpec(
            config_class=Blip2QFormerConfig,
            init_kwargs={"num_hidden_layers": 2, "cross_attention_frequency": 1, "encoder_hidden_size": 1024},
        ),
        "audio_qformer_config": SubConfigSpec(
            config_class=Blip2QFormerConfig,
            init_kwargs={"num_hidden_layers": 2, "cross_attention_frequency": 1, "encoder_hidden_size": 768},
        ),
        # optional: None stays None (no decoder) instead of becoming a default decoder config
        "mask_decoder_config": SubConfigSpec(config_class=CrabMaskDecoderConfig, optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    visual_qformer_config: dict | PreTrainedConfig | None = None
    audio_qformer_config: dict | PreTrainedConfig | None = None
    num_visual_queries: int = 32
    num_audio_queries: int = 32
    video_token_id: int = 32003
    audio_token_id: int = 32006
    image_token_id: int = 32000
    vision_feature_layer: int = 23
    vision_hidden_size: int = 1024
    audio_hidden_size: int = 768
    initializer_range: float = 0.02
    standardize_features: bool = False
    visual_feature_positions: int = 0
    mask_decoder_config: dict | PreTrainedConfig | None = None
    mask_token_ids: list[int] | None = None

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        pairs = (
            ("visual", self.visual_qformer_config, self.vision_hidden_size),
            ("audio", self.audio_qformer_config, self.audio_hidden_size),
        )
        for name, qformer_config, width in pairs:
            if qformer_config.encoder_hidden_size != width:
                raise ValueError(
                    f"{name}_qformer_config.encoder_hidden_size={qformer_config.encoder_hidden_size} "
                    f"but the {name} feature width is {width}"
                )
        for name in ("num_visual_queries", "num_audio_queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.visual_feature_positions < 0:
            raise ValueError(
                f"visual_feature_positions must be >= 0 (0: no position embedding), got {self.visual_feature_positions}"
            )
        ids = {
            "video_token_id": self.video_token_id,
            "audio_token_id": self.audio_token_id,
            "image_token_id": self.image_token_id,
        }
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"placeholder token ids must differ, got {ids}")
        if self.mask_token_ids is not None:
            self.mask_token_ids = [int(i) for i in self.mask_token_ids]  # JSON gives a list; builders any sequence
        if self.mask_decoder_config is not None:
            self._check_mask_decoder(ids)

    def _check_mask_decoder(self, placeholder_ids: dict[str, int]) -> None:
        """Check the decoder's widths and the mask token ids against the rest of the config."""
        decoder = self.mask_decoder_config
        widths = (
            ("llm_hidden_size", decoder.llm_hidden_size, "text_config.hidden_size", self.text_config.hidden_size),
            ("vision_hidden_size", decoder.vision_hidden_size, "vision_hidden_size", self.vision_hidden_size),
        )
        for name, value, other_name, other in widths:
            if value != other:
                raise ValueError(f"mask_decoder_config.{name}={value} but {other_name}={other}")
        ids = self.mask_token_ids
        if ids is None:
            raise ValueError("mask_decoder_config is set but mask_token_ids is None (the <mask_i> token ids)")
        if len(ids) != decoder.num_mask_tokens:
            raise ValueError(
                f"mask_token_ids has {len(ids)} ids but mask_decoder_config.num_mask_tokens={decoder.num_mask_tokens}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"mask_token_ids must differ from each other, got {ids}")
        clashes = {name: value for name, value in placeholder_ids.items() if value in ids}
        if clashes:
            raise ValueError(f"mask_token_ids {ids} reuse placeholder ids {clashes}")
        vocab_size = self.text_config.vocab_size
        outside = [i for i in ids if not 0 <= i < vocab_size]
        if outside:
            raise ValueError(f"mask_token_ids {outside} are outside the vocabulary of {vocab_size} tokens")


def _qformer_config(
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int,
    encoder_hidden_size: int,
    initializer_range: float = 0.02,
) -> Blip2QFormerConfig:
    """A Q-Former with cross-attention in every layer and bert-base dropout / LayerNorm eps (crab-ref 1.3).

    ``initializer_range`` is the std of its linears' normal init: bert-base's 0.02 for the paper's 768-wide
    Q-Former; a narrow Q-Former needs about ``hidden_size ** -0.5`` (see :func:`crab_tiny_config`).
    """
    return Blip2QFormerConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        initializer_range=initializer_range,
        cross_attention_frequency=1,
        encoder_hidden_size=encoder_hidden_size,
        use_qformer_text_input=False,
    )


def crab_llama2_7b_config(
    *,
    vocab_size: int = 32017,
    image_token_id: int = 32000,
    video_token_id: int = 32003,
    audio_token_id: int = 32006,
    use_mask_decoder: bool = False,
    mask_token_ids: Sequence[int] = (32011, 32012, 32013, 32014, 32015, 32016),
    num_mask_classes: int = 1,
    vision_hidden_size: int = 1024,
    audio_hidden_size: int = 768,
) -> CrabConfig:
    """The paper model: Llama-2-7B-chat + two Q-Former projectors (crab-reference section 8).

    The default ids are those Crab's tokenizer extension gives (crab-ref 1.6: ``<image>`` 32000,
    ``<video>`` 32003, ``<audio>`` 32006, ``<mask_0>`` ... ``<mask_5>`` 32011-32016; 17 added tokens,
    vocabulary 32017).

    Args:
        vocab_size: LLM vocabulary after adding the special tokens.
        image_token_id: id of ``<image>``.
        video_token_id: id of ``<video>``.
        audio_token_id: id of ``<audio>``.
        use_mask_decoder: add the paper's segmentation decoder (:func:`mask_decoder_paper_config`).
        mask_token_ids: ids of ``<mask_0..5>``; used only with the decoder.
        num_mask_classes: decoder output maps: 1 (S4, MS3, Ref-AVS) or 71 (AVSS); used only with the decoder.
        vision_hidden_size: width of the CLIP features (ViT-L/14: 1024; the stage passes the released weights').
        audio_hidden_size: width of the BEATs features (iter3+: 768).

    Returns:
        The config; ``vision_feature_layer=23`` (CLIP ViT-L/14 hidden state 23 of 24, LLaVA's penultimate).
    """
    text_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        hidden_act="silu",
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,  # see the module docstring: Crab pads with eos, which must not be a padding_idx
        tie_word_embeddings=False,
    )
    return CrabConfig(
        text_config=text_config,
        visual_qformer_config=_qformer_config(
            hidden_size=768, num_layers=2, num_heads=12, intermediate_size=3072, encoder_hidden_size=vision_hidden_size
        ),
        audio_qformer_config=_qformer_config(
            hidden_size=768, num_layers=2, num_heads=12, intermediate_size=3072, encoder_hidden_size=audio_hidden_size
        ),
        num_visual_queries=32,
        num_audio_queries=32,
        video_token_id=video_token_id,
        audio_token_id=audio_token_id,
        image_token_id=image_token_id,
        vision_feature_layer=23,
        vision_hidden_size=vision_hidden_size,
        audio_hidden_size=audio_hidden_size,
        mask_decoder_config=(
            mask_decoder_paper_config(
                llm_hidden_size=4096, num_classes=num_mask_classes, vision_hidden_size=vision_hidden_size
            )
            if use_mask_decoder
            else None
        ),
        mask_token_ids=list(mask_token_ids) if use_mask_decoder else None,
    )


#: Init std of the tiny (64-wide) Q-Formers' linears: 64 ** -0.5. With bert-base's 0.02, each of the value and
#: output projections scales by about 0.02 * sqrt(64) = 0.16, so the cross-attention adds ~1 % of the residual
#: before each LayerNorm and the projected tokens of different clips differ by ~1 % of their norm (measured:
#: 0.012 relative across-clip spread at init, vs 0.48 with 0.125), so at init the LLM sees nearly the same
#: tokens for every clip. (The paper's Q-Former is 768 wide, where 0.02 ~ 768 ** -0.5.)
_TINY_QFORMER_INIT_STD = 0.125


def crab_tiny_config(
    vocab_size: int,
    *,
    video_token_id: int,
    audio_token_id: int,
    image_token_id: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    vision_hidden_size: int = 64,
    audio_hidden_size: int = 64,
    vision_feature_layer: int = -2,
    num_queries: int = 4,
    use_mask_decoder: bool = False,
    mask_token_ids: Sequence[int] | None = None,
    num_mask_classes: int = 1,
) -> CrabConfig:
    """The CPU-sized model of the ``tiny`` profile: same architecture, small widths.

    LLM: hidden 128, 4 layers, 4 heads, FFN 512. Q-Formers: hidden 64, 2 layers (cross-attention in both),
    4 heads, FFN 256, ``num_queries`` queries per frame / clip (4: 80 LLM tokens for a 10-frame, 10-clip
    AVE sample; with 8, a pre-training step on the 2-core CPU took about 1.3x as long: 0.30 vs 0.235 s).

    The projectors standardise their input features (``standardize_features``): the random-init encoders'
    tokens are dominated by a few near-constant dimensions that a per-token LayerNorm keeps. On AV-Synth AVE,
    a per-second MLP probe on the features reached 0.69 accuracy after 300 steps of batch 8 with per-dimension
    standardisation and 0.31 without; in an AVE-only harness the frozen-LLM alignment reached AVE accuracy
    0.48 vs 0.39 after 1500 steps.

    Args:
        vocab_size: LLM vocabulary (the tiny BPE tokenizer's size, special tokens included).
        video_token_id: id of ``<video>``.
        audio_token_id: id of ``<audio>``.
        image_token_id: id of ``<image>``.
        bos_token_id: tokenizer's BOS id, if any (used by generation).
        eos_token_id: tokenizer's EOS id, if any (generation stops on it and pads finished rows with it).
        vision_hidden_size: width of the tiny CLIP's features.
        audio_hidden_size: width of the tiny BEATs' features.
        vision_feature_layer: CLIP ``hidden_states`` index feeding the projector; the default, the
            penultimate layer, is the paper's choice (23 of a 24-layer CLIP).
        num_queries: learned queries per frame (visual) and per clip (audio).
        use_mask_decoder: add the tiny segmentation decoder (:func:`mask_decoder_tiny_config`: the tiny CLIP's
            112 px, patch 16, levels 1 and 2).
        mask_token_ids: ids of ``<mask_0..5>``; required with the decoder (the tiny tokenizer assigns them).
        num_mask_classes: decoder output maps: 1 (S4, MS3, Ref-AVS) or the AVSS class count.

    Returns:
        The config.

    Raises:
        ValueError: if ``use_mask_decoder`` is set without ``mask_token_ids``.
    """
    if use_mask_decoder and mask_token_ids is None:
        raise ValueError("crab_tiny_config(use_mask_decoder=True) needs mask_token_ids (the <mask_i> token ids)")
    text_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        hidden_act="silu",
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=None,  # see the module docstring
        tie_word_embeddings=False,
    )
    return CrabConfig(
        text_config=text_config,
        visual_qformer_config=_qformer_config(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=256,
            encoder_hidden_size=vision_hidden_size,
            initializer_range=_TINY_QFORMER_INIT_STD,
        ),
        audio_qformer_config=_qformer_config(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=256,
            encoder_hidden_size=audio_hidden_size,
            initializer_range=_TINY_QFORMER_INIT_STD,
        ),
        num_visual_queries=num_queries,
        num_audio_queries=num_queries,
        video_token_id=video_token_id,
        audio_token_id=audio_token_id,
        image_token_id=image_token_id,
        vision_feature_layer=vision_feature_layer,
        vision_hidden_size=vision_hidden_size,
        audio_hidden_size=audio_hidden_size,
        standardize_features=True,
        mask_decoder_config=(
            mask_decoder_tiny_config(
                llm_hidden_size=text_config.hidden_size,
                vision_hidden_size=vision_hidden_size,
                num_classes=num_mask_classes,
            )
            if use_mask_decoder
            else None
        ),
        mask_token_ids=list(mask_token_ids) if use_mask_decoder else None,
    )


# transformers' Auto classes read a Crab folder's config.json (AutoTokenizer does, to pick a tokenizer); without the
# registration they fall back to a bare PreTrainedConfig and warn that a `crab` model is loaded as another type.
AutoConfig.register(CrabConfig.model_type, CrabConfig, exist_ok=True)
