"""Quality gates: Great Expectations suites, defined in code, over the raw datasets and over AV-UIE.

DESIGN.md section 3: ``validate_raw`` (:mod:`crab.quality.raw`) checks each raw dataset's annotations
and media and quarantines bad items with a reason; ``validate_avuie`` (:mod:`crab.quality.avuie`) checks
the instruction data. The suites are in :mod:`crab.quality.suites`, the Great Expectations machinery
(context, checkpoints, data docs, unexpected rows -> reasons) in :mod:`crab.quality.runner`, and the
report format with the helpers downstream stages use (:func:`~crab.quality.quarantine.load_quarantined`,
:func:`~crab.quality.quarantine.load_quarantined_avuie`) in :mod:`crab.quality.quarantine`.

Nothing is imported here: great_expectations costs seconds to import, and stage modules are imported
only when their stage runs.
"""
