"""The GPU check: what a GPU must show, from one command (a benchmark, not a test).

    python benchmarks/gpu_check.py --out "$OUT" --wheels wheels     # on a GPU node: about 8 minutes
    python benchmarks/gpu_check.py --out /tmp/check --cpu           # the same parts, tiny, on the CPU

Each part runs in its own process under its own time limit, so that a failure or a hang costs
that part only, and its figures go to OUT/gpu_check.json as soon as it ends (rewritten whole each
time), with every part's output in OUT/gpu_check.log: whatever was written comes back even if a
later part, or the node, is lost. The parts:

- install: the wheels benchmarks/gpu_wheels.sh made (--wheels; `pip install --no-index --no-deps`),
  then this project without its dependencies; the node's own torch and torchvision stay as they are.
- train_resume: the offline demo's `spade` trained 300 steps in bf16 on drawn faces by the train
  CLI, stopped by SIGTERM half-way and resumed: where it resumed, where it ended, its img/s.
- torchrun: a few training steps through torchrun on one process, as the train rule starts a
  multi-GPU job, and the process group (NCCL on a GPU, gloo on the CPU) with one all_reduce.
- gpu_tests: `pytest -m gpu` on the test files that hold GPU tests (named: collecting the whole
  suite would import every module first), with their pass, fail and skip counts.
- side_by_side_bf16, side_by_side_fp32: our training step against NVlabs' (benchmarks/vs_reference.py,
  NVlabs' code from ../shared/reference or --reference) at 256x256, batch 16, ngf 64, VGG on.
- fid_throughput: pool3 features of generated 1024x1024 PNGs per second, with seeded Inception
  weights of pytorch-fid's architecture (its real weights, 96 MB, are not sent to the node).
- parse_throughput: the parse stage against decoding alone on generated 1024x1024 PNGs
  (benchmarks/parse_throughput.py, a randomly initialised BiSeNet: speed does not need its weights).

--cpu runs every part at tiny sizes, two at a time (under a minute on 2 cores), so that the
script cannot rot between GPU runs; the default test suite runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The test files holding tests marked gpu, the quickest first (tests/test_gpu_check.py checks the list).
GPU_TEST_FILES = ["tests/test_models.py", "tests/test_synthesize_and_table.py", "tests/test_parse.py",
                  "tests/test_fid.py", "tests/test_train.py"]  # fmt: skip
# In this order (the longest first: with --cpu two run at a time).
PARTS = ["install", "train_resume", "torchrun", "gpu_tests", "side_by_side_bf16", "side_by_side_fp32",
         "fid_throughput", "parse_throughput"]  # fmt: skip


class Sizes:
    """What each part runs on: the GPU's figures, or tiny ones on the CPU. Limits in seconds."""

    def __init__(self, cpu: bool) -> None:
        self.device = "cpu" if cpu else "cuda"
        # Torch's CPU threads in training and the DataLoader's workers in parsing and FID; one each on
        # the CPU, where two parts run side by side on two cores.
        self.threads, self.workers = (1, 1) if cpu else (4, 4)
        self.side_by_side = (["--resolution", "64", "--batch-size", "2", "--ngf", "8", "--vgg", "off", "--warmup", "1",
                              "--rounds", "1", "--steps", "1"] if cpu else
                             ["--resolution", "256", "--batch-size", "16", "--ngf", "64", "--vgg", "on", "--warmup",
                              "3", "--rounds", "3", "--steps", "5"])  # fmt: skip
        self.train_steps, self.train_stop_at = (6, 2) if cpu else (300, 150)
        self.torchrun_steps = 2 if cpu else 20
        self.train_ngf, self.train_resolution = (8, 64) if cpu else (16, 64)
        self.images, self.image_side, self.parse_size = (4, 128, 128) if cpu else (256, 1024, 512)
        self.distinct_images = 2 if cpu else 16  # drawn; the rest of the throughput parts' images are copies
        # Each part's limit, and the whole check's: a command on the GPU node may run 10 minutes.
        self.total = 240 if cpu else 530
        self.limits = ({"install": 60, "gpu_tests": 60, "side_by_side_bf16": 60, "side_by_side_fp32": 60,
                        "train_resume": 60, "parse_throughput": 60, "fid_throughput": 60, "torchrun": 60} if cpu else
                       {"install": 30, "gpu_tests": 180, "side_by_side_bf16": 60, "side_by_side_fp32": 60,
                        "train_resume": 90, "parse_throughput": 40, "fid_throughput": 30, "torchrun": 60})  # fmt: skip


