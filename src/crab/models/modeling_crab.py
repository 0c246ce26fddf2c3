"""The Crab model: Q-Former projectors + Llama LLM over pre-computed encoder features (whole forward here).

Implements crab-reference sections 1.1-1.7. Per video frame (or image), the CLIP layer-23 patch tokens go
through ``LayerNorm -> Q-Former with learned queries (cross-attention in every layer) -> Linear-GELU-Linear``
and become ``num_visual_queries`` LLM tokens; per audio clip the BEATs tokens go through the audio twin of
that projector. The projected tokens replace the ``<video>`` / ``<audio>`` / ``<image>`` placeholder tokens
of the prompt (already expanded by the collator to one placeholder per projected token) and the sequence
runs through ``LlamaForCausalLM`` with the usual shifted cross-entropy over labels != -100.

How it differs from the authors' code (a LLaVA fork):

- The frozen encoders are not inside the model: the ``features`` stage runs CLIP and BEATs once, and the
  model reads ``video_features (B_v, T, P, Dv)``, ``audio_features (B_a, C, N, Da)`` and
  ``image_features (B_i, P, Dv)``. Ragged batches (mixed tasks: 5 or 10 clips, 48 or 96 BEATs tokens) may
  pass a list of per-occurrence tensors instead; segments of equal length share one Q-Former call.
- The Q-Former is transformers' ``Blip2QFormerModel`` (sizes from the sub-configs). Like Crab's
  ``BertLMHeadModel.bert(query_embeds=...)``, it applies its embedding LayerNorm and dropout to the query
  embeddings (``Blip2QFormerModel.layernorm`` / ``.dropout``); unlike Crab's, it carries no unused BERT
  word/position embeddings, text-branch FFNs or MLM head.
- Placeholders are merged with a per-modality count check and ``masked_scatter`` (transformers
  ``LlavaModel``), batched, instead of a per-sample Python splice.
- ``generate`` embeds the prompt once and decodes with the KV cache under the caller's attention mask, so
  left-padded batches decode exactly like single samples (Crab generated from ``inputs_embeds`` without a
  mask); transformers derives ``position_ids = cumsum(mask) - 1`` for the prompt and extends them per step.
- The optional segmentation decoder (crab-ref 1.8, ``config.mask_decoder_config``) reads the post-norm final
  hidden states that *predict* ``<mask_0..5>`` (:func:`~crab.models.mask_decoder.gather_mask_token_hidden`) in
  ``forward`` when ``mask_features`` are given, and returns ``mask_logits`` beside the LM output; the
  segmentation loss is the training stage's. At inference :meth:`CrabForConditionalGeneration.predict_masks`
  runs one teacher-forced forward over prompt + generated answer and takes the *same* positions (Crab's
  ``generate_avs`` took them one token earlier, crab-ref 5.1).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel, GenerationMixin, LlamaForCausalLM, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import CausalLMOutputWithPast

from crab.models.configuration_crab import CrabConfig
from crab.models.mask_decoder import CrabMaskDecoder, gather_mask_token_hidden, init_mask_decoder_weights

__all__ = [
    "CrabCausalLMOutputWithPast",
    "CrabForConditionalGeneration",
    "CrabMaskPrediction",
    "CrabPreTrainedModel",
    "CrabQFormerProjector",
    "Features",
    "parameter_counts",
    "set_trainable",
]

logger = logging.getLogger(__name__)

#: Features of one modality: a stacked tensor, or one tensor per placeholder occurrence for ragged batches.
Features = torch.Tensor | Sequence[torch.Tensor]


@dataclass
class CrabCausalLMOutputWithPast(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus the segmentation decoder's output.

    Args:
        mask_logits: (B_s, T, C, S, S) mask logits of the B_s samples whose ``input_ids`` hold the mask tokens,
            in batch order; ``None`` when no ``mask_features`` were given.
    """

    mask_logits: torch.Tensor | None = None


