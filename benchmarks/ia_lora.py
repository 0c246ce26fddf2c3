"""Fast IA-LoRA benchmark: plain LoRA vs Crab-style IA-LoRA vs ours (``crab.lora``), side by side.

DESIGN.md section 6 promises that our IA-LoRA (shared A, ``num_heads`` routed B heads, per-token float32
softmax router; reference section 2.1) costs about what plain LoRA costs, whereas Crab's per-head loop, which
recomputes ``A(dropout(x))`` for every head, costs about 2x. This script measures exactly that on one
random-weight ``LlamaForCausalLM`` whose frozen base weights are shared by every variant:

* ``base``: no adapter (a floor; it has no training step);
* ``lora``: peft plain LoRA, the baseline every ratio is taken against;
* ``crab``: :class:`CrabStyleIALoraLinear`, a faithful re-implementation of Crab's
  ``peft_hyper/tuners/lora.py: Linear.forward`` (Python loop over heads, A recomputed per head), used for
  timing only and checked to compute the same function as ours before anything is timed;
* ``ours``: ``crab.lora`` injected through ``peft.get_peft_model(build_adapter_config("ia_lora", ...))``.

All adapters use r=8, alpha=16, 3 heads, the seven LLaMA projections of every layer, and dropout 0 unless
``--dropout`` says otherwise. Parts (``--parts``): ``linear`` = one adapted ``q_proj`` forward + backward
(input requires grad, as inside a network); ``train`` = a whole step (forward, backward, AdamW on the
adapter, base frozen); ``decode`` = greedy ``generate`` with a ``DynamicCache`` in eager mode, in ms per
new token from the first to the last generated token (so the prompt's prefill is excluded); ``static``
(or ``--static``) = the same with ``cache_implementation="static"``, where transformers compiles the
decoding forward itself (on CPU we ask for that compile explicitly, which is slow). Repeats alternate
between variants, rotating the order, so drifting machine load hits all of them alike; the table gives the
median, the inter-quartile range, the ratio of medians to ``lora`` and the median of the per-repeat
(paired) ratios.

Run ``python benchmarks/ia_lora.py --help``; ``benchmarks/README.md`` explains the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CompileConfig, GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers import StoppingCriteria, StoppingCriteriaList

logger = logging.getLogger("benchmarks.ia_lora")

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS: tuple[str, ...] = ("base", "lora", "crab", "ours")
BASELINE = "lora"
PARTS: tuple[str, ...] = ("linear", "train", "decode", "static")
RANK, ALPHA, NUM_HEADS = 8, 16, 3
# Targets of the issue: ours / lora per training step (GPU 7B 1.10, CPU tiny 1.15) and per static-cache token.
TARGETS: dict[tuple[str, str], float] = {("cuda", "train"): 1.10, ("cuda", "static"): 1.15, ("cpu", "train"): 1.15}


@dataclass(frozen=True)
class BenchShape:
    """Sizes of the benchmarked LLM and of its inputs."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    batch_size: int
    seq_len: int
    prompt_len: int
    new_tokens: int


def llama2_7b_shape() -> BenchShape:
    """Llama-2-7B (hidden 4096, 32 layers, 32 heads, FFN 11008, vocab 32000) at batch 2 x 1024 tokens."""
    return BenchShape("7b", 4096, 32, 32, 11008, 32000, batch_size=2, seq_len=1024, prompt_len=128, new_tokens=32)


def tiny_shape() -> BenchShape:
    """The tiny profile's LLM, read from ``params.yaml`` (``base_models.llm`` and ``.tokenizer``), at 2 x 256."""
    from crab.config import load_params

    cfg = load_params(REPO_ROOT / "params.yaml").base_models
    llm = cfg.llm
    return BenchShape(
        "tiny", llm.hidden_size, llm.num_layers, llm.num_heads, llm.intermediate_size, cfg.tokenizer.vocab_size,
        batch_size=2, seq_len=256, prompt_len=32, new_tokens=32,
    )  # fmt: skip


