"""OASIS's own training iteration, run here, for the parity tests: its OASIS_model (the code in
../shared/reference/oasis, its discriminator built at the fixture's widths, `D_widths`) loaded with
the fixture's initial weights, then its train.py's G step, D step and EMA update from torch's
global RNG seeded 2. Writes every tensor of G, D and the EMA after the step. Why here and not the
fixture's digests: as for NVlabs (tests/nvlabs_step.py), Adam's first step moves a weight whose
gradient is 0 but for rounding by lr either way, depending on the CPU's kernels.

    python tests/oasis_step.py CODE_DIR FIXTURE OUT THREADS   # a subprocess: OASIS's packages are
                                                            # named models, utils, config
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import torch

AUTHORS_WIDTHS = "[3, 128, 128, 256, 256, 512, 512]"


def code_with_widths(code: Path, widths: list[int]) -> Path:
    """A copy of OASIS's code whose discriminator has `widths` in place of the ones its code fixes."""
    copy = Path(tempfile.mkdtemp()) / "oasis"
    shutil.copytree(code, copy)
    discriminator = copy / "models" / "discriminator.py"
    text = discriminator.read_text()
    assert f"self.channels = {AUTHORS_WIDTHS}" in text, "OASIS's discriminator widths are not where they were"
    discriminator.write_text(text.replace(f"self.channels = {AUTHORS_WIDTHS}", f"self.channels = {widths}"))
    return copy


def step(record: dict) -> dict:
    import config
    import models.losses as losses
    import models.models as models
    import utils.utils as utils

    options = record["options"]
    sys.argv = ["train.py", "--name", "parity", "--checkpoints_dir", tempfile.mkdtemp(), "--gpu_ids", "-1",
                "--batch_size", str(options["batch_size"]), "--channels_G", str(options["channels_G"]),
                "--dataset_mode", "ade20k", "--seed", "0"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        opt = config.read_arguments(train=True)
    opt.label_nc, opt.contain_dontcare_label, opt.semantic_nc = (options["label_nc"], options["contain_dontcare_label"],
                                                                 options["semantic_nc"])  # fmt: skip
    opt.crop_size = opt.load_size = record["resolution"]
    opt.aspect_ratio = 1.0
    with contextlib.redirect_stdout(io.StringIO()):
        model = models.put_on_multi_gpus(models.OASIS_model(opt), opt)
    model.netG.load_state_dict(record["init"]["G"])
    model.netD.load_state_dict(record["init"]["D"])
    model.netEMA.load_state_dict(record["init"]["G"])
    image, label = models.preprocess_input(opt, {"label": record["labels"].unsqueeze(1).float(),
                                                 "image": record["image"].clone()})  # fmt: skip
    computer = losses.losses_computer(opt)
    opt_G = torch.optim.Adam(model.netG.parameters(), lr=opt.lr_g, betas=(opt.beta1, opt.beta2))
    opt_D = torch.optim.Adam(model.netD.parameters(), lr=opt.lr_d, betas=(opt.beta1, opt.beta2))
    torch.manual_seed(2)
    model.netG.zero_grad()
    loss_G, _ = model(image, label, "losses_G", computer)
    loss_G.backward()
    opt_G.step()
    model.netD.zero_grad()
    loss_D, _ = model(image, label, "losses_D", computer)
    loss_D.backward()
    opt_D.step()
    utils.update_EMA(model, 1, None, opt)
    networks = {"G": model.netG, "D": model.netD, "EMA": model.netEMA}
    return {part: {k: v.clone() for k, v in network.state_dict().items()} for part, network in networks.items()}


def main() -> None:
    code, fixture, out = (Path(arg) for arg in sys.argv[1:4])
    torch.set_num_threads(int(sys.argv[4]))  # the caller's: the threads decide the order of sums
    saved = torch.load(fixture, weights_only=True)
    sys.path.insert(0, str(code_with_widths(code, saved["D_widths"])))
    torch.save({"oasis": step(saved["oasis"])}, out)


if __name__ == "__main__":
    main()
