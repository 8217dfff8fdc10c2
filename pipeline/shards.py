"""Fixed-size shards of a list of work items: one cluster job each instead of one per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pipeline.errors import PipelineError

T = TypeVar("T")


def shard_count(n_items: int, shard_size: int) -> int:
    return -(-n_items // shard_size)


def shard_items(items: Sequence[T], shard: int, shard_size: int) -> Sequence[T]:
    """Items shard * shard_size up to (not including) (shard + 1) * shard_size."""
    count = shard_count(len(items), shard_size)
    if not 0 <= shard < count:
        raise PipelineError(
            f"shard {shard} does not exist: {len(items)} items make shards 0-{count - 1} of {shard_size}"
        )
    return items[shard * shard_size : (shard + 1) * shard_size]
