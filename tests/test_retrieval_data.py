"""University-1652 / SUES-200 readers, the unique-location sampler, augmentations, bad-input handling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_geoloc.data.images import UnreadableImageError, read_image_rgb
from edge_geoloc.data.sampler import PairDataset, UniqueLocationBatchSampler, collate_pairs
from edge_geoloc.data.sues200 import SUES200, split_sues200
from edge_geoloc.data.transforms import AugmentConfig, PairTransform
from edge_geoloc.data.university import DatasetLayoutError, University1652


def location_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A satellite-like tile: background colour plus a few coloured rectangles and discs."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(40, 200, size=3)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x, y = (int(v) for v in rng.integers(0, size, size=2))
        r = int(rng.integers(size // 10, size // 4))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
        else:
            cv2.circle(image, (x, y), r, colour, -1)
    return image


def drone_view(sat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same place seen by another camera: rotated, zoomed, strong per-channel colour cast, noisy
    (the cast keeps an untrained, colour-driven encoder from matching views by colour alone)."""
    size = sat.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-180, 180)), float(rng.uniform(1.1, 1.4)))
    view = cv2.warpAffine(sat, m, (size, size), borderMode=cv2.BORDER_REFLECT)
    view = view.astype(np.float32) * rng.uniform(0.7, 1.3, size=3) + rng.normal(0, 6, view.shape)
    return np.clip(view, 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def write_tiny_university(root: Path, n_train: int = 6, n_test: int = 4, n_drone: int = 3, size: int = 32,
                          n_distractors: int = 1, seed: int = 0) -> Path:
    """A University-1652-shaped tree of tiny JPEGs (train, test queries, galleries with distractors)."""
    rng = np.random.default_rng(seed)
    for i in range(n_train + n_test + n_distractors):
        name = f"{i + 1:04d}"
        sat = location_image(rng, size)
        drones = [drone_view(sat, rng) for _ in range(n_drone)]
        if i < n_train:
            _write(root / "train" / "satellite" / name / f"{name}.jpg", sat)
            for j, d in enumerate(drones):
                _write(root / "train" / "drone" / name / f"image-{j + 1:02d}.jpeg", d)
            continue
        test = root / "test"
        _write(test / "gallery_satellite" / name / f"{name}.jpg", sat)
        for j, d in enumerate(drones):
            _write(test / "gallery_drone" / name / f"image-{j + 1:02d}.jpeg", d)
        if i < n_train + n_test:
            _write(test / "query_satellite" / name / f"{name}.jpg", sat)
            for j, d in enumerate(drones):
                _write(test / "query_drone" / name / f"image-{j + 1:02d}.jpeg", d)
    return root


def test_university_reader_pairs_and_test_split(tmp_path: Path) -> None:
    ds = University1652(write_tiny_university(tmp_path, n_train=3, n_test=2, n_drone=2, n_distractors=1))
    pairs = ds.train_pairs()
    assert len(pairs) == 6
    assert {p.satellite.parent.name for p in pairs} == {"0001", "0002", "0003"}
    assert all(p.drone.parent.name == p.satellite.parent.name for p in pairs)
    query, gallery = ds.test_split("drone_to_satellite")
    assert len(query) == 4 and len(gallery) == 3  # 2 test locations x 2 views; 2 true + 1 distractor
    assert query.class_names == gallery.class_names == ("0004", "0005", "0006")
    q_names = {query.class_names[label] for label in query.labels}
    assert q_names == {"0004", "0005"}
    query, gallery = ds.test_split("satellite_to_drone")
    assert len(query) == 2 and len(gallery) == 6


def test_reader_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="University-1652 root"):
        University1652(tmp_path / "nope")
    root = write_tiny_university(tmp_path / "u", n_train=2, n_test=1, n_drone=1)
    (root / "train" / "drone" / "0009").mkdir()
    with pytest.raises(DatasetLayoutError, match="0009 has no images"):
        University1652(root).train_pairs()
    (root / "train" / "drone" / "0009").rmdir()
    _write(root / "train" / "drone" / "0010" / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="without a satellite image"):
        University1652(root).train_pairs()
    with pytest.raises(ValueError, match="direction"):
        University1652(root).test_split("up")


