"""Paper-shape GPU check: the full-size Crab model with random weights, timed part by part.

Issue 6 asks that the paper profile's shapes run on a real accelerator, not only on the ``meta`` device. This
script builds every full-size component with the project's own code and random weights in ``--dtype``
(bf16 on the GPU) and times what a researcher will run:

* ``clip``: CLIP ViT-L/14 at 224 px (24 layers, width 1024), one forward per batch of frames with
  ``output_hidden_states`` as the ``features`` stage runs it (:func:`crab.features.extract.encode_frames`
  minus the CPU-side image processor), in frames/s;
* ``beats``: BEATs iter3+ (12 layers, width 768) on 1-s clips, Kaldi fbank on the device included
  (:func:`crab.features.fbank.beats_fbank`), in clips/s;
* ``train``: one ``finetune`` step of :class:`~crab.models.modeling_crab.CrabForConditionalGeneration`
  (Llama-2-7B + both Q-Former projectors) with the stage's own adapter
  (:func:`crab.train.finetune.attach_adapter`, IA-LoRA r 8 / alpha 16 / 3 heads from ``params.yaml``):
  forward with labels, backward, AdamW on the trainable set, at ``--batch`` x ~``--seq-len`` tokens laid out
  like an AVE sample (10 frames x 32 queries of video, 10 clips x 32 queries of audio, text, an answer);
  once plain and once with gradient checkpointing; ms per step, tokens/s, peak memory;
* ``generate``: greedy decoding with the KV cache through the adapter, batch 1 and ``--gen-batch``, in ms
  per new token after the first (the prompt's prefill is excluded, as in ``ia_lora.py``), with a dynamic
  cache (eager) and with the static cache that ``evaluate.cache: static`` selects (compiled on a GPU);
* ``segment``: the same model's segmentation branch (the paper's mask decoder on CLIP layers 14 / 22): one
  inference forward over prompt + answer with the six mask tokens (``predict_masks``, S4's 5 frames), and
  the decoder alone, in ms.

Each part runs ``--warmup`` untimed calls, then ``--repeats`` timed ones (device-synchronised); the table gives
the median and the spread. ``--llm-layers`` / ``--clip-layers`` shrink the depth for a CPU dry run of the same
code paths (widths stay the paper's). Run ``python benchmarks/paper_gpu.py --help``; ``benchmarks/README.md``
shows the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, StoppingCriteriaList

from ia_lora import TokenClock, timed  # same folder: the benchmarks share their timing helpers

logger = logging.getLogger("benchmarks.paper_gpu")

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTS: tuple[str, ...] = ("clip", "beats", "train", "generate", "segment")
NUM_FRAMES, NUM_CLIPS, NUM_QUERIES = 10, 10, 32  # crab-reference 8: 10 frames, 10 one-second clips, 32 queries
SEG_FRAMES = 5  # AVSBench S4 / MS3: 5 frames per video
CLIP_PATCHES, CLIP_WIDTH, BEATS_TOKENS, BEATS_WIDTH = 256, 1024, 48, 768  # ViT-L/14 at 224 px; BEATs, 1 s


def clip_vit_l14_config(num_layers: int = 24) -> CLIPVisionConfig:
    """openai/clip-vit-large-patch14's vision tower (``num_layers`` < 24 only for a dry run)."""
    return CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=num_layers, num_attention_heads=16,
        image_size=224, patch_size=14, hidden_act="quick_gelu", projection_dim=768,
    )  # fmt: skip


def median_row(times_ms: list[float], **extra: Any) -> dict[str, Any]:
    """Median and quartiles of a part's timings plus whatever the part derives from them."""
    q1, _, q3 = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else (times_ms[0],) * 3
    return {"median_ms": statistics.median(times_ms), "q1_ms": q1, "q3_ms": q3, "n": len(times_ms), **extra}


def repeat(fn: Callable[[], float], repeats: int, warmup: int) -> list[float]:
    """``warmup`` untimed calls, then the times of ``repeats`` calls (``fn`` returns its own ms)."""
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(repeats)]


# ---------------------------------------------------------------- encoders


