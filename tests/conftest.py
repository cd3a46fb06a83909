import os

import pytest
import torch

# The synthetic problems are small: one thread is fastest and keeps timings steady.
torch.set_num_threads(int(os.environ.get("HETEROSIM_TEST_THREADS", "1")))


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module, whatever the session's count: the tiny transformer models
    are dominated by per-op overhead, and one thread avoids OpenMP contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
