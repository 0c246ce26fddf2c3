"""The ``crab`` command: one subcommand per stage of the stage table, plus the tools around it.

``crab <stage>`` loads ``params.yaml`` strictly and runs the stage function; DVC calls exactly these
commands (``dvc.yaml`` is generated from the same table). Extra subcommands:

* ``crab synth`` writes AV-Synth, the embedded default data, into ``data/raw`` (outside ``dvc.yaml``:
  raw data is versioned data, see DESIGN.md section 3);
* ``crab dvc-yaml`` regenerates ``dvc.yaml`` from the stage table (``--check`` only compares).
* ``crab infer`` runs the fine-tuned model on a user's clip or a batch file and prints JSON
  (:mod:`crab.infer`).
* ``crab ablate`` runs the paper's Table 4 rows as DVC experiments and renders their report
  (:mod:`crab.ablate`).
* ``crab profile tiny|paper`` switches ``params.yaml`` to a profile (:mod:`crab.profiles`).
* ``crab import-avuie`` imports Crab's released AV-UIE sample lists into AV-UIE JSONL through a quality gate
  (:mod:`crab.avuie.released`); ``avuie.release`` makes ``avuie_build`` do the same inside the pipeline.
* ``crab convert-crab-weights`` turns the authors' released checkpoints into our ``pretrain`` folder and
  IA-LoRA adapter (:mod:`crab.convert`); it reads no params.

Start-up imports only the standard library, PyYAML and the config/stage modules; a stage's heavy
dependencies (torch, great_expectations, prefect) load when that stage runs. User errors
(:class:`crab.errors.CrabError`) print as one line and exit non-zero; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from crab.config import ConfigError, Params, load_params
from crab.errors import CrabError
from crab.stages import PARAMS_FILE, STAGES, dvc_yaml, resolve

__all__ = ["build_parser", "main"]

log = logging.getLogger("crab")

#: Environment that keeps every library offline and quiet (DESIGN.md section 8, stack-notes section 0).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per entry of the stage table."""
    parser = argparse.ArgumentParser(
        prog="crab",
        description="Crab: unified audio-visual scene understanding, as a reproducible pipeline. "
        "Stages run in order under `dvc repro`; each can also be run alone.",
    )
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    for stage in STAGES.values():
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        if stage.foreach:
            p.add_argument("--task", required=True, help=f"one task of params `{stage.foreach}`")
        p.epilog = f"reads params sections: {', '.join(stage.params)}; writes: {', '.join(stage.outs)}"

    synth = sub.add_parser(
        "synth",
        help="Write AV-Synth (the embedded default data) into data/raw in the native dataset layouts.",
        description="Generate AV-Synth from the `synth` params section, byte-deterministically. "
        "data.dvc records the expected result; this is not a DVC stage.",
    )
    synth.add_argument("--force", action="store_true", help="overwrite existing dataset folders")

    infer = sub.add_parser(
        "infer",
        help="Run the trained model on a clip (or a batch file) and print the reasoning and answer as JSON.",
        description="Answer an AVE, AVVP, AVQA, ARIG, S4, MS3, AVSS or Ref-AVS request about your own video with "
        "the model of the pipeline (the folders in params: base_models, pretrain, finetune; finetune_avs for the mask "
        "tasks s4 / ms3 / ref_avs, finetune_avss for avss). Prints the prompt, the generated text (reasoning + "
        "answer) and the parsed answer as JSON; the mask tasks also write the mask of the asked second as a PNG at "
        "the frame's size under --masks (0 / 255; avss: the class-index map, as AVSBench-semantic's labels).",
        epilog='batch file: a JSON list of {"task", "video", "audio"?, "question"?, "second"?, "expression"?} '
        "objects (Crab's example.json keys video_path / audio_path / exp work too); a bad entry prints one error "
        "line and is skipped.",
    )
    infer.add_argument("--task", help="ave, avvp, avqa, arig, s4, ms3, avss or ref_avs (with --video)")
    infer.add_argument("--video", help="the video file (mp4, ...); mask tasks: or a frame folder; arig: or an image")
    infer.add_argument("--audio", help="audio file (default: the video's own audio track)")
    infer.add_argument("--question", help="the question (avqa)")
    infer.add_argument("--expression", help='ref_avs: what to segment, e.g. "The object making the loudest sound."')
    infer.add_argument(
        "--second",
        type=int,
        help="mask tasks: the second whose frame to segment (s4 / ms3 1-5, avss / ref_avs 1-10; default 1)",
    )
    infer.add_argument("--masks", default="masks", help="mask tasks: folder for the PNG masks (default: masks)")
    infer.add_argument("--batch", help="JSON list of inputs, instead of --task / --video")
    infer.add_argument("--out", help="write JSON lines here instead of printing")

    convert = sub.add_parser(
        "convert-crab-weights",
        help="Convert the authors' released Crab checkpoints into our pretrain folder + IA-LoRA adapter.",
        description="Map Crab's finetune_weights.bin (required) and the optional visual/audio/segmentation "
        "pre-training and AVS files onto our modules; write OUT/pretrain (save_pretrained + tokenizer), "
        "OUT/finetune (PEFT adapter) and OUT/conversion_report.json.",
        epilog="then point params pretrain.out_dir / finetune.out_dir at OUT/pretrain / OUT/finetune.",
    )
    convert.add_argument("--checkpoint-dir", required=True, help="folder with Crab's *.bin checkpoint files")
    convert.add_argument("--llm", required=True, help="local Llama-2-7b-chat-hf folder (safetensors)")
    convert.add_argument("--out", required=True, help="output folder (replaced)")
    convert.add_argument("--tokenizer", help="tokenizer folder, if not the --llm folder")
    convert.add_argument(
        "--avs-embeddings",
        action="store_true",
        help="use the embeddings / LM head of avs_finetune_weights.bin (Crab's AVS-task model)",
    )
    convert.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="dtype of the written weights (default: %(default)s, as Crab)",
    )
    convert.add_argument("--seed", type=int, default=0, help="seed of the 17 added token rows (default: %(default)s)")

    ablate = sub.add_parser(
        "ablate",
        help="Run the paper's Table 4 rows as DVC experiments (each at every seed) and render reports/table4.html.",
        description="Queue every row of params `ablate.rows` at every seed of `ablate.seeds` with `dvc exp run "
        "--queue` from the current commit, run them with `dvc exp run --run-all`, collect `dvc exp show --json` "
        "into reports/table4.json and render notebooks/ablation/table4.ipynb into reports/table4.{ipynb,html}.",
        epilog="commit first: experiments run from HEAD. Re-running replaces the experiments of the same names.",
    )
    ablate.add_argument("--rows", help="comma-separated row names (default: all rows of ablate.rows)")
    ablate.add_argument("--collect-only", action="store_true", help="do not run; collect and render what exists")
    ablate.add_argument("--dry-run", action="store_true", help="print the dvc commands and exit")

    profile = sub.add_parser(
        "profile",
        help="Switch params.yaml to a profile (tiny: the embedded default; paper: Crab's settings, 8 GPUs).",
        description="Write the values of configs/profiles/NAME.yaml into the params file (comments kept, the result "
        "checked before it is written) and list what changed.",
        epilog="e.g. `crab profile paper && dvc repro`, or `dvc exp run $(crab profile paper --exp-args)`.",
    )
    profile.add_argument("name", help="tiny or paper (a file of configs/profiles/)")
    profile.add_argument("--exp-args", action="store_true", help="print `dvc exp run -S` arguments; change nothing")

    released = sub.add_parser(
        "import-avuie",
        help="Import Crab's released AV-UIE sample lists and reasoning texts into AV-UIE JSONL, through a quality gate.",
        description="Read Crab's *_samples.json under --release (its tree ave_data/, music_avqa_data/, avvp_data/, "
        "AVS/, valor/, or the flat Hugging Face names), rebase the authors' /group/40061/cserdu/data/... paths onto "
        "params `datasets`, join the converted_label/*.txt reasoning texts, quarantine every bad row with its reason "
        "and write OUT/<task>/<split>.jsonl, OUT/stats.json, OUT/released.json (quarantine) and OUT/released_docs/.",
        epilog="reads params datasets, avuie (seed, use_reasoning) and validation; fails after writing if a task "
        "quarantines more than validation.max_failure_rate. To train on it, set avuie.release instead: avuie_build "
        "then imports the release inside the pipeline.",
    )
    released.add_argument("--release", required=True, help="folder holding Crab's sample lists")
    released.add_argument(
        "--task", action="append", help="task to import (repeatable or comma-separated; default: all the release has)"
    )
    released.add_argument("--out", required=True, help="output folder (replaced)")

    gen = sub.add_parser("dvc-yaml", help="Regenerate dvc.yaml from the stage table.")
    gen.add_argument("--check", action="store_true", help="only check that dvc.yaml is up to date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crab`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    try:
        return _run(args)
    except ConfigError as err:
        print(f"crab: error: {err}", file=sys.stderr)
        return 2
    except CrabError as err:
        print(f"crab: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "dvc-yaml":
        return _dvc_yaml(check=args.check)
    if args.command == "convert-crab-weights":
        return _convert_crab_weights(args)
    if args.command == "profile":
        return _profile(args)
    params = load_params(args.params)
    start = time.perf_counter()
    if args.command == "infer":
        from crab.infer import infer_command

        return infer_command(
            params, task=args.task, video=args.video, audio=args.audio, question=args.question, second=args.second,
            expression=args.expression, batch=args.batch, out=args.out, masks_dir=args.masks,
        )  # fmt: skip
    if args.command == "ablate":
        return _ablate(params, args)
    if args.command == "import-avuie":
        return _import_avuie(params, args)
    if args.command == "synth":
        from crab.synth import synthesize

        synthesize(params, force=args.force)
    elif STAGES[args.command].foreach:
        resolve(STAGES[args.command])(params, args.task)
    else:
        resolve(STAGES[args.command])(params)
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - start)
    return 0


def _convert_crab_weights(args: argparse.Namespace) -> int:
    import torch

    from crab.convert import convert_crab_weights

    result = convert_crab_weights(
        args.checkpoint_dir, args.llm, args.out, tokenizer_dir=args.tokenizer, use_avs_embeddings=args.avs_embeddings,
        dtype=getattr(torch, args.dtype), seed=args.seed,
    )  # fmt: skip
    log.info("pretrain folder: %s; adapter: %s", result.pretrain_dir, result.finetune_dir)
    return 0


def _import_avuie(params: Params, args: argparse.Namespace) -> int:
    from crab.avuie.released.importer import DOCS_NAME, import_released, write_released
    from crab.quality.runner import enforce_max_failure_rate

    out = Path(args.out)
    tasks = [t.strip() for arg in args.task or () for t in arg.split(",") if t.strip()] or None
    avuie = params.avuie
    imported = import_released(
        Path(args.release), params.datasets, params.validation, out.with_name(f".{out.name}.{DOCS_NAME}"), tasks,
        avuie.seed, avuie.use_reasoning,
    )  # fmt: skip
    enforce_max_failure_rate(write_released(out, imported, avuie.seed, avuie.use_reasoning))
    counts = {t: sum(len(rs) for rs in splits.values()) for t, splits in imported.records.items()}
    log.info("import-avuie: wrote %s (records per task: %s)", out, counts)
    return 0


def _ablate(params: Params, args: argparse.Namespace) -> int:
    from crab.ablate import AblationRun, queue_commands, run_ablation, select_rows

    rows = [name.strip() for name in args.rows.split(",")] if args.rows else None
    if args.dry_run:
        runs = [AblationRun(row, seed) for row in select_rows(params.ablate, rows) for seed in params.ablate.seeds]
        for command in queue_commands(runs):
            print(" ".join(command))
        print(f"dvc exp run --run-all --jobs {params.ablate.jobs}")
        return 0
    results = run_ablation(params.ablate, rows=rows, collect_only=args.collect_only)
    done = sum(run["state"] == "success" for run in results["runs"])
    log.info("ablate: %d of %d experiments have results", done, len(results["runs"]))
    return 0 if done == len(results["runs"]) else 1


def _profile(args: argparse.Namespace) -> int:
    from crab.profiles import apply_profile, exp_args

    if args.exp_args:
        print(" ".join(shlex.quote(arg) for arg in exp_args(args.name)))
        return 0
    changed = apply_profile(args.name, args.params)
    log.info("%s: profile %s (%d values changed%s)", args.params, args.name, len(changed),
             f": {', '.join(changed)}" if changed else "")  # fmt: skip
    return 0


def _dvc_yaml(check: bool) -> int:
    path = Path("dvc.yaml")
    expected = dvc_yaml()
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != expected:
            print("crab: error: dvc.yaml is out of date with src/crab/stages.py; run `crab dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    path.write_text(expected, encoding="utf-8")
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
