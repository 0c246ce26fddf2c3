"""Readers of the public datasets' native layouts, and media decoding.

``records`` holds the typed records and rejections every reader returns; ``vocab`` the datasets'
vocabularies; ``media`` decodes video, audio and images with PyAV / PIL exactly as Crab samples them;
``ave``, ``music_avqa`` and ``valor`` parse annotation files into records (syntax only: the quality
gates in ``crab.quality`` check vocabularies, ranges, duplicates and media).

Import from the submodules (``from crab.datasets.media import read_frames``); the package itself
imports nothing, so ``crab.datasets.records`` and ``crab.datasets.vocab`` load without PyAV.
"""