class CrabStyleIALoraLinear(nn.Module):
    """IA-LoRA computed as Crab computes it (reference section 2.1), for timing only.

    Crab's ``Linear.forward`` (vendored PEFT 0.3): cast x to the adapter dtype, route with a float32 softmax
    cast back to the result dtype, then for every head ``result += w_i * B_i(A(dropout(x))) * scaling``,
    recomputing ``A(dropout(x))`` inside the loop. Weights are copied from one of our layers so that both
    compute the same function (checked by :func:`check_crab_equals_ours`).

    Args:
        ours: an ``IALoraLinear`` whose base layer and adapter ``"default"`` are taken over.
    """

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        name = "default"
        self.base_layer = ours.base_layer
        self.num_heads, self.scaling = ours.num_heads[name], ours.scaling[name]
        self.lora_dropout = copy.deepcopy(ours.ia_lora_dropout[name])
        self.lora_A = copy.deepcopy(ours.ia_lora_A[name])
        self.lora_route = copy.deepcopy(ours.ia_lora_router[name])
        r = ours.r[name]
        stacked = ours.ia_lora_B[name].weight.detach()  # (d_out, num_heads * r)
        for i in range(self.num_heads):
            head = nn.Linear(r, stacked.shape[0], bias=False, device=stacked.device, dtype=stacked.dtype)
            head.weight = nn.Parameter(stacked[:, i * r : (i + 1) * r].clone())  # (d_out, r)
            setattr(self, f"lora_B{i}", head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (..., d_out)
        previous_dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)
        route_weight = F.softmax(self.lora_route(x), dim=-1, dtype=torch.float32).to(result.dtype)  # (..., n)
        for i in range(self.num_heads):
            head = getattr(self, f"lora_B{i}")
            result = result + route_weight[..., i : i + 1] * head(self.lora_A(self.lora_dropout(x))) * self.scaling
        return result.to(previous_dtype)


# ---------------------------------------------------------------- model and variants


def build_base(shape: BenchShape, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    """A random-weight, frozen ``LlamaForCausalLM`` built directly on ``device`` in ``dtype``."""
    config = LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_heads,
        hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False).eval()
    # No eos: every variant decodes exactly the requested number of tokens from random weights.
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=None, pad_token_id=0, bos_token_id=1)
    return model


def _llama(model: nn.Module) -> nn.Module:
    """The ``LlamaForCausalLM`` inside a variant (a ``PeftModel`` holds it as ``get_base_model()``)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _share_base_copy(base: nn.Module) -> nn.Module:
    """A deep copy of ``base`` whose parameters ARE the base's (one copy of the frozen weights in memory)."""
    return copy.deepcopy(base, memo={id(p): p for p in base.parameters()})


