"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def torch_one_thread() -> Iterator[None]:
    """Run torch on one thread in tests: tiny matmuls gain nothing from threads, and on a busy 2-core box the
    OpenMP spin of a second thread made a tiny training step 30-40x slower (0.03 s vs 1.3 s measured)."""
    import torch  # here, not at module level: collecting the torch-free tests stays fast

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """Import a script of ``benchmarks/`` (not a package) by its name, e.g. ``load_benchmark("media_reliance")``."""

    def load(name: str) -> ModuleType:
        qualified = f"benchmarks_{name}"  # registered before it runs: dataclasses look their module up there
        if qualified in sys.modules:
            return sys.modules[qualified]
        spec = importlib.util.spec_from_file_location(qualified, REPO / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
        return module

    return load