class Report:
    """OUT/gpu_check.json, rewritten (whole, atomically) as each part ends, and OUT/gpu_check.log,
    each process's command and output together (parts may run side by side: --cpu)."""

    def __init__(self, out: Path, header: dict, seconds: float) -> None:
        """`seconds`: the whole check's time, which no part's limit may run past."""
        self.deadline = time.monotonic() + seconds
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.log = out / "gpu_check.json", out / "gpu_check.log"
        self.data = {**header, "parts": {}}
        self.lock = threading.Lock()
        self.log.write_text("")
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)

    def note(self, text: str) -> None:
        with self.lock, open(self.log, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def part(self, name: str, result: dict) -> None:
        with self.lock:
            self.data["parts"][name] = result
            self.write()


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it, from /proc: also those that began sessions of their own
    (torchrun's workers, the tests' training runs), which killing a process group would miss."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(child for child, parent in parents.items() if parent == tree[-1])
    return tree


def finish(process: subprocess.Popen, limit: float) -> tuple[str, bool]:
    """The process's output once it ends, or once `limit` seconds pass and it and everything it
    started are killed (so that nothing of this part runs on into the next one's figures)."""
    try:
        return process.communicate(timeout=max(1.0, limit))[0], False
    except subprocess.TimeoutExpired:
        for pid in process_tree(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return process.communicate()[0], True


def run(report: Report, name: str, command: list[str], limit: float, **kwargs) -> tuple[dict, str]:
    """One process of a part under its limit (cut to what is left of the check's time): {"status",
    "seconds"} and its output, stdout and stderr together (in the log too)."""
    started, limit = time.monotonic(), min(limit, report.time_left())
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               **kwargs)  # fmt: skip
    output, timed_out = finish(process, limit)
    status = (f"timed out after {limit:.0f} s" if timed_out else
              "ok" if process.returncode == 0 else f"failed (exit {process.returncode})")  # fmt: skip
    report.note(f"=== {name}: {' '.join(command)}\n{output}")
    return {"status": status, "seconds": round(time.monotonic() - started, 1)}, output


def environment(cpu: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": "cpu" if cpu else "gpu",
        "device": torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }


def install(report: Report, sizes: Sizes, wheels: Path | None, site: Path) -> dict:
    """The wheels, then this project, into `site` (a folder every part's PYTHONPATH holds), not into
    the node's own environment, which may be read-only and keeps its torch and torchvision."""
    if wheels is None:
        return {"status": "skipped", "why": "no --wheels: the packages are taken as installed"}
    files = sorted(str(path) for path in wheels.resolve().glob("*.whl"))
    if not files:
        return {"status": f"failed (no wheels in {wheels})"}
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--target",
           str(site)]  # fmt: skip
    result, _ = run(report, "install", [*pip, *files], sizes.limits["install"])
    if result["status"] == "ok":
        result, _ = run(report, "install", [*pip, "--no-build-isolation", str(REPO)], sizes.limits["install"])
    return {**result, "wheels": len(files)}


