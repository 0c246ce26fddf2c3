#!/usr/bin/env bash
# GPU checks of the fast IA-LoRA benchmark in one go (about 5 minutes on one H100 / H200).
#
# Runs benchmarks/ia_lora.py at Llama-2-7B shape with random bf16 weights twice:
#   1. eager:  one adapted q_proj fwd+bwd, a whole training step, greedy decoding (DynamicCache),
#              for base / plain LoRA / Crab-style IA-LoRA / ours, plus the Crab == ours equivalence check;
#   2. static: greedy decoding with cache_implementation="static" (transformers compiles the forward,
#              CUDA graphs) for base / plain LoRA / ours.
# Then prints one summary table with the issue's targets (ours / LoRA: train <= 1.10, static <= 1.15).
# Exit status: 0 when both runs ran (targets missed or met), non-zero when a run or a check failed.
#
# Usage, from the repository root (the device tool runs commands there):
#   bash benchmarks/gpu_check.sh
# Results go to $OUT (the device tool's output folder) or else /tmp/ia_lora_gpu_check/: eager.json, static.json,
# eager.log, static.log. Knobs (environment): PYTHON (default python3), REPEATS (5), SHAPE (7b),
# DEVICE (cuda), DTYPE (bfloat16), EAGER_TIMEOUT (240 s), STATIC_TIMEOUT (330 s), EXTRA_ARGS (more
# ia_lora.py flags for both runs). A CPU dry run of the same code paths (static compile takes ~1.5 min):
#   SHAPE=tiny DEVICE=cpu DTYPE=float32 EXTRA_ARGS="--threads 1" PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
# If the machine's peft is not the project's (0.21.2), copy the project's pure-Python peft package into
# .gpu_deps/peft (git-ignored via .git/info/exclude) and carry .gpu_deps: it is put first on PYTHONPATH.
set -uo pipefail

cd "$(dirname "$0")/.."
out_dir="${OUT:-/tmp/ia_lora_gpu_check}"
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
repeats="${REPEATS:-5}"
# shellcheck disable=SC2206  # EXTRA_ARGS is split into flags on purpose
common=(--shape "${SHAPE:-7b}" --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}" --repeats "$repeats"
    ${EXTRA_ARGS:-})

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu_deps ]; then
    export PYTHONPATH="$PWD/.gpu_deps:$PYTHONPATH"
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

run eager "${EAGER_TIMEOUT:-240}" --parts linear,train,decode --warmup 2
run static "${STATIC_TIMEOUT:-330}" --parts static --variants base,lora,ours --warmup 1

echo "=== summary (${SHAPE:-7b}, ${DTYPE:-bfloat16}, ${DEVICE:-cuda}; ratios are to plain LoRA)"
"$python" - "$out_dir" "${DEVICE:-cuda}" <<'EOF' || status=1
import json
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
import ia_lora  # noqa: E402

out_dir, device = Path(sys.argv[1]), sys.argv[2]
results, missing = {}, []
for name, parts in (("eager", ("linear", "train", "decode")), ("static", ("static",))):
    path = out_dir / f"{name}.json"
    if not path.exists():
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
