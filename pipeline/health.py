"""Signs that a GAN run has failed, watched while it trains: the discriminator rejecting every
fake, and syntheses that no longer depend on their label maps (the same image for every input).
Neither stops the run; they are logged, written to train_log.csv and flagged in the table.

Both are judged on the median over the last WINDOW steps, and only from step 2 x WINDOW on:
at initialisation every generator outputs nearly the same grey image, and a healthy SPADE run
takes some dozens of steps to leave it (measured in docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from statistics import median

import torch

WINDOW = 50
# The hinge loss on fakes, mean(relu(1 + D(fake))), is 0 when D scores every fake below -1.
D_FAKE_FLOOR = 0.05
# Spread of the fakes in a batch as a fraction of the real images' spread.
SPREAD_FLOOR = 0.1

SIGNS = {
    "D_wins": f"the discriminator rejects every fake (median D_fake below {D_FAKE_FLOOR} over {WINDOW} steps)",
    "same_output": (
        f"syntheses of different label maps are nearly identical (their spread is below {SPREAD_FLOOR} of "
        f"the real images' over {WINDOW} steps)"
    ),
}


def output_spread(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean pairwise L1 distance between the batch's fakes over that between its real images
    (NaN for a batch of one). About 1 when the fakes vary as much as the faces do; near 0 when
    the generator makes the same image whatever the label map."""
    if len(fake) < 2:
        return torch.full((), float("nan"), device=fake.device)

    def spread(images: torch.Tensor) -> torch.Tensor:
        flat = images.detach().flatten(1).float()
        return torch.cdist(flat, flat, p=1).sum()

    return spread(fake) / spread(real).clamp_min(1e-12)


class HealthWatch:
    """The signs of failure at each step, from the D_fake losses and output spreads so far."""

    def __init__(self) -> None:
        self.steps = 0
        self.d_fake: deque[float] = deque(maxlen=WINDOW)
        self.spread: deque[float] = deque(maxlen=WINDOW)

    def update(self, d_fake: float, spread: float) -> tuple[str, ...]:
        """Record one step; return the signs that hold now (names from SIGNS)."""
        self.steps += 1
        self.d_fake.append(d_fake)
        if spread == spread:  # NaN (a batch of one) says nothing
            self.spread.append(spread)
        if self.steps < 2 * WINDOW:
            return ()
        signs = []
        if median(self.d_fake) < D_FAKE_FLOOR:
            signs.append("D_wins")
        if len(self.spread) == WINDOW and median(self.spread) < SPREAD_FLOOR:
            signs.append("same_output")
        return tuple(signs)

    def replay(self, rows: Iterable[tuple[float, float]]) -> tuple[str, ...]:
        """Feed the (D_fake, spread) of steps already taken, e.g. from a resumed run's log;
        return the signs after the last of them."""
        signs: tuple[str, ...] = ()
        for d_fake, spread in rows:
            signs = self.update(d_fake, spread)
        return signs


def describe(signs: str) -> str:
    """The log's `health` cell ("D_wins+same_output") in words."""
    return "; ".join(SIGNS[name] for name in signs.split("+") if name)
