#!/usr/bin/env bash
# Every GPU check in one go (about 7 minutes on one H100 / H200), one summary at the end.
#
#   1. paper:  benchmarks/paper_gpu.py: the paper-shape Crab (Llama-2-7B + Q-Formers + mask decoder, IA-LoRA
#              from params.yaml) with random bf16 weights: finetune steps at 2 x 1024 tokens (plain and with
#              gradient checkpointing; ms/step, tokens/s, peak memory), greedy decoding (ms/token, batch 1
#              and 8, dynamic and static cache: the static one compiles once per batch size), a
#              segmentation forward, CLIP ViT-L/14 frames/s and BEATs clips/s;
#   2. eager:  benchmarks/ia_lora.py at Llama-2-7B shape: one adapted q_proj fwd+bwd, a whole training step,
#              greedy decoding (DynamicCache) for base / plain LoRA / Crab-style IA-LoRA / ours, plus the
#              Crab == ours equivalence check;
#   3. static (only with STATIC=1): ia_lora.py's greedy decoding with cache_implementation="static"
#              (transformers compiles the forward, CUDA graphs) for base / plain LoRA / ours.
# Exit status: 0 when every run ran (IA-LoRA targets missed or met), non-zero when a run or a check failed.
#
# Usage, from the repository root (the device tool runs commands there):
#   bash benchmarks/gpu_check.sh
# Results go to $OUT (the device tool's output folder) or else /tmp/crab_gpu_check/: paper.json, eager.json,
# static.json and their .log files. Knobs (environment): PYTHON (default python3), REPEATS (5; ia_lora 3),
# SHAPE (7b), DEVICE (cuda), DTYPE (bfloat16), PAPER_TIMEOUT (360 s), EAGER_TIMEOUT (120 s), STATIC (0),
# STATIC_TIMEOUT (330 s), PAPER_ARGS / EXTRA_ARGS (more paper_gpu.py / ia_lora.py flags). A CPU dry run of
# the same code paths (1 LLM layer, 2 CLIP layers):
#   SHAPE=tiny DEVICE=cpu DTYPE=float32 PYTHON=.venv/bin/python REPEATS=1 \
#     PAPER_ARGS="--llm-layers 1 --clip-layers 2 --batch 1 --seq-len 900 --gen-batch 2 --new-tokens 4 \
#     --clip-batch 2 --warmup 0 --threads 2" EXTRA_ARGS="--threads 1" bash benchmarks/gpu_check.sh
# The GPU image has its own torch but older transformers and peft and no ruamel.yaml: wheels of the
# project's pins in .whl/ (git-ignored; see benchmarks/README.md) are installed into /tmp/site first.
set -uo pipefail

cd "$(dirname "$0")/.."
out_dir="${OUT:-/tmp/crab_gpu_check}"
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
# shellcheck disable=SC2206  # EXTRA_ARGS is split into flags on purpose
common=(--shape "${SHAPE:-7b}" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}" --repeats "${REPEATS:-3}"
    ${EXTRA_ARGS:-})

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$python" -c 'import sys, torch, transformers, peft
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, {gpu}")' || exit 2

status=0
run() {  # run NAME TIMEOUT ARGS...: one benchmark run, its log and JSON under $out_dir
    local name=$1 limit=$2
    shift 2
    echo "=== $name: ia_lora.py ${common[*]} $*"
    timeout --signal=INT --kill-after=20 "$limit" \
        "$python" benchmarks/ia_lora.py "${common[@]}" "$@" --json "$out_dir/$name.json" 2>&1 | tee "$out_dir/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "=== $name FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out'))"
        status=1
    fi
}

echo "=== paper: paper_gpu.py"
# shellcheck disable=SC2086  # PAPER_ARGS is split into flags on purpose
timeout --signal=INT --kill-after=20 "${PAPER_TIMEOUT:-360}" "$python" benchmarks/paper_gpu.py --device "${DEVICE:-cuda}" \
    --dtype "${DTYPE:-bfloat16}" --repeats "${REPEATS:-5}" ${PAPER_ARGS:-} --json "$out_dir/paper.json" 2>&1 |
    tee "$out_dir/paper.log"
paper_rc=${PIPESTATUS[0]}
[ "$paper_rc" -ne 0 ] && { echo "=== paper FAILED (exit $paper_rc)"; status=1; }

run eager "${EAGER_TIMEOUT:-120}" --parts linear,train,decode --warmup 2
if [ "${STATIC:-0}" = 1 ]; then
    run static "${STATIC_TIMEOUT:-330}" --parts static --variants base,lora,ours --warmup 1
fi

echo "=== summary: paper shapes (${DTYPE:-bfloat16}, ${DEVICE:-cuda})"
grep -A 20 '^measurement ' "$out_dir/paper.log" | grep -v '^part \|^\[' || echo "(no paper table)"
echo "=== summary: IA-LoRA (${SHAPE:-7b}, ${DTYPE:-bfloat16}, ${DEVICE:-cuda}; ratios are to plain LoRA)"
"$python" - "$out_dir" "${DEVICE:-cuda}" <<'EOF' || status=1
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
import ia_lora  # noqa: E402

out_dir, device = Path(sys.argv[1]), sys.argv[2]
results, missing = {}, []
for name, parts in (("eager", ("linear", "train", "decode")), ("static", ("static",))):
    path = out_dir / f"{name}.json"
    if not path.exists():
        if name != "static" or os.environ.get("STATIC") == "1":
            missing.append(name)
        continue
    report = json.loads(path.read_text())
    results.update({part: report["results"][part] for part in parts if part in report["results"]})
    if "crab_equals_ours" in report:
        print(f"Crab-style == ours check ({name}): {report['crab_equals_ours']}")
    if "compiled_graphs" in report:
        print(f"compiled graphs in the static run: {report['compiled_graphs']}")
print(ia_lora.format_table(results, device))
if missing:
    sys.exit(f"no results from: {', '.join(missing)}")
EOF
exit "$status"
