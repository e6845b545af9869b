import os

import torch

# Tests are about exactness, not speed: one thread keeps them predictable on shared CI cores.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
