"""Our ``evaluate`` metric modules, one folder each (``<name>/<name>.py``), loaded by path via ``crab.eval.load_metric``.

The folders are packages only so that a non-editable install ships the module files; nothing imports them
as ``crab.eval.metrics...``: ``evaluate`` copies each file into its own module cache and imports it there.
"""