def _randomize_adapter_b(model: nn.Module, seed: int, std: float) -> None:
    """Draw the (zero-initialised) B matrices so that the adapter term is not zero (values do not affect time)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and ("lora_B" in name or "ia_lora_B" in name):
                values = torch.randn(param.shape, generator=generator, dtype=torch.float32) * std
                param.copy_(values.to(param.device, param.dtype))


def build_variants(base: nn.Module, names: tuple[str, ...], dropout: float, seed: int) -> dict[str, nn.Module]:
    """Wrap copies of ``base`` (sharing its weights) as each requested variant; ``crab`` copies ``ours``."""
    from peft import get_peft_model

    from crab.lora import LLAMA_TARGET_MODULES, IALoraLinear, build_adapter_config

    models: dict[str, nn.Module] = {}
    needed = set(names) | ({"ours"} if "crab" in names else set())
    for kind in ("lora", "ours"):
        if kind not in needed:
            continue
        config = build_adapter_config(
            "lora" if kind == "lora" else "ia_lora", r=RANK, alpha=ALPHA, dropout=dropout,
            num_heads=None if kind == "lora" else NUM_HEADS, target_modules=LLAMA_TARGET_MODULES,
        )  # fmt: skip
        torch.manual_seed(seed)
        models[kind] = get_peft_model(_share_base_copy(base), config)
        _randomize_adapter_b(models[kind], seed, std=0.02)
    if "crab" in names:
        crab = _share_base_copy(base)
        for name, module in _llama(models["ours"]).named_modules():
            if isinstance(module, IALoraLinear):
                parent_name, _, child = name.rpartition(".")
                crab.get_submodule(parent_name).add_module(child, CrabStyleIALoraLinear(module))
        for pname, param in crab.named_parameters():
            param.requires_grad_(".lora_" in pname)
        models["crab"] = crab
    if "base" in names:
        models["base"] = base
    return {name: models[name] for name in names}


def check_crab_equals_ours(models: dict[str, nn.Module], shape: BenchShape) -> dict[str, float]:
    """Check that the Crab-style variant computes our function, so that timing them compares like with like.

    Two checks: layer 0's adapted ``q_proj`` of both, copied to float64, must give the same adapter term
    (relative max difference <= 1e-9), and the whole models' logits in the benchmark dtype must differ by at
    most a fraction of the adapter's own effect, ``||ours - crab|| / ||ours - base||`` <= 1e-3 in float32 and
    0.25 in lower precision (rounding there differs by design: ours computes in the activations' dtype, Crab's
    in the adapter's float32; measured at 7B in bf16 on an H200: 0.115, through 32 layers of bf16 rounding,
    while the float64 layer check gave 3.6e-15; the tiny model in float32 gives about 1e-6).

    Returns:
        ``{"q_proj_float64": ..., "logits": ...}``, the two relative differences.

    Raises:
        AssertionError: if a difference exceeds its tolerance, or the adapter term is zero.
    """
    ours, crab = models["ours"], models["crab"]
    param = next(crab.parameters())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, shape.hidden_size, generator=generator, dtype=torch.float64).to(param.device)
    ids = torch.randint(3, shape.vocab_size, (1, 16), generator=generator).to(param.device)  # (1, 16)
    with torch.no_grad():
        ours_q = copy.deepcopy(_llama(ours).model.layers[0].self_attn.q_proj).double()
        crab_q = copy.deepcopy(_llama(crab).model.layers[0].self_attn.q_proj).double()
        effect = (ours_q(x) - ours_q.base_layer(x)).abs().max().item()
        q_diff = (ours_q(x) - crab_q(x)).abs().max().item() / max(effect, 1e-300)
        ours_logits, crab_logits = ours(input_ids=ids).logits.double(), crab(input_ids=ids).logits.double()
        with ours.disable_adapter():
            base_logits = ours(input_ids=ids).logits.double()
        logit_diff = ((ours_logits - crab_logits).norm() / (ours_logits - base_logits).norm()).item()
    diffs = {"q_proj_float64": q_diff, "logits": logit_diff}
    tol = 1e-3 if param.dtype == torch.float32 else 0.25
    if effect == 0.0 or q_diff > 1e-9 or not logit_diff <= tol:
        raise AssertionError(f"Crab-style IA-LoRA differs from ours: {diffs} (adapter term {effect}, tol {tol})")
    return diffs


# ---------------------------------------------------------------- timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], float]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Run every ``fn`` (which returns its own time in ms) ``warmup`` times, then ``repeats`` rounds.

    Round ``k`` visits the variants in an order rotated by ``k``, so slow periods of a shared machine land
    on all variants alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    order = list(fns)
    times: dict[str, list[float]] = {name: [] for name in order}
    for k in range(repeats):
        shift = k % len(order)
        for name in order[shift:] + order[:shift]:
            times[name].append(fns[name]())
    return times


def timed(fn: Callable[[], Any], device: torch.device) -> Callable[[], float]:
    """Wrap ``fn`` into a callable returning its wall time in ms (device-synchronised before and after)."""

    def run() -> float:
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        return (time.perf_counter() - start) * 1e3

    return run


def linear_fns(models: dict[str, nn.Module], shape: BenchShape, device: torch.device, dtype: torch.dtype) -> dict:
    """One adapted q_proj (layer 0) forward + backward at batch_size x seq_len tokens, per variant."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(shape.batch_size, shape.seq_len, shape.hidden_size, generator=generator)
    x = x.to(device, dtype).requires_grad_(True)  # (B, T, d): inside a network the input needs its gradient
    grad = torch.randn(shape.batch_size, shape.seq_len, shape.hidden_size, generator=generator).to(device, dtype)
    fns = {}
    for name, model in models.items():
        layer = _llama(model).model.layers[0].self_attn.q_proj
        params = [p for p in layer.parameters() if p.requires_grad]

        def step(layer: nn.Module = layer, params: list = params) -> None:
            layer(x).backward(grad)
            x.grad = None
            for p in params:
                p.grad = None

        fns[name] = timed(step, device)
    return fns