def gpu_tests(report: Report, sizes: Sizes, scratch: Path) -> dict:
    """`pytest -m "gpu and not slow"` (torch.compile's test compiles for minutes), on a GPU a file
    at a time, the quickest first, so that the part's limit cuts the slowest file short, not every
    file's results (on the CPU, where they skip, in one run). Counts from pytest's verbose lines, which a run cut short has printed too; from
    each finished file's JUnit file, what the tests measured (record_property: how far CUDA's
    results are from the CPU's, which their tolerances are sized from)."""
    started, limit = time.monotonic(), sizes.limits["gpu_tests"]
    result: dict = {"status": "ok", "files": {}, "not_passed": [], "measured": {}}
    outcomes: list[str] = []
    for index, test_files in enumerate([GPU_TEST_FILES] if sizes.device == "cpu" else [[f] for f in GPU_TEST_FILES]):
        junit, test_file = scratch / f"gpu_tests_{index}.xml", " ".join(test_files)
        done, output = run(report, f"gpu_tests {test_file}", [sys.executable, "-m", "pytest", "-v", "-m",
                           "gpu and not slow", "-p", "no:cacheprovider", f"--junitxml={junit}", *test_files],
                           limit - (time.monotonic() - started))  # fmt: skip
        found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", output, re.M)
        outcomes += [outcome for _, outcome in found]
        result["not_passed"] += [test for test, outcome in found if outcome in ("FAILED", "ERROR")]
        # exit 1: some failed (counted); 5: none collected on this machine
        if done["status"] not in ("ok", "failed (exit 1)", "failed (exit 5)") and result["status"] == "ok":
            result["status"] = f"{test_file}: {done['status']}"
        result["files"][test_file] = done
        if junit.exists():
            result["measured"].update({
                case.get("name"): {item.get("name"): item.get("value") for item in case.iter("property")}
                for case in ElementTree.parse(junit).getroot().iter("testcase") if case.find("properties") is not None
            })  # fmt: skip
    for outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED"):
        result[outcome.lower()] = outcomes.count(outcome)
    if result["not_passed"] and result["status"] == "ok":
        result["status"] = f"failed ({len(result['not_passed'])} tests)"
    return {**result, "seconds": round(time.monotonic() - started, 1)}


def side_by_side(report: Report, sizes: Sizes, amp: str, reference: Path) -> dict:
    command = [sys.executable, "benchmarks/vs_reference.py", "--device", sizes.device, "--amp", amp,
               *sizes.side_by_side]  # fmt: skip
    env = {**os.environ, "PIPELINE_SHARED": str(reference.resolve().parent)}
    name = f"side_by_side_{'bf16' if amp == 'on' else 'fp32'}"
    result, output = run(report, name, command, sizes.limits[name], env=env)
    for name in ("NVlabs", "ours"):
        found = re.search(rf"^\s*{name}: +([\d.]+) img/s.*peak ([\d,]+) MB", output, re.M)
        if found:
            result[f"{name}_img_per_s"], result[f"{name}_peak_mb"] = float(found[1]), int(found[2].replace(",", ""))
    if output.startswith("skipped:"):  # NVlabs' code not found: the figure this check is for is missing
        return {**result, "status": "failed (" + output.strip() + ")"}
    ratio = re.search(r"ratio: ([\d.]+) x", output)
    if ratio:
        result["ratio"] = float(ratio[1])
    elif result["status"] == "ok":
        result["status"] = "failed (no figures: " + " ".join(output.split())[-200:] + ")"
    return result


def drawn_faces(scratch: Path, count: int, side: int) -> tuple[Path, list[str]]:
    """`count` drawn faces at `side` (images/ and labels/) and a one-shard manifest of them."""
    from pipeline.data.procedural import write_faces

    folder = scratch / f"faces_{count}x{side}"
    ids = write_faces(folder, range(count), side)
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "split", "path", "label"])
        writer.writerows((i, "train", str(folder / "images" / f"{i}.png"), str(folder / "labels" / f"{i}.png"))
                         for i in ids)  # fmt: skip
    return folder, [str(manifest)]