class CrabMaskPrediction(NamedTuple):
    """What :meth:`CrabForConditionalGeneration.predict_masks` returns.

    Attributes:
        mask_logits: (B_m, T, C, S, S) logits of the rows with every mask token exactly once, in batch order.
        has_masks: (B,) bool, which rows those are (a generation may lack or repeat a mask token).
    """

    mask_logits: torch.Tensor
    has_masks: torch.Tensor


class CrabQFormerProjector(nn.Module):
    """Encoder tokens of one segment (frame / clip) -> ``num_queries`` LLM-width tokens (crab-ref 1.3, 1.5).

    Args:
        qformer_config: the Q-Former's config; ``encoder_hidden_size`` is the feature width.
        num_queries: learned queries, i.e. output tokens per segment.
        output_hidden_size: the LLM width.
        standardize: standardise each feature dimension with the persistent buffers ``feature_mean`` and
            ``feature_std`` (identity until :meth:`set_feature_statistics`) before the LayerNorm
            (``CrabConfig.standardize_features``).
        num_positions: learned position embeddings ``feature_position`` added after the LayerNorm, one per input
            token of a segment (``CrabConfig.visual_feature_positions``); 0: none.
    """

    def __init__(
        self,
        qformer_config: Blip2QFormerConfig,
        num_queries: int,
        output_hidden_size: int,
        standardize: bool = False,
        num_positions: int = 0,
    ) -> None:
        super().__init__()
        query_width, feature_width = qformer_config.hidden_size, qformer_config.encoder_hidden_size
        self.standardize = standardize
        self.feature_position = nn.Parameter(torch.zeros(num_positions, feature_width)) if num_positions else None
        if standardize:
            self.register_buffer("feature_mean", torch.zeros(feature_width))  # (D_enc,)
            self.register_buffer("feature_std", torch.ones(feature_width))  # (D_enc,)
        self.feature_norm = nn.LayerNorm(feature_width)  # Crab's visual_ln / audio_ln
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, query_width))
        self.qformer = Blip2QFormerModel._from_config(qformer_config)
        self.linear_1 = nn.Linear(query_width, output_hidden_size)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(output_hidden_size, output_hidden_size)

    def set_feature_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Fix the standardisation: ``(D_enc,)`` mean and std of the training features (std > 0).

        Raises:
            ValueError: the projector does not standardise, a shape differs from ``(D_enc,)``, or a std is not
                positive and finite.
        """
        if not self.standardize:
            raise ValueError("this projector does not standardise its features (CrabConfig.standardize_features)")
        width = self.feature_mean.shape[0]
        if mean.shape != (width,) or std.shape != (width,):
            raise ValueError(
                f"feature statistics must have shape ({width},), got {tuple(mean.shape)}, {tuple(std.shape)}"
            )
        if not bool(torch.isfinite(mean).all()) or not bool((torch.isfinite(std) & (std > 0)).all()):
            raise ValueError("feature statistics must be finite with a positive std")
        with torch.no_grad():
            self.feature_mean.copy_(mean)
            self.feature_std.copy_(std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project a batch of segments.

        Args:
            features: (S, N, D_enc) encoder tokens of S segments.

        Returns:
            (S, num_queries, output_hidden_size).
        """
        features = features.to(self.feature_norm.weight.dtype)  # (S, N, D_enc)
        if self.standardize:
            features = (features - self.feature_mean) / self.feature_std
        features = self.feature_norm(features)  # (S, N, D_enc)
        if self.feature_position is not None:
            if features.shape[1] != self.feature_position.shape[0]:
                raise ValueError(
                    f"the projector has {self.feature_position.shape[0]} position embeddings but got "
                    f"{features.shape[1]} tokens a segment (features of another encoder?)"
                )
            features = features + self.feature_position.to(features.dtype)  # (S, N, D_enc)
        queries = self.query_tokens.expand(features.shape[0], -1, -1)  # (S, Q, Hq)
        hidden = self.qformer(query_embeds=queries, encoder_hidden_states=features).last_hidden_state  # (S, Q, Hq)
        return self.linear_2(self.act(self.linear_1(hidden)))  # (S, Q, H)


