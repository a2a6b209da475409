"""WebDataset shards split across (rank, worker) partitions: the union is exact, with no duplicates."""

from __future__ import annotations

import itertools
import warnings
from collections import Counter

import numpy as np
import pytest
from arm_data.datasets import WdsDataset, WdsRecords
from arm_data.datasets.writers import write_wds
from arm_data.errors import ErrorPolicy, SkippedSampleWarning
from arm_data.records import PairRecord
from PIL import Image
from torch.utils.data import DataLoader

SHARD_SIZES = [3, 1, 4, 2, 5, 2, 3]  # 7 shards of unequal length, 20 samples


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    n = 0
    for s, size in enumerate(SHARD_SIZES):
        recs = [PairRecord(img, f"caption {n + i}", key=f"s{s}k{n + i:03d}") for i in range(size)]
        write_wds(recs, root / "tmp", samples_per_shard=size, pattern=f"shard-{s:06d}.tar")
        (root / "tmp" / f"shard-{s:06d}.tar").rename(root / f"shard-{s:06d}.tar")
        n += size
    return root


ALL_KEYS = sorted(f"s{s}k{i:03d}" for s, size in enumerate(SHARD_SIZES)
                  for i in range(sum(SHARD_SIZES[:s]), sum(SHARD_SIZES[:s]) + size))


@pytest.mark.parametrize("split", ["shard", "sample", "auto"])
@pytest.mark.parametrize("world_size,num_workers,shuffle",
                         [(1, 1, False), (1, 3, True), (2, 2, False), (3, 2, True), (3, 3, True), (2, 4, False)])
def test_partitions_cover_every_sample_once(shards, split, world_size, num_workers, shuffle):
    recs = WdsRecords(str(shards), task="pair", split=split, shuffle_shards=shuffle, seed=5)
    recs.set_epoch(3)
    per_part = {}
    for rank, worker in itertools.product(range(world_size), range(num_workers)):
        per_part[(rank, worker)] = [r.key for r in recs.iter_partition(rank, world_size, worker, num_workers)]
    seen = Counter(k for keys in per_part.values() for k in keys)
    assert sorted(seen) == ALL_KEYS
    assert max(seen.values()) == 1  # no duplicates
    sizes = [len(v) for v in per_part.values()]
    total = world_size * num_workers
    if recs.resolve_split(total) == "sample":
        assert max(sizes) - min(sizes) <= 1  # balanced to one sample
    if split == "auto":
        assert recs.resolve_split(total) == ("shard" if total <= len(SHARD_SIZES) else "sample")


def test_fewer_shards_than_partitions_in_shard_mode_leaves_partitions_empty(shards):
    recs = WdsRecords(str(shards), task="pair", split="shard")
    parts = [[r.key for r in recs.iter_partition(0, 1, w, 8)] for w in range(8)]
    assert parts[7] == [] and sorted(k for p in parts for k in p) == ALL_KEYS


def test_shard_order_changes_per_epoch_but_agrees_across_partitions(shards):
    a = WdsRecords(str(shards), shuffle_shards=True, seed=1)
    b = WdsRecords(str(shards), shuffle_shards=True, seed=1)
    orders = set()
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.shard_order() == b.shard_order()
        orders.add(tuple(a.shard_order()))
    assert len(orders) > 1


@pytest.mark.parametrize("world_size", [1, 2])
def test_real_dataloader_workers_and_env_ranks(shards, monkeypatch, world_size):
    keys: list[str] = []
    for rank in range(world_size):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
        ds = WdsDataset(str(shards), task="pair", size=4)
        loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=lambda b: [x["key"] for x in b])
        keys.extend(k for batch in loader for k in batch)
    assert sorted(keys) == ALL_KEYS


def test_truncated_shard_counted_once_in_sample_mode(tmp_path):
    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    write_wds([PairRecord(img, f"c{i}", key=f"k{i}") for i in range(6)], tmp_path, samples_per_shard=6)
    shard = tmp_path / "shard-000000.tar"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: raw.index(b"k4.png") + 600])
    recs = WdsRecords(str(tmp_path), task="pair", split="sample", policy=ErrorPolicy(min_samples=1000))
    skipped, keys = 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        for worker in range(3):
            recs.policy.reset()
            keys += [r.key for r in recs.iter_partition(0, 1, worker, 3)]
            skipped += recs.policy.num_skipped
    assert sorted(keys) == ["k0", "k1", "k2", "k3"] and skipped == 1