def training_config(scratch: Path, sizes: Sizes, steps: int, gpus: int = 1) -> Path:
    """The offline demo's `spade`, at the check's sizes, on its device, as a config file."""
    import yaml

    demo = yaml.safe_load((REPO / "workflow/demo/config.yaml").read_text())
    training = {**demo["training"], "device": sizes.device, "iterations": steps, "decay_start": steps // 2,
                "checkpoint_every": max(1, steps // 3), "sample_every": steps, "amp": True, "gpus": gpus,
                "resolution": sizes.train_resolution}  # fmt: skip
    model = {**demo["models"]["spade"], "ngf": sizes.train_ngf, "ndf": sizes.train_ngf}
    path = scratch / f"train_{steps}_{gpus}.yaml"
    path.write_text(yaml.safe_dump({"training": training, "models": {"spade": model}, "compare": ["spade"]}))
    return path


def logged_steps(out: Path) -> list[dict[str, str]]:
    rows = []
    for log in (out / "runs").glob("*/train_log.csv"):
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
    return rows


def train_resume(report: Report, sizes: Sizes, scratch: Path) -> dict:
    _, manifests = drawn_faces(scratch, 32, 128)
    config, out = training_config(scratch, sizes, sizes.train_steps), scratch / "train_resume"
    command = [sys.executable, "-m", "pipeline.train", "--configfile", str(config), "--model", "spade", "--manifests",
               *manifests, "--out-dir", str(out), "--threads", str(sizes.threads)]  # fmt: skip
    started, limit = time.monotonic(), min(sizes.limits["train_resume"], report.time_left())
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while first.poll() is None and len(logged_steps(out)) < sizes.train_stop_at and time.monotonic() - started < limit:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    output, _ = finish(first, limit - (time.monotonic() - started))
    report.note(f"=== train_resume: {' '.join(command)} (SIGTERM after step {sizes.train_stop_at})\n{output}")
    stopped_at = len(logged_steps(out))
    rest = limit - (time.monotonic() - started)
    if rest <= 0:
        return {"status": f"timed out after {limit} s", "stopped_at": stopped_at}
    result, output = run(report, "train_resume (resumed)", command, rest)
    steps = logged_steps(out)
    # The speed once resumed and warmed up (cudnn.benchmark's search, the first steps); None at sizes
    # too small to have such steps.
    rates = sorted(float(row["img_per_s"]) for row in steps[stopped_at + 2 :])
    resumed = re.search(r"resum\w* .*?step (\d+)", output)
    return {**result, "seconds": round(time.monotonic() - started, 1), "steps": sizes.train_steps,
            "stopped_at": stopped_at, "resumed_from": int(resumed[1]) if resumed else None,
            "logged_steps": len(steps), "img_per_s_median": rates[len(rates) // 2] if rates else None,
            "generator_written": (out / "generator.pt").exists()}  # fmt: skip


def generated_pngs(folder: Path, sizes: Sizes) -> Path:
    """sizes.images PNGs at sizes.image_side for the throughput parts: a few drawn faces (about a
    second each at 1024 on a CPU core), copied under new names up to the count; throughput needs
    images of that size, not distinct ones."""
    images = drawn_faces(folder, min(sizes.images, sizes.distinct_images), sizes.image_side)[0] / "images"
    drawn = sorted(images.glob("*.png"))
    for index in range(len(drawn), sizes.images):
        shutil.copyfile(drawn[index % len(drawn)], images / f"copy{index:06d}.png")
    return images


def parse_throughput(report: Report, sizes: Sizes, images: Path) -> dict:
    command = [sys.executable, "benchmarks/parse_throughput.py", "--images", str(images), "--count", str(sizes.images),
               "--size", str(sizes.parse_size), "--device", sizes.device, "--workers", str(sizes.workers),
               "--batch-size", str(min(16, sizes.images))]  # fmt: skip
    result, output = run(report, "parse_throughput", command, sizes.limits["parse_throughput"])
    figures = re.search(r"^\{.*\}$", output, re.M)
    if figures:
        result.update(json.loads(figures[0]))
    return result


def fid_features_per_second(images: Path, device: str, scratch: Path, workers: int) -> dict:
    """In its own process (--part fid): pool3 features of every PNG in `images`, timed after a warm-up
    batch, with seeded weights of pytorch-fid's FID Inception (its architecture, random values)."""
    import torch
    from pytorch_fid import inception as fid_inception
    from torchvision.models.inception import Inception3

    from pipeline.fid import features, inception

    torch.manual_seed(0)
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=True)
    # pytorch-fid's FID Inception: torchvision's with these blocks in place (fid_inception_v3).
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = (fid_inception.FIDInceptionA(192, pool_features=32),
                                                fid_inception.FIDInceptionA(256, pool_features=64),
                                                fid_inception.FIDInceptionA(288, pool_features=64))  # fmt: skip
    net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e = (fid_inception.FIDInceptionC(768, channels_7x7=c)
                                                              for c in (128, 160, 160, 192))  # fmt: skip
    net.Mixed_7b, net.Mixed_7c = fid_inception.FIDInceptionE_1(1280), fid_inception.FIDInceptionE_2(2048)
    weights = scratch / "seeded_pt_inception.pth"
    torch.save(net.state_dict(), weights)
    model = inception(weights, torch.device(device))
    files = sorted(images.glob("*.png"))
    features(files[: min(50, len(files))], model, torch.device(device))
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    found = features(files, model, torch.device(device), workers=workers)
    seconds = time.perf_counter() - started
    return {"images": len(files), "features": int(found.shape[1]), "feature_seconds": round(seconds, 2),
            "images_per_s": round(len(files) / seconds, 2),
            "seconds_for_10000_images": round(10_000 * seconds / len(files), 1)}  # fmt: skip


def fid_throughput(report: Report, sizes: Sizes, images: Path, scratch: Path) -> dict:
    command = [sys.executable, __file__, "--part", "fid", "--images", str(images), "--device", sizes.device,
               "--scratch", str(scratch), "--workers", str(sizes.workers)]  # fmt: skip
    result, output = run(report, "fid_throughput", command, sizes.limits["fid_throughput"])
    figures = re.search(r"^\{.*\}$", output, re.M)
    if figures:
        result.update(json.loads(figures[0]))
    return result


def torchrun(report: Report, sizes: Sizes, scratch: Path) -> dict:
    _, manifests = drawn_faces(scratch, 32, 128)
    config, out = training_config(scratch, sizes, sizes.torchrun_steps), scratch / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
               "pipeline.train", "--configfile", str(config), "--model", "spade", "--manifests", *manifests,
               "--out-dir", str(out), "--threads", str(sizes.threads)]  # fmt: skip
    from pipeline.launch import SHUTDOWN_TIMEOUT_S

    env = {**os.environ, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT_S)}  # as the train rule starts it
    started, limit = time.monotonic(), sizes.limits["torchrun"]
    result, _ = run(report, "torchrun", command, limit, env=env)
    result.update(logged_steps=len(logged_steps(out)), generator_written=(out / "generator.pt").exists())
    # A world of one starts no process group (pipeline.distributed.start), so the backend itself
    # (NCCL: two processes cannot share one GPU) is checked apart: started by torchrun, one all_reduce.
    collective, output = run(report, "torchrun (process group)", [sys.executable, "-m", "torch.distributed.run",
                             "--standalone", "--nproc-per-node", "1", __file__, "--part", "collective", "--device",
                             sizes.device], max(1.0, limit - (time.monotonic() - started)), env=env)  # fmt: skip
    figures = re.search(r"^\{.*\}$", output, re.M)
    result.update(json.loads(figures[0]) if figures else {"process_group": collective["status"]})
    if collective["status"] != "ok" and result["status"] == "ok":
        result["status"] = f"process group {collective['status']}"
    return {**result, "seconds": round(time.monotonic() - started, 1)}


