"""An exponential moving average of the generator's weights (OASIS, Sushko et al. 2021), the
generator that synthesises once training ends. Its batch-norm statistics are averaged with the
rest and then collected again on training label maps, as the authors do before they save or
evaluate it."""

from __future__ import annotations

import copy

import torch
from torch import nn

# The batches the average generator runs in train mode to collect its batch-norm statistics
# again: the authors' update_EMA runs 51 (it stops once it has counted more than 50); and how
# often: every 1,000 steps (its freq_print), and at the last step.
STATISTICS_BATCHES = 51
STATISTICS_EVERY = 1000


class MovingAverage:
    """Every entry of the average's state dict, buffers too (batch-norm statistics, spectral
    norm's u and v), becomes decay x itself + (1 - decay) x the generator's after each step, cast
    to the entry's dtype as the authors' copy_ does (an integer, a batch norm's step counter,
    truncated)."""

    def __init__(self, generator: nn.Module, decay: float) -> None:
        self.network = copy.deepcopy(generator).requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        current = generator.state_dict()
        for key, value in self.network.state_dict().items():
            value.copy_(value * self.decay + current[key] * (1 - self.decay))

    @torch.no_grad()
    def collect_statistics(self, batches) -> None:
        """Run the average in train mode, without gradients, on `batches` of (one-hot label
        maps, noise): its batch norms' running statistics (and its spectral norms' u and v) move
        as in training; its weights do not."""
        training = self.network.training
        self.network.train()
        for seg, z in batches:
            self.network(seg, z)
        self.network.train(training)
