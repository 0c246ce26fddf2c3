"""crab: Crab (CVPR'25), a unified audio-visual scene understanding LLM, as a reproducible pipeline.

See DESIGN.md (architecture) and README.md (the two newcomer commands). Importing the package is light:
subpackages load their heavy dependencies (torch, great_expectations, prefect) only when used.
"""

__version__ = "0.1.0"
