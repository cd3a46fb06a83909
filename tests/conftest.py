import os

import torch

# The synthetic problems are small: one thread is fastest and keeps timings steady.
torch.set_num_threads(int(os.environ.get("HETEROSIM_TEST_THREADS", "1")))
