"""Report tests: one torch thread (tiny tensors gain nothing from two, and a busy 2-core machine makes them wait)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