class CrabPreTrainedModel(PreTrainedModel):
    """Weight init and loading plumbing shared by Crab models."""

    config_class = CrabConfig
    base_model_prefix = "crab"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["CrabQFormerProjector", "LlamaDecoderLayer"]  # + "CrabMaskDecoder" per instance

    def _init_weights(self, module: nn.Module) -> None:
        # Linears N(0, initializer_range), LayerNorms (1, 0); sub-models (Q-Former, Llama) use their own init.
        super()._init_weights(module)
        if isinstance(module, CrabQFormerProjector):
            init.normal_(module.query_tokens, mean=0.0, std=self.config.initializer_range)  # Crab: N(0, 0.02)
            if module.standardize:  # identity until pretrain sets the training statistics
                init.zeros_(module.feature_mean)
                init.ones_(module.feature_std)
            if module.feature_position is not None:  # zero: training starts from the projector without positions
                init.zeros_(module.feature_position)
        elif isinstance(module, CrabMaskDecoder):
            # Visited after its children: overrides their generic N(0, 0.02) with the decoder's own (SAM) init;
            # tensors loaded from a checkpoint are skipped by ``transformers.initialization``.
            init_mask_decoder_weights(module)


class CrabForConditionalGeneration(CrabPreTrainedModel, GenerationMixin):
    """Crab: visual and audio Q-Former projectors feeding a ``LlamaForCausalLM`` (``language_model``).

    With ``config.mask_decoder_config`` set, ``mask_decoder`` is a :class:`CrabMaskDecoder`; otherwise it is
    ``None`` and the model (its modules, state dict and outputs) is the plain LM.

    Args:
        config: the model config (build it with ``crab_tiny_config`` or ``crab_llama2_7b_config``).
    """

    def __init__(self, config: CrabConfig) -> None:
        super().__init__(config)
        llm_width = config.text_config.hidden_size
        standardize = config.standardize_features
        self.visual_projector = CrabQFormerProjector(
            config.visual_qformer_config, config.num_visual_queries, llm_width, standardize,
            config.visual_feature_positions,
        )  # fmt: skip
        self.audio_projector = CrabQFormerProjector(
            config.audio_qformer_config, config.num_audio_queries, llm_width, standardize
        )
        self.language_model = LlamaForCausalLM._from_config(config.text_config)
        # Last, so the other modules' state-dict keys and order are those of a model without a decoder.
        decoder_config = config.mask_decoder_config
        self.mask_decoder = None if decoder_config is None else CrabMaskDecoder(decoder_config)
        if self.mask_decoder is not None:
            # Per instance: its forward mixes its own parameters with its children's outputs, so a device map must
            # keep it whole; the class list stays what every model has, since accelerate's FSDP wrap list
            # (configs/accelerate/fsdp.yaml, checked against the class list) fails on a class the model lacks.
            self._no_split_modules = [*self._no_split_modules, "CrabMaskDecoder"]
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        video_features: Features | None = None,
        audio_features: Features | None = None,
        image_features: Features | None = None,
    ) -> torch.Tensor:
        """Token embeddings with every placeholder replaced by its projected feature token.

        Feature rows are consumed in the order their placeholders appear in the batch (row-major over
        samples; within a video, frame-major; within an audio, clip-major).

        Args:
            input_ids: (B, L) token ids with expanded placeholders.
            video_features: (B_v, T, P, Dv) per-frame CLIP patch tokens, or a list of (T_i, P, Dv).
            audio_features: (B_a, C, N, Da) per-clip BEATs tokens, or a list of (C_i, N_i, Da).
            image_features: (B_i, P, Dv) CLIP patch tokens of single images, or a list of (P_i, Dv).

        Returns:
            (B, L, H) input embeddings for the LLM.

        Raises:
            ValueError: if a modality's placeholder count differs from its number of projected tokens
                (e.g. ``"video placeholders: 640 tokens in input_ids, 320 feature tokens"``), or a feature
                tensor has the wrong rank.
        """
        inputs_embeds = self.get_input_embeddings()(input_ids)  # (B, L, H)
        if image_features is not None:  # an image is a one-frame video: (B_i, 1, P, Dv)
            if isinstance(image_features, torch.Tensor):
                _check_rank(image_features, 3, "image")
                image_features = image_features.unsqueeze(1)
            else:
                image_features = [_check_rank(f, 2, "image").unsqueeze(0) for f in image_features]
        merges = (
            ("video", self.config.video_token_id, self.visual_projector, video_features),
            ("image", self.config.image_token_id, self.visual_projector, image_features),
            ("audio", self.config.audio_token_id, self.audio_projector, audio_features),
        )
        for modality, token_id, projector, features in merges:
            placeholder_mask = input_ids == token_id  # (B, L)
            num_placeholders = int(placeholder_mask.sum())
            projected = _project_segments(projector, features, modality)  # (n, H) or None
            num_features = 0 if projected is None else projected.shape[0]
            if num_placeholders != num_features:
                raise ValueError(
                    f"{modality} placeholders: {num_placeholders} tokens in input_ids, {num_features} feature tokens"
                )
            if projected is not None:
                mask = placeholder_mask.unsqueeze(-1).to(inputs_embeds.device)  # (B, L, 1)
                inputs_embeds = inputs_embeds.masked_scatter(mask, projected.to(inputs_embeds.dtype))
        return inputs_embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        video_features: Features | None = None,
        audio_features: Features | None = None,
        image_features: Features | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache=None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mask_features: Sequence[torch.Tensor] | None = None,
        **kwargs,
    ) -> CrabCausalLMOutputWithPast:
        """Language-model logits (and loss) for a batch of multimodal prompts, plus mask logits if asked.

        Args:
            input_ids: (B, L) token ids with expanded placeholders; exclusive with ``inputs_embeds``.
            attention_mask: (B, L) 1 on tokens, 0 on (left) padding.
            position_ids: (B, L) positions; the collator gives ``cumsum(attention_mask) - 1`` clamped at 0.
            video_features: see :meth:`embed_inputs`.
            audio_features: see :meth:`embed_inputs`.
            image_features: see :meth:`embed_inputs`.
            labels: (B, L) target ids, -100 where no loss is taken; the LLM shifts them by one.
            inputs_embeds: (B, L, H) ready embeddings (e.g. from :meth:`embed_inputs`).
            cache: a transformers KV cache to extend.
            use_cache: return a KV cache; defaults to off when ``labels`` are given (training).
            logits_to_keep: compute logits for the last ``n`` positions only (0 = all).
            mask_features: the segmentation decoder's CLIP patch tokens, one (B_s, T, P, Dv) tensor per feature
                level (low level first), with one row per sample whose ``input_ids`` contain mask tokens, in batch
                order; those samples' T frames share the prompt of their six mask tokens. Needs a decoder.
            **kwargs: passed to the LLM (e.g. ``num_items_in_batch`` for the loss).

        Returns:
            ``CrabCausalLMOutputWithPast`` with ``logits (B, L, V)``, ``loss`` (mean CE over labels != -100) and,
            with ``mask_features``, ``mask_logits (B_s, T, C, S, S)``. The segmentation loss is left to the
            caller (the training stage weighs it against the LM loss).

        Raises:
            ValueError: if both or neither of ``input_ids`` / ``inputs_embeds`` are given, if features come
                with ``inputs_embeds``, or on a placeholder count mismatch; with ``mask_features``, if the model
                has no decoder, ``input_ids`` is missing, the feature rows differ from the number of samples with
                mask tokens (naming both), or such a sample lacks or repeats a mask token.
        """
        has_features = any(f is not None for f in (video_features, audio_features, image_features))
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, video_features, audio_features, image_features)
        elif has_features:
            raise ValueError("features are merged through placeholder input_ids; pass input_ids, not inputs_embeds")
        if use_cache is None and labels is not None:
            use_cache = False  # a training step never reuses the cache
        mask_rows = None
        if mask_features is not None:
            mask_rows = self._mask_rows(input_ids, mask_features)  # (B,) bool; checks decoder and row count
            wants_hidden_states = kwargs.get("output_hidden_states")
            if wants_hidden_states not in (None, False, True):
                raise ValueError("output_hidden_states must be a bool with mask_features (the decoder needs the last)")
            # -1 keeps only the last hidden state, which transformers ties to the final-norm output.
            kwargs["output_hidden_states"] = True if wants_hidden_states else -1
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        mask_logits, hidden_states = None, outputs.hidden_states
        if mask_rows is not None:
            last_hidden = hidden_states[-1]  # (B, L, H), after the final RMSNorm
            mask_logits = self._decode_masks(last_hidden[mask_rows], input_ids[mask_rows], mask_features, mask_rows)
            if not wants_hidden_states:
                hidden_states = None  # requested for the decoder only
        return CrabCausalLMOutputWithPast(
            loss=outputs.loss,
            logits=outputs.logits,
            cache=outputs.cache,
            hidden_states=hidden_states,
            attentions=outputs.attentions,
            mask_logits=mask_logits,
        )

    def _mask_rows(self, input_ids: torch.LongTensor | None, mask_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B,) bool: the rows holding any mask token, after checking they match ``mask_features``' rows."""
        if self.mask_decoder is None:
            raise ValueError("mask_features given but the model has no mask decoder (config.mask_decoder_config)")
        if input_ids is None:
            raise ValueError("mask_features need input_ids, which locate the mask tokens")
        mask_ids = torch.tensor(self.config.mask_token_ids, device=input_ids.device)
        rows = torch.isin(input_ids, mask_ids).any(dim=1)  # (B,)
        num_rows = int(rows.sum())
        for level, features in enumerate(mask_features):
            if features.ndim != 4:
                raise ValueError(f"mask_features level {level} must be (B_s, T, P, Dv), got {tuple(features.shape)}")
            if features.shape[0] != num_rows:
                raise ValueError(
                    f"mask_features level {level}: {features.shape[0]} rows, but {num_rows} samples in input_ids "
                    "contain mask tokens (one row each, in batch order)"
                )
        return rows

    def _decode_masks(
        self,
        hidden_states: torch.Tensor,
        input_ids: torch.LongTensor,
        mask_features: Sequence[torch.Tensor],
        rows: torch.Tensor,
    ) -> torch.Tensor:
        """Gather the mask tokens' states and run the decoder.

        Args:
            hidden_states: (B_s, L, H) post-norm last hidden states of the rows to decode.
            input_ids: (B_s, L) their ids.
            mask_features: one (B_s, T, P, Dv) tensor per level.
            rows: (B,) bool, which batch rows these are (for error messages).

        Returns:
            (B_s, T, C, S, S) mask logits.
        """
        try:
            prompts = gather_mask_token_hidden(hidden_states, input_ids, self.config.mask_token_ids)  # (B_s, 6, H)
        except ValueError as error:  # its sample index counts the selected rows only
            batch_rows = rows.nonzero().flatten().tolist()
            raise ValueError(f"among the batch rows with mask tokens {batch_rows}: {error}") from error
        return self.mask_decoder(prompts, mask_features)

    @torch.no_grad()
    def predict_masks(
        self,
        input_ids: torch.LongTensor,
        mask_features: Sequence[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        video_features: Features | None = None,
        audio_features: Features | None = None,
        image_features: Features | None = None,
    ) -> CrabMaskPrediction:
        """Masks for generated answers: one teacher-forced forward over prompt + answer, training's positions.

        Call it with the sequences :meth:`generate` returned (prompt and answer) and the prompt's features. The
        decoder reads the same states as in training, those predicting ``<mask_0..5>``; Crab's ``generate_avs``
        read the generation-step states, one token earlier (crab-ref 5.1). Rows whose answer lacks a mask token
        or repeats one (Crab: "no mask") are skipped and flagged in ``has_masks``.

        Args:
            input_ids: (B, L) left-padded prompt + generated ids (tokens after EOS are ignored by causality).
            mask_features: one (B, T, P, Dv) tensor per level, a row for *every* sample.
            attention_mask: (B, L) 1 on tokens, 0 on the prompt's left padding; all ones when omitted. Extend the
                prompt's mask with ones over the generated part.
            video_features: see :meth:`embed_inputs`.
            audio_features: see :meth:`embed_inputs`.
            image_features: see :meth:`embed_inputs`.

        Returns:
            ``CrabMaskPrediction(mask_logits (B_m, T, C, S, S), has_masks (B,))``.

        Raises:
            ValueError: if the model has no decoder or ``mask_features`` do not have B rows.
        """
        if self.mask_decoder is None:
            raise ValueError("predict_masks needs a mask decoder (config.mask_decoder_config is None)")
        batch = input_ids.shape[0]
        for level, features in enumerate(mask_features):
            if features.ndim != 4 or features.shape[0] != batch:
                raise ValueError(
                    f"mask_features level {level}: shape {tuple(features.shape)}, expected (B={batch}, T, P, Dv)"
                )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # The positions generation used (cumsum of the mask), so that the states match the decoded ones.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)
        outputs = self(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            video_features=video_features,
            audio_features=audio_features,
            image_features=image_features,
            use_cache=False,
            logits_to_keep=1,  # the LM logits are not needed
            output_hidden_states=-1,
        )
        mask_ids = torch.tensor(self.config.mask_token_ids, device=input_ids.device)
        counts = (input_ids.unsqueeze(-1) == mask_ids).sum(dim=1)  # (B, K)
        has_masks = (counts == 1).all(dim=1)  # (B,)
        last_hidden = outputs.hidden_states[-1]  # (B, L, H)
        selected = [features[has_masks] for features in mask_features]  # each (B_m, T, P, Dv)
        if not bool(has_masks.any()):  # the decoder is not run on an empty batch
            decoder_config = self.mask_decoder.config
            size, num_frames = decoder_config.image_size, mask_features[0].shape[1]
            empty = self.mask_decoder.scale_weights.new_zeros(0, num_frames, decoder_config.num_classes, size, size)
            return CrabMaskPrediction(empty, has_masks)
        mask_logits = self._decode_masks(last_hidden[has_masks], input_ids[has_masks], selected, has_masks)
        return CrabMaskPrediction(mask_logits, has_masks)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        video_features: Features | None = None,
        audio_features: Features | None = None,
        image_features: Features | None = None,
        **generate_kwargs,
    ) -> torch.LongTensor:
        """Decode answers; the features are consumed once, on the prefill step.

        The prompt is embedded once and handed to the LLM's ``generate`` together with ``input_ids`` and the
        attention mask; transformers derives the prompt's position ids from the mask and keeps a KV cache,
        so a left-padded batch decodes as each sample alone would. Decoding settings come from
        ``generate_kwargs`` (e.g. ``max_new_tokens=100, do_sample=False``) over ``self.generation_config``.

        Args:
            input_ids: (B, L) left-padded prompt ids with expanded placeholders.
            attention_mask: (B, L) 1 on tokens, 0 on padding; all ones when omitted (unpadded input).
            video_features: see :meth:`embed_inputs`.
            audio_features: see :meth:`embed_inputs`.
            image_features: see :meth:`embed_inputs`.
            **generate_kwargs: passed to ``GenerationMixin.generate``.

        Returns:
            (B, L + n_new) ids: the prompt followed by the generated tokens (slice ``[:, L:]`` for answers).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs_embeds = self.embed_inputs(input_ids, video_features, audio_features, image_features)
        if "generation_config" not in generate_kwargs:
            # Our (saved) generation config, not the LLM's, updated with the call's settings.
            generation_config = copy.deepcopy(self.generation_config)
            generate_kwargs = generation_config.update(**generate_kwargs)
            if generation_config.pad_token_id is None:  # Crab pads with EOS (the LLM config has no pad id)
                generation_config.pad_token_id = generation_config.eos_token_id
            generate_kwargs["generation_config"] = generation_config
        return self.language_model.generate(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs
        )


def _check_rank(features: torch.Tensor, rank: int, modality: str) -> torch.Tensor:
    """Return ``features`` after checking its number of dimensions (``ValueError`` naming the modality)."""
    if features.ndim != rank:
        raise ValueError(f"{modality} features must have {rank} dimensions, got shape {tuple(features.shape)}")
    return features


def _project_segments(projector: CrabQFormerProjector, features: Features | None, modality: str) -> torch.Tensor | None:
    """Project every segment (frame / clip) of a modality and flatten to one row per LLM token.

    Args:
        projector: the modality's projector.
        features: (B, S, N, D) stacked, or a list of (S_i, N_i, D); ``None`` or an empty list for none.
        modality: name used in error messages.

    Returns:
        (sum_i S_i * Q, H) rows ordered occurrence, segment, query; ``None`` when there are no features.
    """
    if features is None:
        return None
    if isinstance(features, torch.Tensor):
        _check_rank(features, 4, modality)
        return projector(features.flatten(0, 1)).flatten(0, 1)  # (B*S, N, D) -> (B*S, Q, H) -> (B*S*Q, H)
    features = [_check_rank(f, 3, modality) for f in features]
    if not features:
        return None
    # Segments of equal token count share one Q-Former call; the occurrence order is restored afterwards.
    by_length: dict[int, list[int]] = {}
    for index, occurrence in enumerate(features):
        by_length.setdefault(occurrence.shape[1], []).append(index)
    rows: list[torch.Tensor | None] = [None] * len(features)
    for indices in by_length.values():
        projected = projector(torch.cat([features[i] for i in indices]))  # (sum S_i, Q, H)
        for index, chunk in zip(indices, projected.split([features[i].shape[0] for i in indices]), strict=True):
            rows[index] = chunk.flatten(0, 1)  # (S_i * Q, H)
    return torch.cat(rows)


_COMPONENTS = ("visual_projector", "audio_projector", "language_model")


def parameter_counts(model: CrabForConditionalGeneration, *, trainable_only: bool = False) -> dict[str, int]:
    """Number of parameters per component (works on the ``meta`` device).

    Args:
        model: a Crab model.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        ``{"visual_projector": n, "audio_projector": n, "language_model": n}``, plus ``"mask_decoder": n`` when
        the model has a decoder.
    """
    components = _COMPONENTS if model.mask_decoder is None else (*_COMPONENTS, "mask_decoder")
    counts = {}
    for name in components:
        params = getattr(model, name).parameters()
        counts[name] = sum(p.numel() for p in params if p.requires_grad or not trainable_only)
    return counts


def set_trainable(
    model: CrabForConditionalGeneration,
    *,
    llm: Literal["frozen", "full"],
    projectors: bool,
    mask_decoder: bool = False,
) -> dict[str, int]:
    """Set ``requires_grad`` by component (house-style 4.1); adapters are added by peft afterwards.

    Args:
        model: a Crab model.
        llm: ``"frozen"`` (no LLM weight trains, as in Crab's pre-training and LoRA stages) or ``"full"``.
        projectors: whether both Q-Former projectors (LayerNorm, queries, Q-Former, MLP) train.
        mask_decoder: whether the segmentation decoder trains (Crab's segmentation stages); a model without a
            decoder accepts only ``False``.

    Returns:
        Trainable parameter count per component, as :func:`parameter_counts` gives it.

    Raises:
        ValueError: on an unknown ``llm`` mode, or ``mask_decoder=True`` for a model without a decoder.
    """
    if llm not in ("frozen", "full"):
        raise ValueError(f"llm must be 'frozen' or 'full', got {llm!r}")
    if mask_decoder and model.mask_decoder is None:
        raise ValueError("mask_decoder=True but the model has no mask decoder (config.mask_decoder_config is None)")
    model.language_model.requires_grad_(llm == "full")
    model.visual_projector.requires_grad_(projectors)
    model.audio_projector.requires_grad_(projectors)
    if model.mask_decoder is not None:
        model.mask_decoder.requires_grad_(mask_decoder)
    counts = parameter_counts(model, trainable_only=True)
    logger.info("trainable parameters: %s", counts)
    return counts
