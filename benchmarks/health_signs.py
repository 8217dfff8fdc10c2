"""The signs pipeline.health watches, step by step, for one model on procedural faces (a
benchmark: the measurements behind its thresholds, docs/benchmarks.md).

    python benchmarks/health_signs.py spade
    python benchmarks/health_signs.py pix2pixhd --lr-G 0.05     # a run that collapses
    python benchmarks/health_signs.py oasis                     # with its own objective
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pipeline.config import ModelConfig, resolve
from pipeline.data.procedural import procedural_face
from pipeline.distributed import World
from pipeline.health import output_spread
from pipeline.models.networks import build
from pipeline.models.objective import build_objective
from pipeline.pairs import to_model_inputs
from pipeline.train import batch_indices, make_optimizers, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model of config.yaml")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--lr-G", type=float, default=1e-4)
    args = parser.parse_args()
    faces = [procedural_face(seed, 64) for seed in range(40)]
    images = torch.from_numpy(np.stack([image for image, _ in faces])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.stack([label for _, label in faces]))
    training = {"resolution": 64, "batch_size": 4, "vgg": False, "lr_G": args.lr_G}
    config = resolve({"training": training, "models": {args.model: {"ngf": 8, "ndf": 8}}})
    model = ModelConfig.from_config(config, args.model)
    torch.manual_seed(0)
    networks = build(model)
    opt_G, opt_D = make_optimizers(networks, model.training)
    objective = build_objective(model, networks, torch.device("cpu"), World())
    print("step", *objective.LOSSES, "fake_spread")
    for step in range(args.steps):
        index = batch_indices(step, 4, len(faces), 0)
        real, seg = to_model_inputs(images[index], labels[index], torch.device("cpu"))
        losses, fake = train_step(objective, opt_G, opt_D, seg, real)
        if (step + 1) % args.every == 0:
            print(step + 1, *(f"{v:.3f}" for v in losses.tolist()), f"{output_spread(fake, real).item():.3f}")


if __name__ == "__main__":
    main()
