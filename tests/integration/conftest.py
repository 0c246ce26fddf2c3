"""Integration fixtures: the real params.yaml, shrunk so that whole stages run in seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crab.config import Params, load_params

REPO = Path(__file__).resolve().parents[2]


def shrink(params: Params) -> Params:
    """The real params with tiny sizes: same code paths, a few clips per split, small frames."""
    synth = params.synth
    synth = dataclasses.replace(
        synth,
        video=dataclasses.replace(synth.video, size=32, fps=4),
        ave=dataclasses.replace(synth.ave, num_train=6, num_val=2, num_test=4),
        llp=dataclasses.replace(synth.llp, num_train=4, num_val=2, num_test=3),
        s4=dataclasses.replace(synth.s4, num_train=3, num_val=2, num_test=2),
        ms3=dataclasses.replace(synth.ms3, num_train=2, num_val=2, num_test=2),
        music_avqa=dataclasses.replace(
            synth.music_avqa, num_train_videos=4, num_val_videos=2, num_test_videos=3, duration_s=6
        ),
        valor=dataclasses.replace(synth.valor, num_train=3, num_val=2, duration_s=4),
        ref_avs=dataclasses.replace(
            synth.ref_avs, num_train_videos=3, num_val_videos=1, num_test_s_videos=2, num_test_u_videos=1
        ),
        avss=dataclasses.replace(synth.avss, num_train=3, num_val=1, num_test=2),
        lvis=dataclasses.replace(synth.lvis, num_train_images=6, num_val_images=2),
    )
    base = params.base_models
    base = dataclasses.replace(base, tokenizer=dataclasses.replace(base.tokenizer, vocab_size=400))
    short = {"epochs": 1.0, "batch_size": 4, "save_every_steps": 4, "log_every_steps": 2}
    language = params.pretrain.language and dataclasses.replace(params.pretrain.language, **short)
    grounding = params.pretrain.grounding
    grounding = grounding and dataclasses.replace(grounding, optim=dataclasses.replace(grounding.optim, **short))
    pretrain = dataclasses.replace(
        params.pretrain,
        language=language,
        grounding=grounding,
        optim=dataclasses.replace(params.pretrain.optim, **short),
    )
    finetune = dataclasses.replace(params.finetune, optim=dataclasses.replace(params.finetune.optim, **short))
    finetune_avs = dataclasses.replace(
        params.finetune_avs, optim=dataclasses.replace(params.finetune_avs.optim, **short)
    )
    finetune_avss = dataclasses.replace(
        params.finetune_avss, optim=dataclasses.replace(params.finetune_avss.optim, **short)
    )
    evaluate = dataclasses.replace(params.evaluate, max_new_tokens=24)
    return dataclasses.replace(
        params, synth=synth, base_models=base, pretrain=pretrain, finetune=finetune, finetune_avs=finetune_avs,
        finetune_avss=finetune_avss, evaluate=evaluate,
    )  # fmt: skip


@pytest.fixture
def tiny_params() -> Params:
    return shrink(load_params(REPO / "params.yaml"))
