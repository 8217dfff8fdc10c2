"""NVlabs' own training iteration, run here, for the parity tests: its Pix2PixTrainer (the code in
../shared/reference/nvlabs-spade, as its options build it for the fixture's cases) loaded with the
fixture's initial weights, the fixture's forwards replayed, then one G step and one D step from
torch's global RNG seeded 2. Writes every tensor of G, D and E after the step. The same for CLADE,
a fork of NVlabs' code whose trainer is NVlabs' (../shared/reference/clade, clade_fixture.pt): the
cases' options say which norm (`norm_mode`) and whether its distance input (`add_dist`).

Why here and not the fixture's digests of those weights: Adam's first step with beta1 = 0 moves
each weight by lr times the sign of its gradient, and some gradients are 0 but for rounding (a
bias before a batch norm), so which way such a weight moves depends on the CPU's kernels, and
from there the rest of the step. The fixture's losses agree on any CPU; its weights after the
step only on the CPU that made it. NVlabs' step and ours on the same CPU agree to rounding.

    python tests/nvlabs_step.py CODE_DIR FIXTURE OUT THREADS   # a subprocess: NVlabs' packages
                                                             # are named models, data, util, options
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import tempfile
from pathlib import Path

import torch


def trainer_for(record: dict):
    from options.train_options import TrainOptions
    from trainers.pix2pix_trainer import Pix2PixTrainer

    options = record["options"]
    size = str(record["resolution"])
    sys.argv = [
        "train.py", "--name", "parity", "--checkpoints_dir", tempfile.mkdtemp(), "--dataset_mode", "custom",
        "--label_dir", "/nonexistent", "--image_dir", "/nonexistent", "--label_nc", str(options["label_nc"]),
        "--no_instance", "--crop_size", size, "--load_size", size, "--aspect_ratio", "1",
        "--ngf", str(options["ngf"]), "--ndf", str(options["ndf"]), "--batchSize", str(options["batchSize"]),
        "--gpu_ids", "-1", "--no_vgg_loss", "--norm_G", options["norm_G"],
        *(["--use_vae"] if options["use_vae"] else []),
        *(["--norm_mode", options["norm_mode"]] if "norm_mode" in options else []),
        *(["--add_dist"] if options.get("add_dist") else []),
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        return Pix2PixTrainer(TrainOptions().parse())


def step(record: dict) -> dict:
    trainer = trainer_for(record)
    model = trainer.pix2pix_model
    networks = {"G": model.netG, "D": model.netD, "E": model.netE}
    for part, network in networks.items():
        if network is not None:
            network.load_state_dict(record["init"][part])
    data = {"label": record["labels"].long().unsqueeze(1).float(), "instance": torch.zeros(1),
            "image": record["image"], "path": None, "dist": record.get("dist")}
    seg, real, *_ = model.preprocess_input(dict(data))  # CLADE's also returns the distance map
    with torch.no_grad():  # the fixture's forwards after init, which advanced D's and E's spectral norms
        networks["D"](torch.cat([torch.cat([seg, record["G_train"]], 1), torch.cat([seg, real], 1)], 0))
        if networks["E"] is not None:
            networks["E"](real)
    torch.manual_seed(2)
    trainer.run_generator_one_step(dict(data))
    trainer.run_discriminator_one_step(dict(data))
    return {part: {k: v.clone() for k, v in network.state_dict().items()}
            for part, network in networks.items() if network is not None}  # fmt: skip


def main() -> None:
    code, fixture, out = (Path(arg) for arg in sys.argv[1:4])
    torch.set_num_threads(int(sys.argv[4]))  # the caller's: the threads decide the order of sums
    sys.path.insert(0, str(code))
    # util.util imports dill only to pickle objects to files, which this never does.
    sys.modules.setdefault("dill", pickle)
    cases = torch.load(fixture, weights_only=True)
    torch.save({name: step(record) for name, record in cases.items() if isinstance(record, dict)}, out)


if __name__ == "__main__":
    main()
