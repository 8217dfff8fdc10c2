"""Subsample and split: deterministic from the seed, growing the subsample only adds images."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError
from pipeline.data.split import SplitRow, assign, choose, read_split, seeded_order, write_split

IDS = [f"{i:05d}" for i in range(1000)]


def split_of(subsample, seed=0, ids=IDS, test_fraction=0.2):
    chosen = choose(ids, subsample, seed)
    return {row.image_id: row.split for row in assign(chosen, {i: f"{i}.png" for i in chosen}, test_fraction)}


def test_same_seed_same_split_and_other_seed_other_split():
    assert split_of(100) == split_of(100)
    assert split_of(100, seed=1) != split_of(100)
    assert choose(reversed(IDS), 100, 0) == choose(IDS, 100, 0)  # input order does not matter


def test_larger_subsample_is_a_superset_and_keeps_every_split():
    small, large = split_of(100), split_of(400)
    assert small.keys() < large.keys()
    assert all(large[image_id] == split for image_id, split in small.items())


def test_adding_images_does_not_reorder_the_others():
    order = seeded_order(IDS, 0)
    with_more = seeded_order(IDS + [f"new{i}" for i in range(50)], 0)
    assert [i for i in with_more if i in set(IDS)] == order


def test_every_prefix_holds_floor_n_times_fraction_test_images():
    for n in (5, 10, 97, 1000):
        assert list(split_of(n).values()).count("test") == n // 5
    assert list(split_of(None).values()).count("test") == 200


def test_a_split_without_test_images_is_refused():
    with pytest.raises(ConfigError, match="data.test_fraction"):
        split_of(3, test_fraction=0.2)


def test_subsample_larger_than_the_dataset_is_refused():
    with pytest.raises(ConfigError, match="data.subsample: asks for 2000 images, only 1000 exist"):
        choose(IDS, 2000, 0)


def test_split_csv_round_trip_leaves_no_temp_file(tmp_path):
    rows = [SplitRow("00001", "train", "a/00001.png"), SplitRow("00002", "test", "a/00002.png")]
    out = tmp_path / "results" / "split.csv"
    write_split(rows, out)
    assert out.read_text().splitlines()[0] == "image_id,split,path"
    assert read_split(out) == rows
    assert [p.name for p in out.parent.iterdir()] == ["split.csv"]


def test_failed_write_leaves_no_output(tmp_path):
    out = tmp_path / "split.csv"
    with pytest.raises(AttributeError):
        write_split([None], out)  # fails mid-write
    assert list(tmp_path.iterdir()) == []
