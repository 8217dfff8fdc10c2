"""The protocol a table was measured under, and which published figures share it.

A figure is comparable with a row only under the same protocol, judged per metric: FID and KID
when dataset, split, FID reference set, Inception features, working resolution and image count
match; accuracy and mIoU only when the segmenter matches too (another segmenter scores the same
faces differently). A published entry (config models.*.published) states its protocol in the same
fields; a field it leaves out is "not stated" and never matches, except the Inception features:
a published FID is pool3's (2048) unless its paper says otherwise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.config import DataConfig
from pipeline.data.celebamask_hq import FIRST_TEST_ID
from pipeline.data.split import read_split
from pipeline.fid import DIMS
from pipeline.files import file_digest
from pipeline.parse.weights import BISENET_SHA256

# The protocol fields each metric's comparability depends on.
FID_FIELDS = ("dataset", "split", "reference", "fid_dims", "resolution", "images")
SEGMENTATION_FIELDS = (*FID_FIELDS, "segmenter")
METRIC_FIELDS = {"FID": FID_FIELDS, "KID": FID_FIELDS, "pixel_accuracy": SEGMENTATION_FIELDS,
                 "mIoU": SEGMENTATION_FIELDS}  # fmt: skip
FACEXLIB_BISENET = "facexlib BiSeNet"
# What a published entry means where it leaves a field out by convention.
CONVENTIONS = {"fid_dims": DIMS}


@dataclass(frozen=True)
class Protocol:
    dataset: str  # CelebAMask-HQ, FFHQ, procedural faces, or the folder of images
    split: str  # index | celeba | celeba+val (CelebAMask-HQ), or "seeded, test fraction f"
    train_images: int
    test_images: int
    label_source: str  # where the input label maps come from: masks (CelebAMask-HQ's) | parser
    segmenter: str  # what re-segments: facexlib BiSeNet, or other weights by sha256
    segmenter_sha256: str
    parsing_size: int
    reference: str  # FID/KID reference set: test | train (real images)
    fid_dims: int  # Inception features FID/KID compare: 2048 (pool3), or an earlier block's

    def row(self, resolution: int, images: int) -> dict:
        """The protocol fields of one table row (rows may differ in resolution and image count)."""
        return {**asdict(self), "resolution": resolution, "images": images}


def dataset_name(data: DataConfig) -> str:
    return {"celebamask_hq": "CelebAMask-HQ", "ffhq": "FFHQ", "procedural": "procedural faces"}.get(
        data.source, f"images in {data.folder}"
    )


def split_name(data: DataConfig) -> str:
    if data.source != "celebamask_hq":
        return f"seeded, test fraction {data.test_fraction:g}"
    return data.split + ("+val" if data.split == "celeba" and data.val_in_train else "")


def segmenter_name(sha256: str) -> str:
    """What a published entry's `segmenter` must say to match: facexlib's release by name, any
    other weights by their sha256."""
    return FACEXLIB_BISENET if sha256 == BISENET_SHA256 else f"BiSeNet sha256:{sha256[:16]}"


def measured(
    data: DataConfig, split_csv: Path, parser_weights: Path, parsing_size: int, reference: str, fid_dims: int
) -> Protocol:
    """The protocol of this run, from its data settings, its split and the parser's weights."""
    counts = Counter(row.split for row in read_split(split_csv))
    sha256 = file_digest(Path(parser_weights), "sha256")
    return Protocol(
        dataset=dataset_name(data),
        split=split_name(data),
        train_images=counts["train"],
        test_images=counts["test"],
        label_source="masks" if data.labels_from_masks else "parser",
        segmenter=segmenter_name(sha256),
        segmenter_sha256=sha256,
        parsing_size=parsing_size,
        reference=reference,
        fid_dims=fid_dims,
    )


def differences(entry: dict, ours: dict, metric: str) -> list[str]:
    """The protocol fields in which a published entry differs from our row for `metric`, each
    as "field theirs (here ours)"; empty when the figure is comparable. Other data is named alone:
    the other fields no longer matter."""
    if entry["dataset"] != ours["dataset"]:
        return [f"dataset {entry['dataset']} (here {ours['dataset']})"]
    found = []
    for key in METRIC_FIELDS[metric]:
        theirs = entry.get(key, CONVENTIONS.get(key))
        if theirs is None:
            found.append(f"{key} not stated")
        elif str(theirs) != str(ours[key]):
            found.append(f"{key} {theirs} (here {ours[key]})")
    return found


def describe(protocol: Protocol, resolution: int, images: int) -> list[str]:
    """The protocol as the lines that open table.md."""
    split = {
        "index": f"ids {FIRST_TEST_ID:,}-29,999 are test, the rest train",
        "celeba": "CelebA's own partition of each image's original; val left out",
        "celeba+val": "CelebA's own partition of each image's original; val in train",
    }.get(protocol.split)
    if protocol.reference == "test":
        reference, real_row = "the real test images", "as many real train images (the first by id)"
    else:
        reference, real_row = "as many real train images as test images (the first by id)", "the real test images"
    labels = {
        "masks": "CelebAMask-HQ's hand-drawn masks, merged in the order of the dataset's g_mask.py",
        "parser": "the parse of each original image by the segmenter below",
    }[protocol.label_source]
    return [
        f"- Data: {protocol.dataset}, split `{protocol.split}`{f' ({split})' if split else ''}: "
        f"{protocol.train_images:,} train and {protocol.test_images:,} test images used.",
        f"- Input label maps: {labels}.",
        f"- Re-segmented by: {protocol.segmenter} (weights sha256 {protocol.segmenter_sha256}) at "
        f"{protocol.parsing_size}x{protocol.parsing_size}, its label "
        "maps resized to the working resolution (nearest neighbour).",
        f"- Working resolution: {resolution}x{resolution}: images resized bicubic (antialiased), label maps "
        "by nearest neighbour.",
        f"- FID/KID reference: {reference} at the working resolution; each model's {images:,} syntheses (one "
        f"per test label map) against them, and for the `real` row {real_row}.",
        "- FID/KID features: pytorch-fid's Inception pool3 (2048-d), as papers report."
        if protocol.fid_dims == DIMS
        else f"- FID/KID features: pytorch-fid's Inception, {protocol.fid_dims}-d features of an earlier block "
        "(metrics.fid_dims): not comparable with published FID, which uses pool3 (2048-d).",
        "- Training runs: each model's (`runs`) are independent, seeded from training.seed and the run's "
        "number, and each is scored at its final step: no checkpoint or run is chosen on the test set.",
    ]


def summary(protocol: Protocol, resolution: int, images: int) -> str:
    """One line for table.csv's protocol column."""
    return (
        f"{protocol.dataset}; split {protocol.split} ({protocol.train_images} train/{protocol.test_images} test); "
        f"labels {protocol.label_source}; segmenter {protocol.segmenter}; "
        f"{resolution}px; FID reference {protocol.reference}"
        + ("" if protocol.fid_dims == DIMS else f", {protocol.fid_dims}-d features")
        + f"; {images} images"
    )
