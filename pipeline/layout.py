"""Where a run's files live, relative to the directory the workflow runs in: the one spelling of
each path that more than one place needs. The rules name their inputs and outputs with it
(passing Snakemake wildcards as the names, e.g. RESULTS.synth("{model}")), and the stages and
tools that find a run's files by themselves (synthesize --model, the face editor) use the same."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The table row of the real test images: the upper bound for accuracy and mIoU, FID's reference.
REAL_ROW = "real"

# A replicate's run is named after its model: `spade#1` is replicate 1 of model `spade`.
REPLICATE_MARK = "#"


def replicate_name(model: str, replicate: int) -> str:
    """The name of a model's run (its files, its jobs, its line of the long table): the model's
    own name for replicate 0, so that a model trained before replicates existed is replicate 0."""
    return model if replicate == 0 else f"{model}{REPLICATE_MARK}{replicate}"


def parse_replicate(name: str) -> tuple[str, int]:
    """(model, replicate) of a run's name, the inverse of replicate_name."""
    model, mark, replicate = name.partition(REPLICATE_MARK)
    return (model, int(replicate)) if mark and replicate.isdigit() else (name, 0)


# Downloads and other inputs made once (git-ignored, like results/).
PARSER_WEIGHTS = "resources/weights/parsing_bisenet.pth"
DEMO_PARSER_WEIGHTS = "resources/weights/procedural_bisenet.pth"


@dataclass(frozen=True)
class RunFiles:
    """One training setting's folder (results/models/{model}/runs/<key>): its checkpoints, its
    sample grids and its running log."""

    folder: Path

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def log(self) -> Path:
        return self.folder / "train_log.csv"

    @property
    def resumes(self) -> Path:
        """The steps the run resumed from, one row each (the running log keeps no trace of them)."""
        return self.folder / "resumes.csv"

    def samples(self, step: int) -> Path:
        return self.folder / "samples" / f"step_{step:08d}.png"


@dataclass(frozen=True)
class ModelFiles:
    """What training leaves for one model (results/models/{model})."""

    GENERATOR = "generator.pt"

    folder: Path

    @property
    def generator(self) -> Path:
        return self.folder / self.GENERATOR

    @property
    def train_log(self) -> Path:
        return self.folder / "train_log.csv"

    def run(self, key: str) -> RunFiles:
        return RunFiles(self.folder / "runs" / key)


@dataclass(frozen=True)
class Results:
    """A run's results folder: `results` where the workflow runs, or wherever a tool is pointed."""

    root: str = "results"

    def _path(self, *parts: object) -> str:
        return "/".join([self.root, *map(str, parts)])

    @property
    def split(self) -> str:
        return self._path("data", "split.csv")

    @property
    def labels(self) -> str:
        """The label maps, {image_id}.png, and shards/, their manifests."""
        return self._path("labels")

    def shard_manifest(self, shard: object) -> str:
        return self._path("labels", "shards", f"{shard}.csv")

    def shard_manifests(self) -> list[Path]:
        """The manifests on disk, in shard order."""
        found = [path for path in Path(self.labels, "shards").glob("*.csv") if path.stem.isdigit()]
        return sorted(found, key=lambda path: int(path.stem))

    @property
    def parse_preview(self) -> str:
        return self._path("labels", "preview.png")

    @property
    def models(self) -> str:
        return self._path("models")

    def model(self, name: object) -> ModelFiles:
        return ModelFiles(Path(self.models, str(name)))

    def trained_models(self) -> list[Path]:
        """The generator.pt of every trained model on disk, each model's runs together, in order."""
        return sorted(Path(self.models).glob(f"*/{ModelFiles.GENERATOR}"), key=lambda p: parse_replicate(p.parent.name))

    def synth(self, model: object) -> str:
        return self._path("synth", model)

    def real(self, resolution: object, part: str) -> str:
        """Real images at a working resolution: test, truth (their label maps) or train."""
        return self._path("real", resolution, part)

    def row_images(self, row: object, resolution: object) -> str:
        """A table row's images of the test set, which are re-segmented: a model's syntheses, or
        the real test images at the working resolution."""
        return self.real(resolution, "test") if row == REAL_ROW else self.synth(row)

    def fid_images(self, row: object, resolution: object, reference: str) -> str:
        """A row's images for FID and KID against the reference set (metrics.fid_reference: real
        test or train images): a model's syntheses, or the real row's the other real part."""
        if row == REAL_ROW:
            return self.real(resolution, "train" if reference == "test" else "test")
        return self.synth(row)

    def trained(self, row: object) -> list[str]:
        """What a row's evaluation reads of how it was made: a model's generator.pt and training
        log; nothing for the real row."""
        if row == REAL_ROW:
            return []
        files = self.model(row)
        return [str(files.generator), str(files.train_log)]

    def real_stats(self, resolution: object, reference: object) -> str:
        """Inception statistics of the FID reference set: the real test or train images."""
        return self._path("real", resolution, f"{reference}_stats.npz")

    def resegment(self, row: object, shard: object) -> str:
        return self._path("resegment", row, shard)

    def metrics(self, row: object) -> str:
        return self._path("metrics", f"{row}.json")

    def confusions(self, row: object) -> str:
        """A row's per-image confusion matrices, what the table resamples (over test images and runs)."""
        return self._path("metrics", f"{row}_confusions.npz")

    @property
    def table(self) -> str:
        """The comparison table (pipeline.table writes its Markdown beside it)."""
        return self._path("table.csv")

    @property
    def table_markdown(self) -> str:
        return str(Path(self.table).with_suffix(".md"))

    @property
    def table_runs(self) -> str:
        """The long table: one line per training run (replicate) of each model, then `real`."""
        return self._path("table_runs.csv")

    @property
    def pairwise(self) -> str:
        """The differences between compared models, each with its 95% interval."""
        return self._path("pairwise.csv")

    @property
    def per_class_iou(self) -> str:
        return self._path("per_class_iou.csv")

    def figure(self, name: str) -> str:
        return self._path("figures", f"{name}.png")

    def resources(self, path: str) -> Path:
        """A resources/ path of the run whose results these are (resources/ sits beside results/)."""
        return Path(self.root).parent / path


RESULTS = Results()