def bench_clip(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """CLIP ViT-L/14 forward with all hidden states (the features stage keeps layer 23; the decoder 14 and 22)."""
    with torch.device(device):
        vision = CLIPVisionModel(clip_vit_l14_config(args.clip_layers)).to(dtype).eval()
    pixels = torch.randn(args.clip_batch, 3, 224, 224, device=device, dtype=dtype)  # (b, 3, 224, 224)

    @torch.inference_mode()
    def forward() -> None:
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states  # each (b, 257, 1024)
        assert hidden[-1].shape == (args.clip_batch, CLIP_PATCHES + 1, CLIP_WIDTH)

    times = repeat(timed(forward, device), args.repeats, args.warmup)
    row = median_row(times, batch=args.clip_batch, layers=args.clip_layers)
    row["frames_per_s"] = args.clip_batch * 1e3 / row["median_ms"]
    return row


def bench_beats(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """BEATs iter3+ on 1-s clips, fbank (float32, as the checkpoint expects) on the device included."""
    from crab.features.fbank import beats_fbank
    from crab.models.beats import BEATs, beats_iter3_plus_as2m_config

    with torch.device(device):
        beats = BEATs(beats_iter3_plus_as2m_config()).to(dtype).eval()
    waves = torch.rand(args.clip_batch, 16000, device=device) * 2 - 1  # (b, 16000) in [-1, 1]

    @torch.inference_mode()
    def forward() -> None:
        tokens = beats.extract_features(beats_fbank(waves).to(dtype))  # (b, 48, 768)
        assert tokens.shape == (args.clip_batch, BEATS_TOKENS, BEATS_WIDTH)

    times = repeat(timed(forward, device), args.repeats, args.warmup)
    row = median_row(times, batch=args.clip_batch)
    row["clips_per_s"] = args.clip_batch * 1e3 / row["median_ms"]
    return row


# ---------------------------------------------------------------- the Crab model


@dataclasses.dataclass(frozen=True)
class Batch:
    """One AVE-shaped batch: prompt ids with expanded placeholders, labels on the answer, features."""

    input_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L), -100 outside the answer
    video_features: torch.Tensor  # (B, T, P, 1024)
    audio_features: torch.Tensor  # (B, C, N, 768)
    prompt_len: int  # tokens before the answer


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    """Paper-shape Crab (with the mask decoder), random weights in ``dtype``, the finetune stage's adapter."""
    from crab.config import load_params
    from crab.models.configuration_crab import crab_llama2_7b_config
    from crab.models.modeling_crab import CrabForConditionalGeneration
    from crab.train.finetune import attach_adapter

    config = crab_llama2_7b_config(use_mask_decoder=True)
    config.text_config.num_hidden_layers = args.llm_layers
    torch.manual_seed(args.seed)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are created in dtype: no float32 copy of 7B parameters
    try:
        with torch.device(device):
            model = CrabForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    finetune = load_params(REPO_ROOT / "params.yaml").finetune  # adapter kind and LoRA sizes of the stage
    return attach_adapter(model, finetune), finetune


def make_batch(config: Any, batch: int, seq_len: int, device: torch.device, dtype: torch.dtype, seed: int) -> Batch:
    """Random text around AVE's placeholders: 640 feature tokens, the rest text, the last fifth the answer."""
    generator = torch.Generator().manual_seed(seed)
    num_video, num_audio = NUM_FRAMES * NUM_QUERIES, NUM_CLIPS * NUM_QUERIES
    num_text = seq_len - num_video - num_audio
    answer_len = max(seq_len // 5, 8)
    if num_text - answer_len < 4:
        raise ValueError(f"--seq-len {seq_len} leaves no room for text around {num_video + num_audio} feature tokens")

    def text(n: int) -> torch.Tensor:  # ordinary vocabulary ids (below the 17 added tokens)
        return torch.randint(3, 32000, (batch, n), generator=generator)

    head = (num_text - answer_len) // 2
    ids = torch.cat(
        [
            text(head),
            torch.full((batch, num_video), config.video_token_id),
            text(4),
            torch.full((batch, num_audio), config.audio_token_id),
            text(num_text - answer_len - head - 4),
            text(answer_len),
        ],
        dim=1,
    )  # (B, L)
    labels = ids.clone()
    labels[:, : seq_len - answer_len] = -100
    video = torch.randn(batch, NUM_FRAMES, CLIP_PATCHES, CLIP_WIDTH, generator=generator)
    audio = torch.randn(batch, NUM_CLIPS, BEATS_TOKENS, BEATS_WIDTH, generator=generator)
    return Batch(ids.to(device), labels.to(device), video.to(device, dtype), audio.to(device, dtype),
                 seq_len - answer_len)  # fmt: skip


def bench_train(model: Any, batch: Batch, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Finetune steps (forward, backward, AdamW), plain and with gradient checkpointing."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    rows: dict[str, Any] = {}
    crab = model.get_base_model()
    for name, checkpointing in (("train", False), ("train_gc", True)):
        if checkpointing:
            crab.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()

        def step() -> None:
            loss = model(input_ids=batch.input_ids, labels=batch.labels, video_features=batch.video_features,
                         audio_features=batch.audio_features).loss  # fmt: skip
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite loss {loss.item()}")

        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = repeat(timed(step, device), args.repeats, args.warmup)
        tokens = batch.input_ids.numel()
        row = median_row(times, batch=tuple(batch.input_ids.shape), gradient_checkpointing=checkpointing)
        row["tokens_per_s"] = tokens * 1e3 / row["median_ms"]
        if device.type == "cuda":
            row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        rows[name] = row
        if checkpointing:
            crab.activation_checkpointing_disable()
    optimizer.zero_grad(set_to_none=True)
    rows["trainable_parameters"] = sum(p.numel() for p in params)
    return rows


def bench_generate(model: Any, batch: Batch, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Greedy decoding of ``--new-tokens`` with the KV cache, batch 1 and ``--gen-batch``; ms per new token."""
    model.eval()
    rows = {}
    for cache, size in ((cache, size) for cache in args.caches for size in (1, args.gen_batch)):
        reps = -(-size // batch.input_ids.shape[0])  # repeat the batch's rows up to ``size``

        def rows_of(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(reps, *([1] * (t.dim() - 1)))[:size]

        prompt = rows_of(batch.input_ids[:, : batch.prompt_len])  # (size, P)
        kwargs = {
            "input_ids": prompt, "attention_mask": torch.ones_like(prompt),
            "video_features": rows_of(batch.video_features), "audio_features": rows_of(batch.audio_features),
            "do_sample": False, "max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens,
            "eos_token_id": 2, "pad_token_id": 2, **greedy_cache_settings(cache),
        }  # fmt: skip

        def run() -> float:
            clock = TokenClock(device)
            with torch.no_grad():
                model.generate(**kwargs, stopping_criteria=StoppingCriteriaList([clock]))
            if len(clock.stamps) != args.new_tokens:
                raise RuntimeError(f"generate produced {len(clock.stamps)} tokens, expected {args.new_tokens}")
            return (clock.stamps[-1] - clock.stamps[0]) * 1e3 / (args.new_tokens - 1)

        times = repeat(run, args.repeats, args.warmup)
        row = median_row(times, batch=size, prompt_len=batch.prompt_len, new_tokens=args.new_tokens)
        row["tokens_per_s"] = size * 1e3 / row["median_ms"]
        rows[f"generate_b{size}" + ("_static" if cache == "static" else "")] = row
    return rows


def greedy_cache_settings(cache: str) -> dict[str, Any]:
    """The evaluate stage's cache setting (``crab.eval.generation.greedy_settings``); eager when dynamic."""
    from crab.eval.generation import greedy_settings

    settings = {"cache_implementation": greedy_settings(1, 2, 2, cache)["cache_implementation"]}
    return settings if cache == "static" else {**settings, "disable_compile": True}


def bench_segment(model: Any, batch: Batch, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Segmentation: prompt + answer ending in the six mask tokens -> (B, 5, 1, 224, 224) mask logits."""
    crab = model.get_base_model()
    config = crab.config
    ids = batch.input_ids.clone()
    mask_ids = torch.tensor(config.mask_token_ids, device=device)
    ids[:, -len(mask_ids) :] = mask_ids  # the answer ends with <mask_0> ... <mask_5>
    generator = torch.Generator().manual_seed(args.seed + 1)
    levels = [
        torch.randn(ids.shape[0], SEG_FRAMES, CLIP_PATCHES, CLIP_WIDTH, generator=generator).to(device, crab.dtype)
        for _ in range(2)
    ]  # CLIP layers 14 and 22: each (B, 5, 256, 1024)
    model.eval()
    shapes: dict[str, Any] = {}

    def full() -> None:
        prediction = crab.predict_masks(ids, levels, video_features=batch.video_features,
                                        audio_features=batch.audio_features)  # fmt: skip
        shapes["mask_logits"] = tuple(prediction.mask_logits.shape)

    prompts = torch.randn(ids.shape[0], len(mask_ids), config.text_config.hidden_size, generator=generator)
    prompts = prompts.to(device, crab.dtype)  # (B, 6, 4096): the mask tokens' hidden states

    @torch.no_grad()
    def decoder_only() -> None:
        crab.mask_decoder(prompts, levels)

    with model.disable_adapter():  # the segmentation branch's cost, adapter or not, is the LLM's forward
        rows = {
            "segment_forward": median_row(repeat(timed(full, device), args.repeats, args.warmup),
                                          batch=ids.shape[0], frames=SEG_FRAMES),
            "segment_decoder": median_row(repeat(timed(decoder_only, device), args.repeats, args.warmup),
                                          batch=ids.shape[0], frames=SEG_FRAMES),
        }  # fmt: skip
    rows["segment_forward"]["mask_logits_shape"] = shapes["mask_logits"]
    return rows


# ---------------------------------------------------------------- report


def format_table(results: dict[str, Any], device: str) -> str:
    """One line per measurement: median, IQR, and the rate that matters for it."""
    rate_keys = (("frames_per_s", "frames/s"), ("clips_per_s", "clips/s"), ("tokens_per_s", "tokens/s"))
    lines = [f"{'measurement':<17} {'median ms':>10} {'IQR ms':>19} {'rate':>12} {'unit':<9} {'peak GiB':>8}  notes",
             "-" * 100]  # fmt: skip
    for name, row in results.items():
        if not isinstance(row, dict) or not ("median_ms" in row or "error" in row):
            continue
        if "error" in row:
            lines.append(f"{name:<17} FAILED: {row['error']}")
            continue
        rate, unit = next(((row[k], u) for k, u in rate_keys if k in row), (float("nan"), ""))
        unit = "tok/s" if unit == "tokens/s" else unit
        per = " (ms/token)" if name.startswith("generate") else ""
        notes = ", ".join(f"{k}={row[k]}" for k in ("batch", "prompt_len", "layers", "mask_logits_shape") if k in row)
        peak = f"{row['peak_mem_gib']:.1f}" if "peak_mem_gib" in row else ""
        lines.append(f"{name:<17} {row['median_ms']:>10.2f} {row['q1_ms']:>9.2f}-{row['q3_ms']:<9.2f} "
                     f"{rate:>12.1f} {unit:<9} {peak:>8}  {notes}{per}")  # fmt: skip
    lines.append(f"device: {device}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=lambda s: tuple(s.split(",")), default=PARTS, help=f"from {','.join(PARTS)}")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--llm-layers", type=int, default=32, help="Llama-2-7B has 32; fewer only for a dry run")
    parser.add_argument("--clip-layers", type=int, default=24, help="ViT-L/14 has 24; fewer only for a dry run")
    parser.add_argument("--batch", type=int, default=2, help="training batch (the issue: 2 x ~1000 tokens)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--gen-batch", type=int, default=8, help="second decoding batch size (evaluate uses 16)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--caches", type=lambda s: tuple(s.split(",")), default=("dynamic", "static"),
                        help="KV caches to decode with (static: transformers compiles the step on a GPU)")  # fmt: skip
    parser.add_argument("--clip-batch", type=int, default=64, help="frames (CLIP) or 1-s clips (BEATs) per forward")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here (after each part)")
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown or args.repeats < 1 or args.new_tokens < 2:
        parser.error(f"bad --parts {sorted(unknown)}, --repeats < 1 or --new-tokens < 2")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the parts; 0 when all ran, 1 when one failed (the others still run and are reported)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "results": {}, "failed": False,
                              "machine": {"device": gpu, "torch": torch.__version__}}  # fmt: skip

    def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        start = time.perf_counter()
        try:
            out = fn()
            report["results"].update(out if name not in ("clip", "beats") else {name: out})
        except Exception as err:  # noqa: BLE001  (one failing part must not hide the others)
            report["failed"] = True
            report["results"][name] = {"error": f"{type(err).__name__}: {err}"[:300]}
            logger.error("part %s failed:\n%s", name, traceback.format_exc())
        logger.info("part %s done in %.1f s", name, time.perf_counter() - start)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2, default=str))
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for part in ("clip", "beats"):
        if part in args.parts:
            attempt(part, lambda part=part: (bench_clip if part == "clip" else bench_beats)(args, device, dtype))
    model_parts = [p for p in ("train", "generate", "segment") if p in args.parts]
    if model_parts:
        state: dict[str, Any] = {}

        def build() -> dict[str, Any]:
            start = time.perf_counter()
            state["model"], finetune = build_model(args, device, dtype)
            state["batch"] = make_batch(state["model"].get_base_model().config, args.batch, args.seq_len, device,
                                        dtype, args.seed)  # fmt: skip
            counts = {"adapter": finetune.adapter, "r": finetune.lora.r, "heads": finetune.lora.num_heads,
                      "llm_layers": args.llm_layers, "build_s": round(time.perf_counter() - start, 1)}  # fmt: skip
            logger.info("built the paper-shape model: %s", counts)
            return {"model": counts}

        attempt("model", build)
        benches = {"train": bench_train, "generate": bench_generate, "segment": bench_segment}
        for part in model_parts if "batch" in state else []:
            attempt(part, lambda part=part: benches[part](state["model"], state["batch"], args, device))
    if "model" in report["results"]:
        logger.info("model: %s", report["results"]["model"])
    logger.info("\n%s", format_table(report["results"], gpu))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
