"""CelebAMask-HQ as a data source, on a fake tree drawn from procedural faces: the merged label
maps, the two splits, the subsample, bad trees and the archive's download."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_celebamask import TEST_IDS, TRAIN_IDS, build_tree, expected_labels, write_image
from fake_ffhq import FakeFfhq, FakeFfhqServer
from PIL import Image
from support import REPO

from pipeline.config import ConfigError, DataConfig, resolve
from pipeline.data import celebamask_hq
from pipeline.data.__main__ import prepare
from pipeline.data.masks import merge_shard
from pipeline.data.split import write_split
from pipeline.download import DownloadError
from pipeline.errors import PipelineError
from pipeline.labelmaps import label_provenance, read_label
from pipeline.parse.manifest import read_manifest


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("celebamask") / "CelebAMask-HQ")


def config(**data) -> DataConfig:
    return DataConfig.from_dict(resolve({"data": {"source": "celebamask_hq", "subsample": None, **data}})["data"])


def test_merged_masks_equal_the_label_maps_they_were_cut_from(tree):
    for index in (TRAIN_IDS[0], TRAIN_IDS[-1], TEST_IDS[0], TEST_IDS[-1]):
        merged = celebamask_hq.merged_labels(tree, index)
        assert merged.shape == (512, 512) and np.array_equal(merged, expected_labels(index)), index


def test_the_merge_order_is_g_masks_list2():
    """switchablenorms/CelebAMask-HQ, face_parsing/Data_preprocessing/g_mask.py, its active list."""
    assert celebamask_hq.MERGE_ORDER == (
        "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
        "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
    )  # fmt: skip


def test_a_later_part_overwrites_an_earlier_one_and_absent_parts_are_skipped(tmp_path):
    root = tmp_path / "tree"
    folder = celebamask_hq.mask_folder(root, 5)
    folder.mkdir(parents=True)
    square = np.zeros((512, 512), np.uint8)
    square[100:300, 100:300] = 255
    inner = np.zeros((512, 512), np.uint8)
    inner[150:200, 150:200] = 255
    Image.fromarray(square, "L").save(folder / "00005_skin.png")
    Image.fromarray(inner, "L").save(folder / "00005_cloth.png")  # cloth is last in the order
    Image.fromarray(square, "L").save(folder / "00005_neck.png")  # neck comes before cloth
    merged = celebamask_hq.merged_labels(root, 5)
    names = celebamask_hq.CLASS_NAMES
    assert merged[120, 120] == names.index("neck") and merged[160, 160] == names.index("cloth")
    assert merged[0, 0] == 0 and set(np.unique(merged)) == {0, names.index("neck"), names.index("cloth")}


def test_index_split_puts_ids_from_28000_in_test(tree):
    rows = prepare(config(folder=str(tree)), threads=2)
    assert [row.image_id for row in rows] == [f"{i:05d}" for i in TRAIN_IDS + TEST_IDS]
    assert {row.image_id for row in rows if row.split == "test"} == {f"{i:05d}" for i in TEST_IDS}


def test_celeba_split_follows_celebas_partition_by_file_number(tree):
    # build_tree gives the ids, in order, originals 1, 162770 (train), 162771, 170000, 182637 (val),
    # 182638, 200000 (test), and again.
    parts = ["train", "train", "val", "val", "val", "test", "test"]
    want = {f"{i:05d}": parts[k % 7] for k, i in enumerate(TRAIN_IDS + TEST_IDS)}
    rows = prepare(config(folder=str(tree), split="celeba"), threads=2)
    assert {row.image_id: row.split for row in rows} == {i: s for i, s in want.items() if s != "val"}
    rows = prepare(config(folder=str(tree), split="celeba", val_in_train=True), threads=2)
    assert {row.image_id: row.split for row in rows} == {i: s.replace("val", "train") for i, s in want.items()}


def test_subsample_is_a_seeded_subset_within_the_fixed_split(tree):
    rows = prepare(config(folder=str(tree), subsample=10, seed=3), threads=2)
    assert len(rows) == 10
    assert all((row.split == "test") == (int(row.image_id) >= 28_000) for row in rows)
    assert rows == prepare(config(folder=str(tree), subsample=10, seed=3), threads=2)


def test_mask_shards_write_label_maps_and_a_manifest_and_keep_what_is_done(tree, tmp_path):
    split_csv = tmp_path / "split.csv"
    write_split(prepare(config(folder=str(tree)), threads=2), split_csv)
    merge_shard(split_csv, 1, 8, tmp_path / "labels", tmp_path / "1.csv")
    manifest = read_manifest(tmp_path / "1.csv")
    assert [row["image_id"] for row in manifest] == [f"{i:05d}" for i in (TRAIN_IDS + TEST_IDS)[8:16]]
    first = Path(manifest[0]["label"])
    assert np.array_equal(read_label(first), expected_labels(int(manifest[0]["image_id"])))
    assert "CelebAMask-HQ masks" in label_provenance(first)
    stamp = first.stat().st_mtime_ns
    merge_shard(split_csv, 1, 8, tmp_path / "labels", tmp_path / "1.csv")
    assert first.stat().st_mtime_ns == stamp


def broken_copy(tree: Path, tmp_path: Path, fault: str) -> tuple[Path, str]:
    """A copy of two images of the tree with one fault; what the error must name."""
    root = tmp_path / "broken"
    for index in (TRAIN_IDS[-1], TEST_IDS[0]):
        write_image(root, index)
    mask = celebamask_hq.mask_folder(root, TEST_IDS[0]) / f"{TEST_IDS[0]:05d}_skin.png"
    if fault == "mask size":
        Image.new("L", (256, 256)).save(mask)
        return root, str(mask)
    if fault == "unreadable mask":
        mask.write_bytes(b"not a png")
        return root, str(mask)
    if fault == "no mask folder":
        shutil.rmtree(mask.parent)
        return root, str(mask.parent)
    if fault == "no masks":
        for part in mask.parent.glob(f"{TEST_IDS[0]:05d}_*.png"):
            part.unlink()
        return root, str(mask.parent)
    if fault == "id out of range":
        shutil.copy(root / "CelebA-HQ-img" / f"{TEST_IDS[0]}.jpg", root / "CelebA-HQ-img" / "30000.jpg")
        return root, str(root / "CelebA-HQ-img" / "30000.jpg")
    assert fault == "image size"
    image = root / "CelebA-HQ-img" / f"{TEST_IDS[0]}.jpg"
    Image.new("RGB", (512, 512)).save(image)
    return root, str(image)


@pytest.mark.parametrize(
    "fault", ["mask size", "unreadable mask", "no mask folder", "no masks", "id out of range", "image size"]
)
def test_a_bad_tree_is_a_one_line_error_naming_the_file_and_leaves_no_output(tree, tmp_path, fault):
    root, named = broken_copy(tree, tmp_path, fault)
    out = tmp_path / "results" / "data" / "split.csv"
    labels = tmp_path / "results" / "labels"
    command = [sys.executable, "-m", "pipeline.data", "--configfile", str(tmp_path / "run.yaml"), "--out", str(out)]
    (tmp_path / "run.yaml").write_text(f"data: {{source: celebamask_hq, folder: {root}, subsample: null}}\n")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode == 0:  # the fault is in a mask: the split is made, merging the masks fails
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.data.masks", "--split", str(out), "--shard", "0", "--shard-size", "8",
             "--labels-dir", str(labels), "--manifest", str(labels / "shards" / "0.csv")],
            capture_output=True, text=True, cwd=REPO,
        )
        assert not (labels / "shards" / "0.csv").exists()
    else:
        assert not out.exists()
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and named in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.rglob("*.tmp*"))


def archive_of(tree: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for index in (TRAIN_IDS[-1], TEST_IDS[0]):
            bundle.write(tree / "CelebA-HQ-img" / f"{index}.jpg", f"CelebAMask-HQ/CelebA-HQ-img/{index}.jpg")
            for mask in celebamask_hq.mask_folder(tree, index).glob(f"{index:05d}_*.png"):
                bundle.write(mask, f"CelebAMask-HQ/{mask.relative_to(tree)}")
        bundle.writestr("CelebAMask-HQ/README.txt", "fake")
    return buffer.getvalue()


def test_the_archive_is_downloaded_through_drive_verified_and_unpacked(tree, tmp_path):
    data = archive_of(tree)
    with FakeFfhqServer(FakeFfhq(images={"archive": data})) as server:
        source = {"archive_url": f"{server.base_url}/uc?id=drive-archive", "archive_size": len(data),
                  "archive_sha256": hashlib.sha256(data).hexdigest(), "dir": str(tmp_path / "dl"), "retries": 1,
                  "timeout_s": 5, "backoff_s": 0.01}
        rows = prepare(config(celebamask_hq=source), threads=1)
        assert [(row.image_id, row.split) for row in rows] == [(f"{TRAIN_IDS[-1]:05d}", "train"),
                                                               (f"{TEST_IDS[0]:05d}", "test")]
        assert Path(rows[0].path).is_relative_to(tmp_path / "dl" / "CelebAMask-HQ")
        requests = len(server.requests)
        prepare(config(celebamask_hq=source), threads=1)  # unpacked already: no request
        assert len(server.requests) == requests


def test_a_download_without_a_checksum_to_check_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.celebamask_hq.archive_size.*data.folder"):
        prepare(config(celebamask_hq={"dir": str(tmp_path)}), threads=1)
    assert not list(tmp_path.iterdir())


def test_offline_the_download_fails_at_once_with_advice(tmp_path):
    source = {"archive_url": "https://celebamask.invalid/uc?id=x", "archive_size": 10, "archive_sha256": "0" * 64,
              "dir": str(tmp_path), "retries": 5, "backoff_s": 2.0}
    started = time.monotonic()
    with pytest.raises(DownloadError) as failure:
        prepare(config(celebamask_hq=source), threads=1)
    assert time.monotonic() - started < 2.0  # one backoff would already take 2 s
    message = str(failure.value)
    assert "cannot resolve celebamask.invalid" in message and "data.folder" in message and "\n" not in message


def test_bytes_that_are_not_the_configured_archive_are_refused(tree, tmp_path):
    data = archive_of(tree)
    with FakeFfhqServer(FakeFfhq(images={"archive": data})) as server:
        source = {"archive_url": f"{server.base_url}/uc?id=drive-archive", "archive_size": len(data),
                  "archive_sha256": "0" * 64, "dir": str(tmp_path), "retries": 3, "backoff_s": 0.01}
        with pytest.raises(DownloadError, match="checksum mismatch.*after 1 attempts.*data.folder"):
            prepare(config(celebamask_hq=source), threads=1)
        # A whole archive that is not the one configured is not fetched again: the setting is likelier wrong.
        assert [path for path, _ in server.requests].count("/download") == 1
    assert not (tmp_path / "CelebAMask-HQ").exists() and not (tmp_path / "CelebAMask-HQ.zip").exists()


def test_a_missing_mapping_file_is_named(tree, tmp_path):
    root = tmp_path / "tree"
    write_image(root, TEST_IDS[0])
    with pytest.raises(PipelineError, match="CelebA-HQ-to-CelebA-mapping.txt: missing"):
        prepare(config(folder=str(root), split="celeba"), threads=1)


def test_the_workflow_runs_a_fake_tree_to_a_table_that_states_its_protocol(shared, tree, tmp_path):
    """From the masks to table.md: the masks are the input and the truth, the parser only
    re-segments (the real photos too, for the "vs parse" columns), and a published figure stands
    beside a row only under its metric's protocol."""
    from seeded_parser import write_seeded_weights
    from support import shared_inception, snakemake

    write_seeded_weights(tmp_path / "parser.pth")
    protocol = {"dataset": "CelebAMask-HQ", "split": "index", "reference": "test", "fid_dims": 64, "resolution": 64,
                "images": 8}
    run = {
        "data": {"source": "celebamask_hq", "folder": str(tree), "subsample": None},
        "parsing": {"weights": str(tmp_path / "parser.pth"), "size": 64, "device": "cpu", "workers": 0,
                    "shard_size": 12},
        "training": {"resolution": 64, "batch_size": 4, "iterations": 2, "decay_start": 1, "checkpoint_every": 2,
                     "sample_every": 2, "vgg": False, "device": "cpu", "workers": 1},
        "models": {"spade": {"generator": "spade", "ngf": 8, "ndf": 8, "published": [
            {"paper": "Same protocol", **protocol, "segmenter": "facexlib BiSeNet", "FID": 40.0, "mIoU": 0.7},
            {"paper": "Other split", **protocol, "split": "celeba", "FID": 30.0},
        ]}},
        "compare": ["spade"],
        "metrics": {"inception_weights": str(shared_inception()), "fid_dims": 64, "device": "cpu", "bootstrap": 100,
                    "kid_subsets": 5, "kid_subset_size": 8},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    plan = snakemake("results/table.csv", "-n", "--configfile=run.yaml", cwd=tmp_path)
    assert plan.returncode == 0 and re.search(r"^split\s+1\s*$", plan.stdout, flags=re.M), plan.stdout
    result = snakemake("results/table.csv", "--cores", "2", "--configfile=run.yaml", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "results/logs/data").glob("masks_*.log")) == ["masks_0.log", "masks_1.log"]
    assert not list((tmp_path / "results/logs/parse").glob("shard_*.log"))  # the parser only re-segments

    truth = tmp_path / "results/real/64/truth"
    for index in TEST_IDS:
        want = np.asarray(Image.fromarray(expected_labels(index)).resize((64, 64), Image.Resampling.NEAREST))
        assert np.array_equal(read_label(truth / f"{index:05d}.png"), want)
    with open(tmp_path / "results/table.csv", newline="") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert rows["spade"]["mIoU_parse"] and not rows["real"]["mIoU_parse"]
    assert rows["spade"]["protocol"].startswith("CelebAMask-HQ; split index (12 train/8 test); labels masks")
    markdown = (tmp_path / "results/table.md").read_text()
    assert markdown.startswith("### Protocol")
    assert "- Data: CelebAMask-HQ, split `index` (ids 28,000-29,999 are test, the rest train): 12 train and 8 test" \
        in markdown
    assert "hand-drawn masks" in markdown and "BiSeNet sha256:" in markdown and "real test images" in markdown
    assert "64-d features of an earlier block (metrics.fid_dims): not comparable with published FID" in markdown
    beside, _, apart = markdown.partition("under another protocol")
    # FID matches; mIoU does not (the seeded parser is not facexlib's); the other split matches nothing.
    assert re.search(r"\| spade \| Same protocol \| FID \| 40 \| \d+\.\d \|", beside) and "Same protocol | mIoU" not in beside
    assert "| spade | Same protocol | CelebAMask-HQ |  | 70 |" in apart and "segmenter facexlib BiSeNet" in apart
    assert "Other split" not in beside and "split celeba (here index)" in apart


def test_an_archive_without_the_tree_is_named_and_leaves_nothing_unpacked(tmp_path):
    archive = tmp_path / "CelebAMask-HQ.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("Other/CelebA-HQ-img/0.jpg", b"x")
    with pytest.raises(PipelineError, match=r"CelebAMask-HQ.zip: no CelebAMask-HQ/CelebA-HQ-img/ inside"):
        celebamask_hq.unpack(archive, tmp_path / "CelebAMask-HQ")
    archive.write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match=r"CelebAMask-HQ.zip: cannot unpack"):
        celebamask_hq.unpack(archive, tmp_path / "CelebAMask-HQ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CelebAMask-HQ.zip"]
