"""Importer of Crab's released AV-UIE annotations into our AV-UIE records (dataset-layouts.md section 7).

Crab (GeWu-Lab/Crab ``dataset/unified_dataset.py``) trains from per-task JSON sample lists
(``music_avqa_data/*.json``, ``ave_data/*.json``, ``avvp_data/*.json``, ``AVS/{s4,ms3,avss,v1s_grounding}_samples.json``,
``valor/*_samples.json``) whose media paths are the authors' absolute paths, plus the per-sample reasoning texts
``converted_label/*.txt`` (AVQA, AVE; AVVP's reasoning is inline). ``avuie_build`` builds the same tasks from the
native annotations; this package reads Crab's own lists instead, so a user can train on exactly the instruction data
the paper trained on:

* :mod:`~crab.avuie.released.files`: where each list is, how the authors' paths rebase onto ``params.datasets``,
  value coercion (the Hugging Face copy stores every value as a string);
* :mod:`~crab.avuie.released.rows`: one row -> the quality gate's columns and the records it becomes, built with
  the builders' label types, answer formats and canonical instructions (an imported record has a built one's form);
* :mod:`~crab.avuie.released.importer`: reading, the Great Expectations gate (:mod:`crab.quality.released`; bad
  rows are quarantined with their file, index and reasons), and writing in ``avuie_build``'s layout.

Entry points: ``crab import-avuie --release DIR --out DIR`` (any folder), and ``avuie.release`` in ``params.yaml``
(null by default), with which ``avuie_build`` imports the tasks the release holds instead of building them.
Ref-AVS has no sample list (Crab reads its native ``metadata.csv``, as ``avuie_build`` does).
"""
