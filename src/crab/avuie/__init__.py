"""AV-UIE: the instruction data of Crab, with explicit reasoning (paper section 3, Figure 2).

``schema`` defines the record and its JSONL files; ``ave``, ``avqa`` and ``avcap`` hold each task's label,
answer formatter / parser and builder; ``build`` is the ``avuie_build`` stage. The task modules import only
the standard library and light ``crab`` modules, because ``crab.tasks`` (loaded by the CLI) resolves their
parsers; only ``build`` imports the dataset readers.
"""