def collective(device: str) -> dict:
    """In a process torchrun started (--part collective): the process group the train CLI starts on
    `device`, with the timeout it gives it, and one all_reduce through it."""
    import torch
    import torch.distributed as dist

    from pipeline import distributed

    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=distributed.TIMEOUT)
    value = torch.full((4,), 2.0, device=device)
    dist.all_reduce(value)
    dist.destroy_process_group()
    return {"process_group": backend, "all_reduce_ok": bool((value.cpu() == 2.0).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the folder the figures go to ($OUT on the GPU node)")
    parser.add_argument("--cpu", action="store_true", help="every part at tiny sizes on the CPU")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels to install first (benchmarks/gpu_wheels.sh)")
    shared = Path(os.environ.get("PIPELINE_SHARED", REPO.parent / "shared"))
    parser.add_argument("--reference", type=Path, default=shared / "reference",
                        help="a folder named reference holding NVlabs' code (nvlabs-spade/), as ../shared's")  # fmt: skip
    parser.add_argument("--part", choices=["fid", "collective"], help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "fid":  # started with PYTHONPATH holding the project
        print(json.dumps(fid_features_per_second(args.images, args.device, args.scratch, args.workers)))
        return
    if args.part == "collective":
        print(json.dumps(collective(args.device)))
        return
    if args.out is None:
        parser.error("--out is required")
    sizes = Sizes(args.cpu)
    if args.cpu:
        os.environ["OMP_NUM_THREADS"] = str(sizes.threads)  # every part's torch, as for training
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU mode's figures are the CPU's, also on a GPU machine
    report = Report(args.out, environment(args.cpu), sizes.total)
    with tempfile.TemporaryDirectory() as tmp:
        # The checkout, then what the install part installs, here and in every part's process.
        site = Path(tmp) / "site"
        site.mkdir()
        sys.path[:0] = [str(REPO), str(site)]
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(site), os.environ.get("PYTHONPATH")]))
        pngs = generated_pngs(Path(tmp) / "pngs", sizes)  # what both throughput parts read
        checks = {
            "install": lambda scratch: install(report, sizes, args.wheels, site),
            "gpu_tests": lambda scratch: gpu_tests(report, sizes, scratch),
            "side_by_side_bf16": lambda scratch: side_by_side(report, sizes, "on", args.reference),
            "side_by_side_fp32": lambda scratch: side_by_side(report, sizes, "off", args.reference),
            "train_resume": lambda scratch: train_resume(report, sizes, scratch),
            "parse_throughput": lambda scratch: parse_throughput(report, sizes, pngs),
            "fid_throughput": lambda scratch: fid_throughput(report, sizes, pngs, scratch),
            "torchrun": lambda scratch: torchrun(report, sizes, scratch),
        }

        def check(name: str) -> None:
            scratch = Path(tmp) / name
            scratch.mkdir()
            try:
                result = checks[name](scratch)
            except Exception as err:  # noqa: BLE001 - one part's failure must not cost the others
                result = {"status": f"failed ({type(err).__name__}: {err})"}
            report.part(name, result)
            print(f"{name}: {json.dumps(result)}", flush=True)

        check("install")  # before the parts that import what it installs
        # On the GPU one part at a time, so that none slows another's figures; the CPU mode's figures
        # mean nothing, and two at a time keep it within the test suite's minute on two cores.
        with ThreadPoolExecutor(max_workers=2 if args.cpu else 1) as pool:
            list(pool.map(check, PARTS[1:]))
        report.data["parts"] = {name: report.data["parts"][name] for name in PARTS}  # in PARTS' order
        report.write()
    failed = [name for name, part in report.data["parts"].items() if part["status"] not in ("ok", "skipped")]
    print(f"wrote {report.path} and {report.log}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
