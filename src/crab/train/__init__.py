"""Training stages on ``accelerate`` (DESIGN.md section 3; crab-reference section 3).

* :mod:`crab.train.data`: AV-UIE records -> tokenised examples with their features; the task mixture;
  the deterministic, resumable micro-batch order.
* :mod:`crab.train.loop`: the shared loop (AdamW, warmup + cosine, accumulation, clipping, mixed precision,
  progress bar, dvclive metrics).
* :mod:`crab.train.checkpoint`: checkpoints holding weights, optimizer, scheduler, RNG and data position.
* :mod:`crab.train.stage`: what both stages share: folders, setup record, summary, atomic publishing.
* :mod:`crab.train.pretrain`: the ``pretrain`` stage (projector alignment; tiny profile: the LLM learns too).
* :mod:`crab.train.finetune`: the ``finetune`` stage (IA-LoRA / LoRA + projectors) and ``load_finetuned``.

Nothing is imported here, so ``import crab.train`` stays cheap; stage functions are resolved by
``crab.stages`` when they run.
"""
