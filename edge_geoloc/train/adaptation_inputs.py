"""What the adaptation pipeline checks before any training, and the panorama roll it trains with.

Checks (a clear ``AdaptationInputError`` before the first epoch, never a silent bad student):
- the teacher is a heat-map localizer whose input contract (query kind, query and aerial size) is the one the
  target set was opened for: a teacher of another architecture, or a set opened for another model, stops;
- the pairs were cut from a map at the teacher's ground size: a patch covering another ground size than the
  teacher's (``aerial_size * aerial_m_per_px`` for scale-aligned models) comes from another map product;
- each pair is usable: its patch contains its own coarse fix (the patch was cut around it; one that does not
  belongs to another map or is corrupt) and, when queries are rotated north-up, it has a heading. Unusable
  pairs are counted and left out; fewer than ``min_pairs`` usable pairs stop the run.

Augmentation as in the released code (``Adapting_CVL``): a panorama is rolled by a random angle and its
orientation label moves with it (only for panorama models with orientation bins; nadir views aligned north-up
have nothing to roll).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GROUND_SIZE_TOLERANCE = 0.05  # relative difference of patch ground size that counts as "another map"


class AdaptationInputError(ValueError):
    """The teacher or the target pairs cannot be adapted on; the message says what to change."""


@dataclass(frozen=True)
class UsablePairs:
    """Indices of the usable target pairs and the count of each rejection reason."""

    indices: np.ndarray
    rejected: dict[str, int]


def check_teacher(teacher: torch.nn.Module, target: Any) -> None:
    """The teacher must be a localizer taking the inputs the target set was prepared for."""
    needed = ("level_sizes", "aerial_size", "query_size", "query_kind", "num_orientations")
    missing = [name for name in needed if not hasattr(teacher, name)]
    if missing:
        raise AdaptationInputError(f"the teacher ({type(teacher).__name__}) is not a heat-map localizer (no "
                                   f"{', '.join(missing)}); pass a localizer checkpoint (kind 'localizer')")
    if target.info.query_kind != teacher.query_kind:
        raise AdaptationInputError(f"the target pairs hold {target.info.query_kind!r} queries but the teacher "
                                   f"({teacher.model_name}) takes {teacher.query_kind!r}: use a teacher of that kind")
    if tuple(target.query_size) != tuple(teacher.query_size) or target.aerial_size != teacher.aerial_size:
        raise AdaptationInputError(
            f"the target set was opened for another architecture (query {tuple(target.query_size)}, aerial "
            f"{target.aerial_size} px) than the teacher {teacher.model_name} (query {tuple(teacher.query_size)}, "
            f"aerial {teacher.aerial_size} px): open it with open_target(folder, teacher, cfg)")


def check_supervised_levels(teacher: torch.nn.Module, supervised_levels: int) -> None:
    """Coarse-only supervision: K' must leave at least the finest level unsupervised."""
    n_levels = len(teacher.level_sizes)
    if supervised_levels >= n_levels:
        raise AdaptationInputError(f"supervised_levels K'={supervised_levels} supervises all {n_levels} levels of "
                                   f"{teacher.model_name}; coarse-only supervision needs K' < {n_levels}")


def check_ground_size(teacher: torch.nn.Module, target: Any) -> None:
    """Patches must cover the ground size a scale-aligned teacher was trained on (same map product)."""
    m_per_px = getattr(teacher, "aerial_m_per_px", None)
    if m_per_px is None:
        return
    expected = teacher.aerial_size * float(m_per_px)
    sizes = np.array([r.aerial_georef.m_per_px * r.aerial_georef.height_px for r in target.records])
    off = np.abs(sizes - expected) > GROUND_SIZE_TOLERANCE * expected
    if off.any():
        raise AdaptationInputError(
            f"{int(off.sum())} of {len(sizes)} target patches cover {float(np.median(sizes[off])):.1f} m but "
            f"{teacher.model_name} takes {expected:.1f} m patches: these pairs were cut from another map or "
            f"resolution; rebuild the set from the area's orthophoto with aerial_size_m={expected:g}")


def usable_pairs(target: Any) -> UsablePairs:
    """Pairs whose patch contains their own coarse fix and that have a heading where alignment needs one."""
    rejected = {"coarse_fix_outside_patch": 0, "no_heading": 0}
    keep = []
    for i, rec in enumerate(target.records):
        g = rec.aerial_georef
        row, col = (float(v) for v in g.latlon_to_pixel(rec.coarse_lat_deg, rec.coarse_lon_deg))
        if not (0.0 <= row <= g.height_px and 0.0 <= col <= g.width_px):
            rejected["coarse_fix_outside_patch"] += 1
        elif target.align and rec.heading_rad is None:
            rejected["no_heading"] += 1
        else:
            keep.append(i)
    return UsablePairs(np.asarray(keep, dtype=np.int64), rejected)


def check_enough(usable: UsablePairs, total: int, min_pairs: int) -> None:
    if len(usable.indices) < min_pairs:
        reasons = ", ".join(f"{k}: {v}" for k, v in usable.rejected.items() if v) or "none rejected"
        raise AdaptationInputError(f"only {len(usable.indices)} usable pairs of {total} ({reasons}); adaptation "
                                   f"needs at least min_pairs={min_pairs}: log a longer flight")


class RolledPanoramas(torch.utils.data.Dataset):
    """A panorama set whose queries are rolled by a random angle within +-``max_deg``; the heading label moves
    with the roll (an aligned panorama rolled left by ``k`` of ``W`` columns looks as if taken at heading
    ``2 pi k / W``, the inverse of :func:`edge_geoloc.geo.view_alignment.align_query_north_up`).

    The roll is a pure function of ``(seed, epoch, index)``: call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, dataset: Any, max_deg: float, seed: int) -> None:
        self.dataset, self.max_deg, self.seed, self.epoch = dataset, float(max_deg), int(seed), 0
        self.info = dataset.info

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.dataset[i])
        width = item["query"].shape[-1]
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        max_cols = int(round(self.max_deg / 360.0 * width))
        k = int(rng.integers(-max_cols, max_cols + 1)) if max_cols else 0
        item["query"] = torch.roll(item["query"], -k, dims=-1)
        heading = float(item["heading_rad"]) + 2.0 * math.pi * k / width
        item["heading_rad"] = math.remainder(heading, 2.0 * math.pi) % (2.0 * math.pi)
        return item
