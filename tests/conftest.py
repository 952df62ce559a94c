"""Suite-wide settings."""

from __future__ import annotations

import matplotlib
import torch

# Random-weight nets hit denormal floats on CPU and run several times slower.
# Hypothesis cannot draw subnormal floats then: use allow_subnormal=False.
torch.set_flush_denormal(True)
# The test models are tiny: one thread avoids spin-waiting on shared cores, which
# made small convolutions many times slower with two.
torch.set_num_threads(1)
# Figures are rendered off-screen in the tests.
matplotlib.use("Agg")
