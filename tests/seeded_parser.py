"""Stand-in weights for the face parser, for tests only: facexlib's pretrained BiSeNet cannot be
downloaded here, so tests save a seeded random state dict and load it through the product's own
`parsing.weights` path.

With random weights and default batch-norm statistics the network answers one class
everywhere, which would make parity tests pass trivially. So the batch-norm statistics are
first measured on seeded smooth noise: then the label maps of real faces vary from pixel to
pixel and agreement between two implementations means something.

    python tests/seeded_parser.py resources/weights/seeded_bisenet_for_tests.pth
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from facexlib.parsing.bisenet import BiSeNet

SEED = 0


def seeded_state_dict(seed: int = SEED) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BiSeNet(num_class=19)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    noise = torch.rand(8, 3, 16, 16, generator=generator)
    smooth = torch.nn.functional.interpolate(noise, size=(128, 128), mode="bicubic")
    images = (smooth - 0.45) / 0.25  # roughly ImageNet-normalised
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval().state_dict()


def write_seeded_weights(path: str | Path, seed: int = SEED) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(seeded_state_dict(seed), path)
    return path


if __name__ == "__main__":
    print(write_seeded_weights(sys.argv[1]))
