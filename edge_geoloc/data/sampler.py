"""What goes into a batch: the one-location-per-batch sampler, the pair / image-list datasets, collation.

Unreadable images are logged and skipped (the batch shrinks by one and ``skipped`` counts them), so a bad
file never crashes an epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edge_geoloc.data.images import UnreadableImageError, read_image_rgb
from edge_geoloc.data.transforms import PairTransform, to_tensor
from edge_geoloc.data.university import LabeledImages, TrainPair

log = logging.getLogger(__name__)

# (path, RGB image) -> RGB image: a protocol's view preparation (e.g. ``edge_geoloc.data.poses.OnboardAlignment``)
PrepareView = Callable[[Path, np.ndarray], np.ndarray]


class UniqueLocationBatchSampler(Sampler[list[int]]):
    """Batches in which no location (label) appears twice, reshuffled every epoch (Sample4Geo's sampler).

    Greedy: walk a seeded permutation; an index whose label is already in the batch waits in a pool that
    is tried first for the next batch. Leftovers that cannot fill a batch are dropped. Each global batch of
    ``batch_size`` is split into ``world_size`` contiguous shards; rank ``r`` gets shard ``r``.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.labels = np.asarray(labels)
        n_classes = len(np.unique(self.labels))
        if batch_size > n_classes:
            raise ValueError(f"batch_size {batch_size} > number of locations {n_classes}: no batch can hold "
                             "distinct locations only; lower the batch size")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by world_size {world_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0
        self.start_batch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's shuffle; ``start_batch`` skips batches already trained on (resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def global_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._build(np.random.default_rng([self.seed, self.epoch])))
        return self._cache[1]

    def _build(self, rng: np.random.Generator) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        seen: set[int] = set()
        pool: list[int] = []
        for idx in rng.permutation(len(self.labels)).tolist():
            label = int(self.labels[idx])
            if label in seen:
                pool.append(idx)
                continue
            current.append(idx)
            seen.add(label)
            if len(current) == self.batch_size:
                batches.append(current)
                current, seen, pool = self._fill(pool, batches)
        self._fill(current + pool, batches)  # what cannot fill a batch is dropped
        return batches

    def _fill(self, candidates: list[int], batches: list[list[int]]) -> tuple[list[int], set[int], list[int]]:
        """Emit full batches from ``candidates`` while possible; return (partial batch, its labels, rest)."""
        while True:
            batch, seen, rest = [], set(), []
            for idx in candidates:
                label = int(self.labels[idx])
                if len(batch) < self.batch_size and label not in seen:
                    batch.append(idx)
                    seen.add(label)
                else:
                    rest.append(idx)
            if len(batch) < self.batch_size:
                return batch, seen, rest
            batches.append(batch)
            candidates = rest

    def __iter__(self) -> Iterator[list[int]]:
        shard = self.batch_size // self.world_size
        for batch in self.global_batches()[self.start_batch:]:
            yield batch[self.rank * shard:(self.rank + 1) * shard]

    def __len__(self) -> int:
        return len(self.global_batches()) - self.start_batch


class Batch(NamedTuple):
    drone: torch.Tensor  # (B, 3, H, W)
    satellite: torch.Tensor  # (B, 3, H, W)
    labels: torch.Tensor  # (B,)
    skipped: int  # unreadable samples left out of this batch


class PairDataset(Dataset):
    """(drone, satellite, label) training pairs; augmentation seeded by ``(seed, epoch, index)``."""

    def __init__(self, pairs: Sequence[TrainPair], transform: PairTransform, seed: int = 0,
                 prepare_drone: PrepareView | None = None) -> None:
        if not pairs:
            raise ValueError("no training pairs: check the dataset root and its train/drone, train/satellite")
        self.pairs, self.transform, self.seed = list(pairs), transform, seed
        self.prepare_drone = prepare_drone
        self.labels = np.array([p.label for p in self.pairs], dtype=np.int64)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        pair = self.pairs[index]
        try:
            drone, sat = read_image_rgb(pair.drone), read_image_rgb(pair.satellite)
        except (UnreadableImageError, FileNotFoundError) as err:
            log.warning("skipping training pair %d: %s", index, err)
            return None
        if self.prepare_drone is not None:
            drone = self.prepare_drone(pair.drone, drone)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        d, s = self.transform(drone, sat, rng)
        return d, s, pair.label


def collate_pairs(samples: list[tuple[torch.Tensor, torch.Tensor, int] | None]) -> Batch:
    good = [s for s in samples if s is not None]
    if not good:
        return Batch(torch.empty(0), torch.empty(0), torch.empty(0, dtype=torch.long), len(samples))
    drone, sat, labels = zip(*good, strict=True)
    return Batch(torch.stack(drone), torch.stack(sat), torch.tensor(labels), len(samples) - len(good))


class ImageListDataset(Dataset):
    """Evaluation images: ``(tensor, label, index)`` or ``None`` for an unreadable file."""

    def __init__(self, images: LabeledImages, size_hw: tuple[int, int], mean: tuple[float, ...],
                 std: tuple[float, ...], prepare: PrepareView | None = None) -> None:
        self.images, self.size_hw, self.mean, self.std = images, size_hw, mean, std
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        try:
            image = read_image_rgb(self.images.paths[index])
        except (UnreadableImageError, FileNotFoundError) as err:
            log.warning("skipping evaluation image: %s", err)
            return None
        if self.prepare is not None:
            image = self.prepare(self.images.paths[index], image)
        return to_tensor(image, self.size_hw, self.mean, self.std), int(self.images.labels[index]), index


def collate_images(samples: list[tuple[torch.Tensor, int, int] | None]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, dataset indices) of the readable samples."""
    good = [s for s in samples if s is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    images, labels, index = zip(*good, strict=True)
    return torch.stack(images), torch.tensor(labels), torch.tensor(index)