def train_fns(models: dict[str, nn.Module], shape: BenchShape, device: torch.device) -> dict:
    """A full training step (forward with labels, backward, AdamW on the adapter), per adapted variant."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, shape.vocab_size, (shape.batch_size, shape.seq_len), generator=generator).to(device)
    fns = {}
    for name, model in models.items():
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            continue  # the base model has nothing to train
        optimizer = torch.optim.AdamW(params, lr=1e-4)

        def step(model: nn.Module = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            model.train()
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        fns[name] = timed(step, device)
    return fns


class TokenClock(StoppingCriteria):
    """A stopping criterion that never stops and timestamps every generated token (device-synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        _synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (batch,)


def decode_fns(models: dict[str, nn.Module], shape: BenchShape, device: torch.device, static: bool) -> dict:
    """Greedy decoding, ms per new token after the first (so the prompt's prefill is excluded).

    One ``generate`` call per measurement: the time from the first to the last generated token divided by
    ``new_tokens - 1``. With ``static`` the cache is a ``StaticCache`` and transformers compiles the decoding
    forward (on CPU only because we ask for it; CUDA also gets CUDA graphs, mode ``reduce-overhead``).
    """
    generator = torch.Generator().manual_seed(4)
    prompt = torch.randint(3, shape.vocab_size, (1, shape.prompt_len), generator=generator).to(device)  # (1, P)
    kwargs: dict[str, Any] = {
        "input_ids": prompt, "attention_mask": torch.ones_like(prompt), "do_sample": False,
        "max_new_tokens": shape.new_tokens, "min_new_tokens": shape.new_tokens,
    }  # fmt: skip
    if static:
        kwargs["cache_implementation"] = "static"
        if device.type != "cuda":
            # transformers only auto-compiles on accelerators; this private flag asks for it on CPU too.
            compile_config = CompileConfig(mode="default")
            compile_config._compile_all_devices = True
            kwargs["compile_config"] = compile_config
    else:
        kwargs["disable_compile"] = True
    fns = {}
    for name, model in models.items():

        def run(model: nn.Module = model) -> float:
            model.eval()
            clock = TokenClock(device)
            with torch.no_grad():
                model.generate(**kwargs, stopping_criteria=StoppingCriteriaList([clock]))
            if len(clock.stamps) != shape.new_tokens:
                raise RuntimeError(f"generate produced {len(clock.stamps)} tokens, expected {shape.new_tokens}")
            return (clock.stamps[-1] - clock.stamps[0]) * 1e3 / (shape.new_tokens - 1)

        fns[name] = run
    return fns


# ---------------------------------------------------------------- report


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median, quartiles and ratios to the baseline (of medians, and median of paired per-repeat ratios)."""
    out = {}
    base = times.get(BASELINE)
    for name, values in times.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        row = {"median_ms": statistics.median(values), "q1_ms": q1, "q3_ms": q3, "n": len(values)}
        if base:
            row["ratio"] = row["median_ms"] / statistics.median(base)
            row["paired_ratio"] = statistics.median(v / b for v, b in zip(values, base))
        row["samples_ms"] = values
        out[name] = row
    return out


def format_table(results: dict[str, Any], device: str) -> str:
    """A fixed-width table of every part and variant, with the targets of the issue checked."""
    unit = {"linear": "ms/step", "train": "ms/step", "decode": "ms/token", "static": "ms/token"}
    lines = [
        f"{'part':<8} {'variant':<7} {'median':>10} {'IQR':>17} {'x lora':>7} {'paired':>7}  {'unit':<8} target",
        "-" * 80,
    ]
    for part, rows in results.items():
        if "error" in rows or "skipped" in rows:
            lines.append(f"{part:<8} {'-':<7} {rows.get('error') or rows.get('skipped')}")
            continue
        for name, row in rows.items():
            ratio = f"{row['ratio']:.3f}" if "ratio" in row else "-"
            paired = f"{row['paired_ratio']:.3f}" if "paired_ratio" in row else "-"
            iqr = f"{row['q1_ms']:.2f}-{row['q3_ms']:.2f}"
            target = TARGETS.get((device, part))
            verdict = ""
            if name == "ours" and target is not None and "ratio" in row:
                verdict = f"<= {target:.2f}: {'met' if row['ratio'] <= target else 'MISSED'}"
            cells = f"{row['median_ms']:>10.3f} {iqr:>17} {ratio:>7} {paired:>7}"
            lines.append(f"{part:<8} {name:<7} {cells}  {unit[part]:<8} {verdict}")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("tiny", "7b"), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per part (each runs every variant)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per variant before a part")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--parts", default="linear,train,decode", help=f"comma list of {','.join(PARTS)}")
    parser.add_argument("--static", action="store_true", help="also time static-cache (compiled) decoding")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {','.join(VARIANTS)}")
    parser.add_argument("--dropout", type=float, default=0.0, help="adapter dropout (0 for timing)")
    parser.add_argument("--new-tokens", type=int, default=None, help="decoded tokens (default: per shape)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p] + (["static"] if args.static else [])
    args.variants = tuple(v for v in VARIANTS if v in args.variants.split(","))
    unknown = set(args.parts) - set(PARTS)
    if unknown or BASELINE not in args.variants or args.repeats < 1 or args.new_tokens in (0, 1):
        parser.error(f"bad --parts {sorted(unknown)}, no {BASELINE!r} variant, --repeats < 1 or --new-tokens < 2")
    return args


def _write_json(report: dict[str, Any], path: Optional[Path]) -> None:
    """Write ``report`` to ``path`` (after every part, so a run stopped by a timeout keeps what it measured)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))


