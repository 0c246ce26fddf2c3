"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def torch_one_thread() -> Iterator[None]:
    """Run torch on one thread in tests: tiny matmuls gain nothing from threads, and on a busy 2-core box the
    OpenMP spin of a second thread made a tiny training step 30-40x slower (0.03 s vs 1.3 s measured)."""
    import torch  # here, not at module level: collecting the torch-free tests stays fast

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