def test_unreadable_image_is_skipped_and_counted(tmp_path: Path) -> None:
    ds = University1652(write_tiny_university(tmp_path, n_train=3, n_test=1, n_drone=1))
    pairs = ds.train_pairs()
    pairs[1].drone.write_bytes(b"not a jpeg")
    with pytest.raises(UnreadableImageError, match="cannot decode"):
        read_image_rgb(pairs[1].drone)
    transform = PairTransform(AugmentConfig(), (32, 32), (0.5,) * 3, (0.25,) * 3)
    dataset = PairDataset(pairs, transform)
    batch = collate_pairs([dataset[i] for i in range(3)])
    assert batch.skipped == 1 and batch.drone.shape == (2, 3, 32, 32)
    assert batch.labels.tolist() == [0, 2]


def test_sues200_split_and_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    for loc in ("0001", "0002", "0003"):
        _write(raw / "satellite-view" / loc / "0.png", location_image(rng, 16))
        for h in (150, 200, 250, 300):
            _write(raw / "drone_view_512" / loc / str(h) / "1.jpg", location_image(rng, 16))
    out = split_sues200(raw, tmp_path / "split", train_ids=["0001", "0002"])
    ds = SUES200(out, 200)
    assert len(ds.train_pairs()) == 2
    query, gallery = ds.test_split("drone_to_satellite")
    assert len(query) == 1 and len(gallery) == 3  # galleries hold every location
    with pytest.raises(ValueError, match="altitude"):
        SUES200(out, 175)


@pytest.mark.parametrize("world_size", [1, 2])
def test_sampler_never_repeats_a_location_in_a_batch(world_size: int) -> None:
    labels = np.repeat(np.arange(20), 7)  # 20 locations x 7 drone views, like 701 x 54
    batches = UniqueLocationBatchSampler(labels, batch_size=8, seed=3).global_batches()
    assert len(batches) >= len(labels) // 8 - 3
    for batch in batches:
        assert len(batch) == 8 and len(set(labels[batch].tolist())) == 8
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))
    shards = [list(UniqueLocationBatchSampler(labels, 8, seed=3, rank=r, world_size=world_size))
              for r in range(world_size)]
    assert [sum(parts, []) for parts in zip(*shards, strict=True)] == batches


def test_sampler_reshuffles_per_epoch_and_resumes() -> None:
    sampler = UniqueLocationBatchSampler(np.repeat(np.arange(10), 3), batch_size=5, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    sampler.set_epoch(1, start_batch=2)
    assert list(sampler) == second[2:] and len(sampler) == len(second) - 2
    with pytest.raises(ValueError, match="lower the batch size"):
        UniqueLocationBatchSampler([0, 0, 1], batch_size=3)


def test_augmentation_is_seeded_rotates_satellite_and_flips_both() -> None:
    rng = np.random.default_rng(0)
    drone, sat = location_image(rng, 32), location_image(rng, 32)
    transform = PairTransform(AugmentConfig(), (32, 32), (0.0,) * 3, (1.0,) * 3)
    a = transform(drone, sat, np.random.default_rng([1, 2, 3]))
    b = transform(drone, sat, np.random.default_rng([1, 2, 3]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    geometric = AugmentConfig(jpeg_p=0, color_p=0, blur_p=0, dropout_p=0, flip_p=1.0)
    d, s = PairTransform(geometric, (32, 32), (0.0,) * 3, (1.0,) * 3)(drone, sat, np.random.default_rng(5))
    expected_d = torch.from_numpy(drone[:, ::-1].transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(d, expected_d)
    flipped_sat = sat[:, ::-1].astype(np.float32) / 255
    rotations = [torch.from_numpy(np.rot90(flipped_sat, k).transpose(2, 0, 1).copy()) for k in range(4)]
    assert any(torch.allclose(s, r) for r in rotations)