def run_part(part: str, models: dict[str, nn.Module], shape: BenchShape, args: argparse.Namespace) -> dict:
    """Time one part for every variant; returns :func:`summarize`'s rows."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if part == "linear":
        fns = linear_fns(models, shape, device, dtype)
    elif part == "train":
        fns = train_fns(models, shape, device)
    else:
        fns = decode_fns(models, shape, device, static=part == "static")
    return summarize(interleaved(fns, args.repeats, args.warmup))


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark; returns 0, or 1 if a part (or the equivalence check) failed to run."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import crab.lora  # noqa: F401  (registers the IA_LORA peft method)

    torch._dynamo.config.cache_size_limit = 64  # four variants share LlamaForCausalLM.forward's code object
    device = torch.device(args.device)
    shape = llama2_7b_shape() if args.shape == "7b" else tiny_shape()
    if args.new_tokens:
        shape = BenchShape(**{**asdict(shape), "new_tokens": args.new_tokens})
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
    }  # fmt: skip
    logger.info("shape %s, %s %s, machine %s", asdict(shape), args.device, args.dtype, machine)
    start = time.perf_counter()
    models = build_variants(build_base(shape, device, getattr(torch, args.dtype), args.seed), args.variants,
                            args.dropout, args.seed)  # fmt: skip
    logger.info("built %s in %.1f s", list(models), time.perf_counter() - start)

    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "shape": asdict(shape)}
    report.update(machine=machine, results={}, failed=False)
    try:
        if "crab" in models:
            report["crab_equals_ours"] = check_crab_equals_ours(models, shape)
            logger.info("Crab-style == ours (relative differences): %s", report["crab_equals_ours"])
    except Exception:  # noqa: BLE001  (reported, and the run fails at the end)
        report["failed"] = True
        logger.error("equivalence check failed:\n%s", traceback.format_exc())
    for part in args.parts:
        start = time.perf_counter()
        try:
            report["results"][part] = run_part(part, models, shape, args)
        except Exception as err:  # noqa: BLE001  (one failing part must not hide the others)
            report["failed"] = True
            report["results"][part] = {"error": f"{type(err).__name__}: {err}"[:200]}
            logger.error("part %s failed:\n%s", part, traceback.format_exc())
        if part == "static":
            # Static numbers without a compiled graph would be eager decoding with a static cache.
            report["compiled_graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
            logger.info("torch.compile produced %d graphs", report["compiled_graphs"])
        logger.info("part %s done in %.1f s", part, time.perf_counter() - start)
        _write_json(report, args.json)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "static" not in args.parts:
        report["results"]["static"] = {"skipped": "static-cache decoding not asked for (--static)"}
    logger.info("\n%s", format_table(report["results"], args.device))
    _write_json(report, args.json)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
